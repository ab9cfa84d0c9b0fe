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
                                            dec_pnt=dec, pa_pnt=pa, status="ok")]},
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
    assert set(EXPORT_FORMATS) == {"table", "csv", "json", "votable", "fits", "parquet"}
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
