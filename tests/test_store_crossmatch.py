"""``catalog crossmatch``: pairs and separations against an independent numpy brute force,
nearest-neighbour mode, input formats and column spellings, the six output formats, and
one-line errors for bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.store import ProductStore, spatial
from xsa_enhance.store.crossmatch import crossmatch, parse_radius, read_positions

from test_store_spatial import _append, _haversine_deg  # one haversine, one append helper

RADIUS_ARCSEC = 30.0


def _haversine_arcsec(ra1, dec1, ra2, dec2):
    """Pairwise great-circle distances in arcsec (the spatial tests' haversine, broadcasting)."""
    return _haversine_deg(ra1, dec1, ra2, dec2) * 3600


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store whose observations catalog holds 20 000 crowded positions (groups of a few
    within arcseconds, at RA=0/360 and near the poles too) and a user table near them."""
    rng = np.random.default_rng(11)
    n_groups = 4000
    gra = rng.uniform(0, 360, n_groups)
    gdec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_groups)))
    gra[:3], gdec[:3] = [0.0001, 359.9999, 100.0], [0.0, 0.001, 89.999]
    ra = np.repeat(gra, 5) + rng.normal(0, 15 / 3600, 5 * n_groups)
    dec = np.clip(np.repeat(gdec, 5) + rng.normal(0, 15 / 3600, 5 * n_groups), -90, 90)
    ra %= 360
    store = ProductStore(tmp_path_factory.mktemp("xm") / "store.zarr")
    _append(store, ra[:15000], dec[:15000])
    _append(store, ra[15000:], dec[15000:])
    m = 400
    pick = rng.choice(n_groups, m - 40, replace=False)
    pick[:3] = [0, 1, 2]
    ura = np.concatenate([gra[pick] + rng.normal(0, 10 / 3600, m - 40), rng.uniform(0, 360, 40)])
    udec = np.concatenate([np.clip(gdec[pick] + rng.normal(0, 10 / 3600, m - 40), -90, 90),
                           rng.uniform(-90, 90, 40)])
    ura %= 360
    ura[5], udec[6] = np.nan, np.nan
    user = Table({"name": [f"src{i}" for i in range(m)], "RAJ2000": ura * u.deg,
                  "DEJ2000": udec * u.deg, "obsid": np.arange(m), "flux": rng.uniform(0, 1, m)})
    return store, ra, dec, user


def _expected_pairs(cra, cdec, ura, udec, radius):
    with np.errstate(invalid="ignore"):
        sep = _haversine_arcsec(ura[:, None], udec[:, None], cra[None, :], cdec[None, :])
    i, j = np.nonzero(sep <= radius)
    return {(int(a), int(b)): float(sep[a, b]) for a, b in zip(i, j)}


def _pairs(out):
    return {(int(r["in_row"]), int(r["obsid_observations"])): float(r["sep_arcsec"]) for r in out}


@pytest.mark.parametrize("use_index", [True, False])
def test_all_pairs_equal_numpy_brute_force(world, use_index, monkeypatch) -> None:
    monkeypatch.setattr(spatial, "_SCAN_RATIO", 0)  # read the index even where a scan is cheaper
    store, cra, cdec, user = world
    ura, udec = np.asarray(user["RAJ2000"]), np.asarray(user["DEJ2000"])
    out = crossmatch(store, user, ura, udec, catalog="observations",
                     radius=f"{RADIUS_ARCSEC}arcsec", use_index=use_index)
    expected = _expected_pairs(cra, cdec, ura, udec, RADIUS_ARCSEC)
    got = _pairs(out)
    assert len(expected) > 1000  # groups of five within arcseconds: many multiple matches
    assert set(got) == set(expected)
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()),
                               rtol=0, atol=1e-6)
    # user columns (the clashing obsid renamed), catalog columns, order by in_row then sep
    assert out.colnames[:6] == ["in_row", "name", "RAJ2000", "DEJ2000", "obsid_in", "flux"]
    assert "ra_pnt" in out.colnames and out.colnames[-1] == "sep_arcsec"
    assert out["sep_arcsec"].unit == u.arcsec
    np.testing.assert_array_equal(out["obsid_in"], out["in_row"])
    keys = list(zip(out["in_row"], out["sep_arcsec"]))
    assert keys == sorted(keys)
    # the matched catalog rows are the right ones
    rows = np.asarray(out["obsid_observations"], dtype=int)
    np.testing.assert_array_equal(np.asarray(out["ra_pnt"]), cra[rows])


def test_nearest_equals_numpy_nearest_neighbour(world) -> None:
    store, cra, cdec, user = world
    ura, udec = np.asarray(user["RAJ2000"]), np.asarray(user["DEJ2000"])
    out = crossmatch(store, user, ura, udec, catalog="observations", radius="0.5arcmin",
                     nearest=True)
    with np.errstate(invalid="ignore"):
        sep = _haversine_arcsec(ura[:, None], udec[:, None], cra[None, :], cdec[None, :])
    best = np.nanargmin(np.where(np.isnan(sep), np.inf, sep), axis=1)
    best_sep = sep[np.arange(len(ura)), best]
    matched = np.nonzero(best_sep <= 30.0)[0]
    assert list(out["in_row"]) == matched.tolist()
    np.testing.assert_array_equal(np.asarray(out["obsid_observations"], dtype=int), best[matched])
    np.testing.assert_allclose(out["sep_arcsec"], best_sep[matched], atol=1e-6)
    assert 5 not in set(out["in_row"]) and 6 not in set(out["in_row"])  # NaN positions


def test_radius_parsing() -> None:
    assert parse_radius("10arcsec").to_value(u.arcsec) == pytest.approx(10)
    assert parse_radius("0.5arcmin").to_value(u.arcsec) == pytest.approx(30)
    assert parse_radius("0.01 deg").to_value(u.arcsec) == pytest.approx(36)
    for bad in ["10", "10 km", "ten arcsec", "-1arcsec", "200deg"]:
        with pytest.raises(ConfigError, match="radius"):
            parse_radius(bad)


@pytest.mark.parametrize("fmt,names", [("fits", ("ra", "dec")), ("votable", ("RA", "DEC")),
                                       ("csv", ("RAJ2000", "DEJ2000")),
                                       ("csv", ("ra_icrs", "de_icrs"))])
def test_input_formats_and_column_spellings(tmp_path, world, fmt, names) -> None:
    user = world[3][:50]
    t = Table({"id": np.arange(50), names[0]: np.asarray(user["RAJ2000"]),
               names[1]: np.asarray(user["DEJ2000"])})
    path = tmp_path / f"pos.{ {'fits': 'fits', 'votable': 'xml', 'csv': 'csv'}[fmt] }"
    t.write(path, format={"fits": "fits", "votable": "votable", "csv": "ascii.csv"}[fmt])
    table, ra, dec = read_positions(path)
    np.testing.assert_array_equal(ra, np.asarray(user["RAJ2000"]))
    np.testing.assert_array_equal(dec, np.asarray(user["DEJ2000"]))
    assert list(table["id"]) == list(range(50))


def test_named_units_and_sexagesimal_columns(tmp_path) -> None:
    t = Table({"alpha": ["00:40:00", "12:00:00"], "delta": ["+41:00:00", "-30:30:00"],
               "x": [1.0, 2.0] * u.arcmin, "y": [60.0, 120.0] * u.arcmin})
    path = tmp_path / "p.ecsv"
    t.write(path)
    _, ra, dec = read_positions(path, ra_col="alpha", dec_col="DELTA")
    np.testing.assert_allclose(ra, [10.0, 180.0])
    np.testing.assert_allclose(dec, [41.0, -30.5])
    _, ra, dec = read_positions(path, ra_col="x", dec_col="y")
    np.testing.assert_allclose(ra, [1 / 60, 2 / 60])
    np.testing.assert_allclose(dec, [1.0, 2.0])
    with pytest.raises(InputFileError, match="no column 'nope'"):
        read_positions(path, ra_col="nope", dec_col="y")
    with pytest.raises(InputFileError, match="no RA/Dec columns"):
        read_positions(path)


def _cli(args):
    return CliRunner().invoke(main, ["catalog", "crossmatch", *args])


def test_cli_writes_every_format(tmp_path, world) -> None:
    store, cra, cdec, user = world
    path = tmp_path / "pos.fits"
    user[:80].write(path)
    ura, udec = np.asarray(user["RAJ2000"])[:80], np.asarray(user["DEJ2000"])[:80]
    expected = _expected_pairs(cra, cdec, ura, udec, 10.0)
    assert expected
    base = ["--store", store.url, "--catalog", "observations", "--with", str(path),
            "--radius", "10arcsec"]
    res = _cli(base + ["--format", "csv"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.stdout))
    assert {(int(a), int(b)) for a, b in zip(df["in_row"], df["obsid_observations"])} \
        == set(expected)
    res = _cli(base + ["--format", "json"])
    records = json.loads(res.stdout)
    assert len(records) == len(expected) and "sep_arcsec" in records[0]
    res = _cli(base)  # table
    assert res.exit_code == 0 and "sep_arcsec" in res.stdout.splitlines()[0]
    for fmt in ("fits", "votable", "parquet"):
        out = tmp_path / f"xm.{fmt}"
        res = _cli(base + ["--format", fmt, "-o", str(out)])
        assert res.exit_code == 0, res.output
        t = Table.read(out, format=fmt)
        assert len(t) == len(expected)
        assert {(int(a), int(b)) for a, b in zip(t["in_row"], t["obsid_observations"])} \
            == set(expected)
    with fits.open(tmp_path / "xm.fits") as hdul:
        assert hdul[1].columns["sep_arcsec"].unit == "arcsec"


def test_cli_errors_are_one_line(tmp_path, world) -> None:
    store = world[0]
    base = ["--store", store.url, "--catalog", "observations"]
    res = _cli(base + ["--with", str(tmp_path / "missing.csv")])
    assert res.exit_code != 0 and res.output.count("\n") == 1
    assert "missing.csv: no such file" in res.output and "Traceback" not in res.output
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("a,b\n1,2\n")
    res = _cli(base + ["--with", str(nocols)])
    assert res.exit_code != 0 and res.output.count("\n") == 1
    assert "nocols.csv: no RA/Dec columns" in res.output
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"\x00\x01 not a fits file" * 10)
    res = _cli(base + ["--with", str(garbage)])
    assert res.exit_code != 0 and res.output.count("\n") == 1 and "garbage.fits" in res.output
    good = tmp_path / "good.csv"
    good.write_text("ra,dec\n10,20\n")
    res = _cli(base + ["--with", str(good), "--radius", "10"])
    assert res.exit_code != 0 and res.output.count("\n") == 1 and "angle unit" in res.output
    res = _cli(base + ["--with", str(good), "--ra-col", "ra"])
    assert res.exit_code != 0 and res.output.count("\n") == 1 and "--dec-col" in res.output
    text = tmp_path / "text.csv"
    text.write_text("ra,dec\nfoo,bar\n")
    res = _cli(base + ["--with", str(text)])
    assert res.exit_code != 0 and res.output.count("\n") == 1 and "does not hold angles" in res.output


def test_cli_index_builds_the_index_of_an_old_store(tmp_path) -> None:
    rng = np.random.default_rng(8)
    store = ProductStore(tmp_path / "s.zarr")
    ra, dec = rng.uniform(0, 360, 3000), rng.uniform(-90, 90, 3000)
    _append(store, ra, dec)
    del store.catalog("observations").group["sky_index"]  # as written before the index
    res = CliRunner().invoke(main, ["catalog", "index", "--store", store.url])
    assert res.exit_code == 0, res.output
    assert "observations: 3000 rows indexed now; 3000 of 3000 rows" in res.output
    reopened = ProductStore(store.url, mode="r")
    cat = reopened.catalog("observations")
    assert spatial.index_info(cat)["usable"]
    sep = _haversine_arcsec(30.0, 10.0, ra, dec) / 3600
    np.testing.assert_array_equal(spatial.cone_rows(cat, 30.0, 10.0, 12.0),
                                  np.nonzero(sep <= 12.0)[0])


def test_cli_index_refuses_a_store_whose_lease_is_held(tmp_path) -> None:
    from xsa_enhance.store.lease import StoreLease

    rng = np.random.default_rng(9)
    store = ProductStore(tmp_path / "s.zarr")
    _append(store, rng.uniform(0, 360, 500), rng.uniform(-90, 90, 500))
    del store.catalog("observations").group["sky_index"]
    held = StoreLease(tmp_path / "s.zarr", run_id="a-run").acquire()
    try:
        res = CliRunner().invoke(main, ["catalog", "index", "--store", store.url])
        assert res.exit_code != 0 and res.output.count("\n") == 1, res.output
        assert "a-run" in res.output
        assert "sky_index" not in store.catalog("observations").group  # nothing written
    finally:
        held.release()
    res = CliRunner().invoke(main, ["catalog", "index", "--store", store.url])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "s.zarr" / "xsa-lease.json").exists()  # released afterwards
