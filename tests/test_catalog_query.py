"""Catalog queries (cone, obsid, exposure, model, clamp, since), every export format, CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.store import CATALOG_SCHEMAS, ProductStore
from xsa_enhance.store.query import EXPORT_FORMATS, format_table, query_catalog

# obsid -> (ra, dec, pa)
POINTINGS = {
    "0100000001": (10.0, 20.0, 30.0),
    "0100000002": (10.3, 20.1, 250.0),
    "0100000003": (200.0, -45.0, 0.0),
    "0100000004": (359.9, 0.05, 90.0),
}

# obsid -> DATE-OBS (exposure start)
DATE_OBS = {
    "0100000001": "2001-03-04T05:06:07",
    "0100000002": "2005-11-30T23:59:59",
    "0100000003": "2012-06-01T00:00:00",
    "0100000004": "",  # not recorded: never matches a date filter
}


def _row(name, **values):
    row = {c.name: {"str": "", "f8": 0.0, "i8": 0, "bool": False}[c.dtype]
           for c in CATALOG_SCHEMAS[name]
           if c.name not in ("run_id", "created")}
    row.update(values)
    return row


def _angular_sep_deg(ra1, dec1, ra2, dec2):
    """Great-circle distance (haversine), independent of astropy."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h)))


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    url = tmp_path_factory.mktemp("cat") / "store.zarr"
    store = ProductStore(url)
    rng = np.random.default_rng(3)
    for i, (obsid, (ra, dec, pa)) in enumerate(POINTINGS.items()):
        store.begin_observation(obsid, attrs={})
        slices, products = [], []
        for length, n in ((10, 2), (20, 1)):
            for k in range(n):
                sid = f"S003_{length:03d}ks_{k:03d}"
                counts = rng.poisson(0.5, (411, 403)).astype(np.int32)
                mask = np.ones((411, 403), bool)
                path = store.write_slice_input(
                    obsid, sid, counts=counts, exposure_s=length * 1e3, mask=mask,
                    attrs={"ra_pnt": ra, "dec_pnt": dec, "pa_pnt": pa, "expression": "PI>300"})
                slices.append(_row("slices", obsid=obsid, expidstr="S003", slice_id=sid,
                                   length_ks=length, n_slices=n, index=k,
                                   exposure=length * 1e3, counts=int(counts.sum()),
                                   store_path=path))
                if length == 20:
                    for model, kind, clamp in (("sr-v1", "sr", "constant"), ("dn-v1", "dn", "quantile:0.99")):
                        shape = (822, 806) if kind == "sr" else (411, 403)
                        out = rng.random(shape).astype(np.float32)
                        ppath = store.write_product(
                            obsid, sid, model=model, clamp=clamp, counts=out,
                            mask=np.ones(shape, bool),
                            attrs={"ra_pnt": ra, "dec_pnt": dec, "pa_pnt": pa, "grid": "2x" if kind == "sr" else "1x",
                                   "output_exposure_s": 2e4 if kind == "sr" else 5e4})
                        products.append(_row("products", obsid=obsid, expidstr="S003", slice_id=sid,
                                             length_ks=20, model=model, kind=kind, clamp_mode=clamp,
                                             grid="2x" if kind == "sr" else "1x",
                                             output_counts=float(out.sum()), store_path=ppath))
        store.finish_observation(obsid)
        store.commit({"slices": slices, "products": products,
                      "observations": [_row("observations", obsid=obsid, expidstr="S003", ra_pnt=ra,
                                            dec_pnt=dec, pa_pnt=pa, status="ok",
                                            date_obs=DATE_OBS[obsid])]},
                     run_id=f"run{i}")
    return str(url)


def test_cone_matches_independent_separation(store_url):
    ra0, dec0, radius = 10.1, 20.0, 0.5
    t = query_catalog(store_url, catalog="observations", cone=(ra0, dec0, radius))
    want = {o for o, (ra, dec, _) in POINTINGS.items() if _angular_sep_deg(ra0, dec0, ra, dec) <= radius}
    assert want == {"0100000001", "0100000002"}
    assert set(t["obsid"]) == want
    # across RA = 0: 359.9 and 0.2 are 0.3 deg apart
    t = query_catalog(store_url, catalog="products", cone=(0.2, 0.0, 0.32))
    assert set(t["obsid"]) == {"0100000004"} and len(t) == 2
    assert np.allclose(t["ra_pnt"], 359.9)
    assert len(query_catalog(store_url, catalog="slices", cone=(100.0, 10.0, 1.0))) == 0


def test_obsid_exposure_model_clamp_since_filters(store_url):
    t = query_catalog(store_url, catalog="slices", obsid="0100000003")
    assert len(t) == 3 and set(t["obsid"]) == {"0100000003"}
    t = query_catalog(store_url, catalog="slices", exposure_ks=10)
    assert len(t) == 8 and set(t["length_ks"]) == {10}
    t = query_catalog(store_url, catalog="products", model="sr-v1")
    assert len(t) == 4 and set(t["kind"]) == {"sr"} and set(t["grid"]) == {"2x"}
    t = query_catalog(store_url, catalog="products", clamp="quantile:0.99", obsid=["0100000001", "0100000002"])
    assert sorted(t["obsid"]) == ["0100000001", "0100000002"] and set(t["model"]) == {"dn-v1"}
    created = sorted(query_catalog(store_url, catalog="observations")["created"])
    t = query_catalog(store_url, catalog="observations", since=created[2].rstrip("Z"))
    assert sorted(t["created"]) == created[2:]
    assert len(query_catalog(store_url, catalog="products", since="2999-01-01")) == 0
    from xsa_enhance.errors import ConfigError

    with pytest.raises(ConfigError, match="products and sources catalogs only"):
        query_catalog(store_url, catalog="slices", model="sr-v1")
    with pytest.raises(ConfigError, match="--since"):
        query_catalog(store_url, catalog="products", since="yesterday")


def test_every_format_is_readable(store_url, tmp_path):
    t = query_catalog(store_url, catalog="products")
    assert set(EXPORT_FORMATS) == {"table", "csv", "ecsv", "json", "votable", "fits", "parquet"}
    expect_obsid = list(t["obsid"])
    expect_counts = np.asarray(t["output_counts"], dtype=float)
    readers = {
        "csv": lambda b: pd.read_csv(io.StringIO(b), dtype={"obsid": str}),
        "json": lambda b: pd.DataFrame(json.loads(b)),
        "votable": lambda b: Table.read(io.BytesIO(b), format="votable").to_pandas(),
        "fits": lambda b: Table.read(io.BytesIO(b), format="fits").to_pandas(),
        "parquet": lambda b: pd.read_parquet(io.BytesIO(b)),
    }
    for fmt, read in readers.items():
        df = read(format_table(t, fmt))
        assert len(df) == len(t), fmt
        obsids = [o.decode() if isinstance(o, bytes) else str(o) for o in df["obsid"]]
        assert obsids == expect_obsid, fmt
        np.testing.assert_allclose(df["output_counts"].to_numpy(float), expect_counts, rtol=1e-12)
    text = format_table(t, "table")
    assert "sr-v1" in text and "quantile:0.99" in text and len(text.splitlines()) == len(t) + 3
    # units travel with the self-describing formats
    vot = Table.read(io.BytesIO(format_table(t, "votable")), format="votable")
    assert str(vot["ra_pnt"].unit) == "deg"


def test_cli_query_and_one_line_errors(store_url, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["catalog", "query", "--store", store_url, "--model", "dn-v1",
                               "--format", "csv"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.output), dtype={"obsid": str})
    assert len(df) == 4 and set(df["model"]) == {"dn-v1"}
    out = tmp_path / "q.parquet"
    res = runner.invoke(main, ["catalog", "query", "--store", store_url, "--catalog", "slices",
                               "--exposure", "20", "--format", "parquet", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(out)) == 4
    res = runner.invoke(main, ["catalog", "query", "--store", str(tmp_path / "nope.zarr")])
    assert res.exit_code == 2
    assert "no product store here" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["catalog", "query", "--store", store_url, "--catalog", "runs",
                               "--clamp", "constant"])
    assert res.exit_code == 2 and res.output.count("\n") == 1


def test_export_fits_sky_wcs_matches_instrument_geometry(store_url, tmp_path):
    from xsa_enhance.instrument.geometry import det_to_sky, sky_to_radec
    from xsa_enhance.instrument.grid import GRID_1X, GRID_2X

    runner = CliRunner()
    res = runner.invoke(main, ["export", "--store", store_url, "--obsid", "0100000002",
                               "--slice", "20", "--fits", str(tmp_path / "f"), "--png", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "f").glob("*.fits"))
    assert [f.name for f in files] == [
        "0100000002_S003_020ks_000_counts.fits",
        "0100000002_S003_020ks_000_dn-v1__quantile_0.99.fits",
        "0100000002_S003_020ks_000_sr-v1__constant.fits",
    ]
    ra0, dec0, pa = POINTINGS["0100000002"]
    for f, grid in zip(files, (GRID_1X, GRID_1X, GRID_2X)):
        with fits.open(f) as hdul:
            hdr = hdul[0].header
            assert hdul[0].data.shape == grid.shape
            w = WCS(hdr)
            # pixel centres -> DET -> sky X/Y -> RA/Dec through the instrument model
            iy = np.array([0, 100, 300, grid.ny - 1])
            ix = np.array([0, 250, 50, grid.nx - 1])
            x, y = det_to_sky(grid.x_centres[ix], grid.y_centres[iy], pa_deg=pa)
            ra, dec = sky_to_radec(x, y, ra_pnt=ra0, dec_pnt=dec0)
            world = w.pixel_to_world_values(ix, iy)
            sep = _angular_sep_deg(world[0], world[1], ra, dec) * 3600
            assert np.all(sep < 0.01), sep
            # the alternate WCS L gives DET coordinates
            wl = WCS(hdr, key="L")
            detx, dety = wl.pixel_to_world_values(ix, iy)
            np.testing.assert_allclose(detx, grid.x_centres[ix])
            np.testing.assert_allclose(dety, grid.y_centres[iy])
    pngs = sorted((tmp_path / "p").glob("*.png"))
    assert [p.name for p in pngs] == ["0100000002_S003_020ks_000.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(main, ["export", "--store", store_url, "--obsid", "0999999999", "--png", str(tmp_path)])
    assert res.exit_code == 2 and "0999999999" in res.output and "Traceback" not in res.output


# --- issue 20: every filter value checked, physical metadata in every format -------------

def _one_line_error(args, *needles):
    res = CliRunner().invoke(main, ["catalog", "query", *args])
    assert res.exit_code == 2, (args, res.output)
    assert res.output.count("\n") == 1 and "Traceback" not in res.output, res.output
    for n in needles:
        assert n in res.output, (n, res.output)
    return res.output


def test_bad_filter_values_are_one_line_errors_naming_the_choices(store_url):
    from xsa_enhance.errors import ConfigError

    s = ["--store", store_url]
    for bad in ("900000201", "09000002O1", "01000000011", " "):
        _one_line_error([*s, "--obsid", bad], repr(bad), "10 digits")
    # unknown model, unknown version of an alias, an option-looking value
    for bad in ("xmm-superres-nope", "sr-v9", "-v9"):
        _one_line_error([*s, "--model", bad], f"unknown model {bad!r}", "dn-v1, sr-v1",
                        "aliases: dn, sr")
    _one_line_error([*s, "--clamp", "quantlie"], "invalid clamp", "constant", "quantile:Q", "none")
    _one_line_error([*s, "--clamp", "quantile:2"], "invalid clamp")
    _one_line_error([*s, "--cone", "400", "20", "1"], "0 <= RA <= 360")
    _one_line_error([*s, "--cone", "10", "95", "1"], "-90 <= Dec <= 90")
    _one_line_error([*s, "--cone", "10", "20", "0"], "0 < radius <= 180")
    _one_line_error([*s, "--cone", "10", "20", "500"], "0 < radius <= 180")
    _one_line_error([*s, "--cone", "10h", "north", "1"], "cannot read the cone centre")
    _one_line_error([*s, "--cone", "25h", "0", "1"], "0 <= RA <= 360")
    _one_line_error([*s, "--cone", "10", "20", "1furlong"], "bad cone radius")
    _one_line_error([*s, "--catalog", "observations", "--status", "okk"],
                    "unknown status 'okk'", "ok, skipped")
    _one_line_error([*s, "--catalog", "runs", "--status", "done"], "ok, failed, skipped")
    _one_line_error([*s, "--catalog", "slices", "--observed-after", "last week"],
                    "--observed-after")
    _one_line_error([*s, "--catalog", "runs", "--observed-after", "2001-01-01"], "runs")
    # the Python API raises the same one-line errors
    with pytest.raises(ConfigError, match="unknown model 'sr-v9'; models in .*: dn-v1, sr-v1"):
        query_catalog(store_url, model="sr-v9")
    with pytest.raises(ConfigError, match="10 digits"):
        query_catalog(store_url, catalog="slices", obsid=["0100000001", "100000001"])


def test_aliases_and_clamp_families_select_what_exists(store_url):
    every = query_catalog(store_url, catalog="products")
    by_alias = query_catalog(store_url, catalog="products", model="sr")
    assert list(by_alias["store_path"]) == [p for p, m in zip(every["store_path"], every["model"])
                                            if m == "sr-v1"]
    # a bare mode selects the family, a full one itself
    fam = query_catalog(store_url, catalog="products", clamp="quantile")
    assert set(fam["clamp_mode"]) == {"quantile:0.99"} and len(fam) == 4
    assert len(query_catalog(store_url, catalog="products", clamp="quantile:0.5")) == 0
    assert len(query_catalog(store_url, catalog="products", clamp="constant")) == 4
    # a registered model (the shipped registry) with no product here: no rows, no error
    assert len(query_catalog(store_url, catalog="products", model="xmm-superres-v1")) == 0


def test_cone_accepts_what_skycoord_accepts(store_url, monkeypatch):
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from xsa_enhance.errors import ConfigError

    ref = query_catalog(store_url, catalog="observations", cone=(10.1, 20.0, 0.5))
    assert set(ref["obsid"]) == {"0100000001", "0100000002"}
    # 10.1 deg = 0h40m24s; 0.5 deg = 30 arcmin
    for cone in [("0h40m24s", "+20d00m00s", "30arcmin"), ("0:40:24", "20:00:00", 0.5),
                 ("0h40m24s +20d00m00s", "0.5deg"), (SkyCoord(10.1 * u.deg, 20 * u.deg), 0.5),
                 ("10.1", "+20d00m00s", 0.5), ("10.1d", "20:00:00", "1800arcsec")]:
        t = query_catalog(store_url, catalog="observations", cone=cone)
        assert list(t["obsid"]) == list(ref["obsid"]), cone
    # a name goes through SkyCoord.from_name (Sesame, online): stand in for it here
    seen = []

    def fake_from_name(cls, name, *args, **kwargs):
        seen.append(name)
        if name == "NGC 9999":
            raise RuntimeError("Unable to find coordinates for name 'NGC 9999'")
        return SkyCoord(10.1 * u.deg, 20.0 * u.deg)

    monkeypatch.setattr(SkyCoord, "from_name", classmethod(fake_from_name))
    t = query_catalog(store_url, catalog="products", cone=("My Galaxy", "30arcmin"))
    assert set(t["obsid"]) == set(ref["obsid"]) and seen == ["My Galaxy"]
    res = CliRunner().invoke(main, ["catalog", "query", "--store", store_url, "--catalog",
                                    "slices", "--cone-name", "My Galaxy", "0.5", "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(io.StringIO(res.output), dtype={"obsid": str})["obsid"]) == set(ref["obsid"])
    with pytest.raises(ConfigError, match="cannot resolve 'NGC 9999'"):
        query_catalog(store_url, catalog="observations", cone=("NGC 9999", 1.0))


def test_observation_date_filter(store_url):
    from astropy.time import Time

    def expect(after, before):
        out = set()
        for o, d in DATE_OBS.items():
            if not d:
                continue
            t = Time(d)
            if (after is None or t >= Time(after)) and (before is None or t < Time(before)):
                out.add(o)
        return out

    for after, before in [("2005-01-01", None), (None, "2005-11-30T23:59:59"),
                          ("2001-03-04T05:06:07", "2012-06-01"), ("2020-01-01", None)]:
        for cat in ("observations", "slices", "products"):
            t = query_catalog(store_url, catalog=cat, observed_after=after, observed_before=before)
            assert set(t["obsid"]) == expect(after, before), (cat, after, before)
    t = query_catalog(store_url, catalog="products", observed_after="2005-01-01")
    assert set(t["date_obs"]) == {"2005-11-30T23:59:59", "2012-06-01T00:00:00"}


def _schema_props(name):
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "schemas" / f"catalog-{name}.schema.json"
    return json.loads(path.read_text())["properties"]


@pytest.mark.parametrize("catalog", ["products", "observations", "slices"])
def test_self_describing_formats_read_back_with_units_descriptions_ucds_no_warnings(
        store_url, catalog):
    import warnings

    from astropy import units as u
    from astropy.time import Time

    t = query_catalog(store_url, catalog=catalog)
    props = _schema_props(catalog)  # the documented columns, independent of the code
    assert len(t) > 0
    for fmt, kwargs in (("votable", {}), ("fits", {"character_as_bytes": False}),
                        ("parquet", {}), ("ecsv", {})):
        data = format_table(t, fmt)
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = Table.read(src, format="ascii.ecsv" if fmt == "ecsv" else fmt, **kwargs)
        assert back.colnames == t.colnames, fmt
        for name in t.colnames:
            want = props.get(name)
            if want is not None:
                if want.get("unit"):
                    assert back[name].unit == u.Unit(want["unit"]), (fmt, name)
                else:
                    assert back[name].unit is None, (fmt, name)
                # VOTable wraps lines (also at hyphens): compare without white space
                desc = "".join(str(back[name].description).split())
                assert desc.startswith("".join(want["description"].split())), (fmt, name)
            assert back[name].description, (fmt, name)
        obsids = [str(o) for o in back["obsid"]]
        assert obsids == [str(o) for o in t["obsid"]] and all(len(o) == 10 for o in obsids), fmt
        for name in ("created", "finished", "date_obs"):
            if name in back.colnames:
                masked = np.ma.getmaskarray(back[name])  # VOTable: empty strings masked
                values = [str(v) for v, m in zip(back[name], masked) if not m and str(v)]
                if values:
                    Time(values)  # ISO times astropy parses
    # UCDs: VOTable ucd attributes, FITS TUCDn; descriptions in FITS TCOMMn
    vot = Table.read(io.BytesIO(format_table(t, "votable")), format="votable")
    assert vot["obsid"].meta["ucd"] == "meta.id;obs"
    assert all(vot[c].meta.get("ucd") for c in vot.colnames)
    assert vot["created"].meta.get("xtype") == "timestamp"
    with fits.open(io.BytesIO(format_table(t, "fits"))) as hdul:
        hdr = hdul[1].header
        for i, name in enumerate(t.colnames, start=1):
            assert hdr[f"TTYPE{i}"] == name
            assert hdr[f"TUCD{i}"], name
            if name in props:
                assert hdr[f"TCOMM{i}"] == props[name]["description"], name
            if props.get(name, {}).get("unit"):
                assert u.Unit(hdr[f"TUNIT{i}"]) == u.Unit(props[name]["unit"])


def test_an_empty_answer_writes_in_every_format(store_url):
    t = query_catalog(store_url, catalog="runs")  # this store has no runs rows
    assert len(t) == 0
    for fmt in EXPORT_FORMATS:
        data = format_table(t, fmt)
        if fmt in ("votable", "fits", "parquet"):
            back = Table.read(io.BytesIO(data), format=fmt)
            assert len(back) == 0 and back.colnames == t.colnames, fmt


def test_csv_obsids_round_trip_as_ten_character_strings(store_url):
    t = query_catalog(store_url, catalog="observations")
    want = [str(o) for o in t["obsid"]]
    plain = format_table(t, "csv")
    assert list(pd.read_csv(io.StringIO(plain), dtype={"obsid": str})["obsid"]) == want
    ecsv = format_table(t, "ecsv")
    back = Table.read(ecsv, format="ascii.ecsv")
    assert list(back["obsid"]) == want and back["obsid"].dtype.kind == "U"
    assert str(back["ra_pnt"].unit) == "deg"
    # pandas reads the ECSV variant as a CSV with comment lines
    df = pd.read_csv(io.StringIO(ecsv), comment="#", dtype={"obsid": str})
    assert list(df["obsid"]) == want


def test_binary_formats_refuse_a_terminal(store_url, monkeypatch, tmp_path):
    import sys as _sys

    class Tty(io.StringIO):
        def isatty(self):
            return True

    from xsa_enhance.cli import catalog as cli_catalog

    monkeypatch.setattr(cli_catalog.sys, "stdout", Tty())
    for fmt in ("fits", "parquet"):
        with pytest.raises(Exception) as err:
            cli_catalog.query_cmd.main(["--store", store_url, "--format", fmt],
                                       standalone_mode=False)
        assert "binary" in str(err.value) and "--output" in str(err.value)
    # with a file it is written
    out = tmp_path / "p.fits"
    cli_catalog.query_cmd.main(["--store", store_url, "--format", "fits", "-o", str(out)],
                               standalone_mode=False)
    assert Table.read(out, format="fits").colnames[0] == "obsid"
    assert _sys.stdout is not None


def test_quicklooks_have_a_colour_bar_with_a_scale_label(store_url, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    res = CliRunner().invoke(main, ["export", "--store", store_url, "--obsid", "0100000001",
                                    "--slice", "20", "--png", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (fig,) = figures
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if not ax.images and ax.get_ylabel()]
    assert len(images) == 3 and len(bars) == 3  # input, two products, one bar each
    for bar in bars:
        assert "ct/s" in bar.get_ylabel() and "asinh" in bar.get_ylabel()
        labels = [t.get_text() for t in bar.get_yticklabels()]
        assert labels[0] == "0" and all(labels)


def test_export_model_filter_checks_what_the_observation_has(store_url, tmp_path):
    runner = CliRunner()
    base = ["export", "--store", store_url, "--obsid", "0100000003", "--slice", "20"]
    res = runner.invoke(main, [*base, "--model", "sr", "--fits", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "a").glob("*.fits")) == [
        "0100000003_S003_020ks_000_counts.fits", "0100000003_S003_020ks_000_sr-v1__constant.fits"]
    # registered (the shipped registry) but without a product here; and unknown
    for model, needle in (("xmm-superres-v1", "has no product of model 'xmm-superres-v1'"),
                          ("nope", "unknown model 'nope'")):
        res = runner.invoke(main, [*base, "--model", model, "--png", str(tmp_path / model)])
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert needle in res.output and "dn-v1, sr-v1" in res.output
        assert not (tmp_path / model).exists()


def test_cli_csv_file_says_how_to_read_obsids_back(store_url, tmp_path):
    out = tmp_path / "obs.csv"
    res = CliRunner().invoke(main, ["catalog", "query", "--store", store_url, "--catalog",
                                    "observations", "--format", "csv", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert 'dtype={"obsid": str}' in res.output
    df = pd.read_csv(out, dtype={"obsid": str})
    assert all(len(o) == 10 and o.startswith("0") for o in df["obsid"])
    assert [p.name for p in tmp_path.iterdir()] == ["obs.csv"]  # no temporary left
    res = CliRunner().invoke(main, ["catalog", "query", "--store", store_url, "--catalog",
                                    "observations", "--format", "ecsv", "-o", str(out)])
    assert res.exit_code == 0 and "dtype" not in res.output
