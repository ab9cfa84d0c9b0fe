"""The pipeline stores a per-pixel uncertainty next to every product (``enhance.uncertainty``).

A temporary registry (``XSA_ENHANCE_WEIGHTS_DIR``) holds tiny SR/DN networks; a stand-in
archive serves one small observation. With the default settings every product group holds an
``uncertainty`` array (float32, the product's shape, written before the group is marked
complete) and the products catalog its summary columns, recomputed here independently from
the stored arrays; ``uncertainty: false`` writes none; ``xsa-enhance validate`` checks that
the array announced by the catalog exists with the right shape; stores written before the
columns still read, validate and query; export writes the ``UNCERTAINTY`` extension and the
significance panels.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _tiny import minimal_archive, tiny_weights
from astropy.io import fits
from astropy.wcs import WCS
from click.testing import CliRunner

from test_reliability_support import pipeline_dict, run_in_process
from xsa_enhance.store import ProductStore

NEW_COLUMNS = ("uncertainty_samples", "flux_fraction_below_3sigma", "median_significance")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    yield from minimal_archive(tmp_path_factory.mktemp("unc-archive"))


_tiny = tiny_weights


def _register(path, name, kind):
    """Register ``path`` as the next version of ``name``, trained (config) for constant."""
    from xsa_enhance.models.registry import load_model, register_weights

    config = {**load_model(path).config, "clamp": "constant"}
    return register_weights(path, name=name, kind=kind, config=config)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """xmm-superres-v1 and xmm-denoise-v1, tiny networks trained (config) for constant."""
    d = tmp_path_factory.mktemp("unc-registry")
    reg = d / "registry"
    reg.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    # seeds whose random networks give a non-zero output for the near-empty stand-in images
    for seed, name, kind in [(1, "xmm-superres", "sr"), (6, "xmm-denoise", "dn")]:
        _register(_tiny(d, kind, seed), name, kind)
    yield reg
    mp.undo()


def _doc(archive, store, **enhance):
    doc = pipeline_dict(archive, store, ["xmm-superres", "xmm-denoise"])
    doc["enhance"].update({"require_models": True, **enhance})
    return doc


@pytest.fixture(scope="module")
def default_run(archive, registry, tmp_path_factory):
    """A run with the default settings (uncertainty on, 4 samples)."""
    url = tmp_path_factory.mktemp("unc-default") / "store.zarr"
    summary = run_in_process(_doc(archive, url))
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.outcomes
    assert summary.n_products >= 2
    return url


def _summary_independent(counts, sigma, mask):
    """flux fraction below 3 sigma and median significance, written out again."""
    c = counts[mask].astype(np.float64)
    s = sigma[mask].astype(np.float64)
    flux = np.maximum(c, 0.0)
    below = np.zeros(c.shape, dtype=bool)
    for i in range(c.size):  # per pixel, as the definition reads
        if s[i] > 0:
            below[i] = c[i] / s[i] < 3.0
        else:
            below[i] = c[i] <= 0  # no spread: only empty pixels count as "below"
    frac = flux[below].sum() / flux.sum() if flux.sum() > 0 else math.nan
    z = c[s > 0] / s[s > 0]
    return frac, (float(np.median(z)) if z.size else math.nan)


def test_default_run_stores_uncertainty_and_catalog_summary(default_run, registry):
    from xsa_enhance.config import validate_data
    from xsa_enhance.config.store_check import validate_store
    from xsa_enhance.models.registry import load_model
    from xsa_enhance.models.uncertainty import estimate_uncertainty

    store = ProductStore(default_run, mode="r")
    rows = store.catalog("products").rows()
    assert {r["kind"] for r in rows} == {"sr", "dn"}
    for r in rows:
        prod = store.read_product(r["obsid"], r["slice_id"], r["model"], r["clamp_mode"])
        sigma = prod.uncertainty
        assert sigma is not None and sigma.dtype == np.float32
        assert sigma.shape == prod.counts.shape == ((822, 806) if r["kind"] == "sr"
                                                    else (411, 403))
        assert np.all(sigma >= 0) and np.all(sigma[~prod.mask] == 0)
        assert sigma[prod.mask].max() > 0
        # provenance in the group attributes (valid against the schema)
        a = prod.attrs
        assert a["uncertainty"] is True and a["uncertainty_n_samples"] == 4
        assert a["uncertainty_method"] == ("poisson-bootstrap" if r["kind"] == "sr"
                                           else "poisson-model")
        assert a["uncertainty_seed"] == 0
        assert validate_data(a, schema="product-attributes") == []
        # catalog columns, recomputed from the stored arrays
        assert r["uncertainty_samples"] == 4
        frac, med = _summary_independent(prod.counts, sigma, prod.mask)
        assert r["flux_fraction_below_3sigma"] == pytest.approx(frac, rel=1e-9, abs=1e-12)
        assert 0.0 <= r["flux_fraction_below_3sigma"] <= 1.0
        assert r["median_significance"] == pytest.approx(med, rel=1e-6)
        # the same sigma as the library on the stored input (seed 0, bit for bit on CPU)
        src = store.read_slice_input(r["obsid"], r["slice_id"])
        model = load_model(r["model"])
        ref = estimate_uncertainty(src.counts, float(src.attrs["exposure_s"]), src.mask,
                                   model, n_samples=4, seed=0)
        np.testing.assert_array_equal(sigma, ref.sigma)
        np.testing.assert_array_equal(prod.counts, ref.output.counts)
    assert store.find_orphans() == []
    assert validate_store(default_run) == []


def test_opt_out_writes_no_uncertainty(archive, registry, tmp_path):
    from xsa_enhance.config.store_check import validate_store

    url = tmp_path / "store.zarr"
    summary = run_in_process(_doc(archive, url, uncertainty=False))
    assert summary.n_products >= 2
    store = ProductStore(url, mode="r")
    rows = store.catalog("products").rows()
    for r in rows:
        prod = store.read_product(r["obsid"], r["slice_id"], r["model"], r["clamp_mode"])
        assert prod.uncertainty is None and prod.attrs["uncertainty"] is False
        assert "uncertainty_method" not in prod.attrs
        group = store.root[r["store_path"]]
        assert sorted(group.array_keys()) == ["counts", "mask"]
        assert r["uncertainty_samples"] == 0
        assert math.isnan(r["flux_fraction_below_3sigma"])
        assert math.isnan(r["median_significance"])
    assert validate_store(url) == []


def test_uncertainty_samples_setting_and_schema(archive, registry, tmp_path):
    from xsa_enhance.errors import ConfigError
    from xsa_enhance.pipeline import PipelineConfig

    cfg = PipelineConfig.from_dict(_doc(archive, tmp_path / "s.zarr"))
    assert (cfg.enhance.uncertainty, cfg.enhance.uncertainty_samples) == (True, 4)
    assert cfg.to_dict()["enhance"]["uncertainty_samples"] == 4
    with pytest.raises(ConfigError, match="uncertainty_samples"):
        PipelineConfig.from_dict(_doc(archive, tmp_path / "s.zarr", uncertainty_samples=1))
    with pytest.raises(ConfigError, match="uncertainty"):
        PipelineConfig.from_dict(_doc(archive, tmp_path / "s.zarr", uncertainty="yes"))

    url = tmp_path / "two.zarr"
    run_in_process(_doc(archive, url, uncertainty_samples=2, models=["xmm-denoise"]))
    store = ProductStore(url, mode="r")
    rows = store.catalog("products").rows()
    assert rows and {r["uncertainty_samples"] for r in rows} == {2}
    prod = store.read_product(rows[0]["obsid"], rows[0]["slice_id"], rows[0]["model"],
                              rows[0]["clamp_mode"])
    assert prod.attrs["uncertainty_n_samples"] == 2


def test_validate_reports_missing_or_misshaped_uncertainty(default_run, tmp_path):
    import shutil

    import zarr

    from xsa_enhance.config.store_check import validate_store
    from xsa_enhance.cli.main import main

    url = tmp_path / "copy.zarr"
    shutil.copytree(default_run, url)
    store = ProductStore(url, mode="r")
    rows = store.catalog("products").rows()
    root = zarr.open_group(str(url), mode="a", use_consolidated=False)
    gone, wrong = rows[0]["store_path"], rows[1]["store_path"]
    del root[gone]["uncertainty"]
    g = root[wrong]
    shape = g["uncertainty"].shape
    del g["uncertainty"]
    g.create_array("uncertainty", shape=(shape[0] - 1, shape[1]), dtype="f4", fill_value=0)
    ProductStore(url, mode="a").consolidate()
    issues = validate_store(url)
    msgs = sorted(i.message for i in issues)
    assert len(issues) == 2, issues
    assert any(f"product {gone} has no uncertainty array" in m for m in msgs)
    assert any(f"uncertainty array of {wrong} has shape" in m for m in msgs)
    assert {i.location for i in issues} == {"$[0].uncertainty_samples",
                                            "$[1].uncertainty_samples"}
    res = CliRunner().invoke(main, ["validate", str(url)])
    assert res.exit_code == 1 and "has no uncertainty array" in res.output
    # a product announcing an uncertainty it lacks is not whole: the next run redoes it
    assert gone in ProductStore(url, mode="r").find_orphans()


def test_store_without_the_new_columns_reads_validates_queries_and_grows(
        archive, registry, default_run, tmp_path):
    import shutil

    import zarr

    from xsa_enhance.cli.main import main
    from xsa_enhance.config.store_check import validate_store
    from xsa_enhance.store.query import format_table, query_catalog

    url = tmp_path / "old.zarr"
    shutil.copytree(default_run, url)
    store = ProductStore(url, mode="a")
    path = store.root.attrs["catalogs"]["products"]["path"]
    root = zarr.open_group(str(url), mode="a", use_consolidated=False)
    # an old store: no summary columns, products without uncertainty arrays or attributes
    for col in NEW_COLUMNS:
        del root[path][col]
    for r in store.catalog("products").rows():
        g = root[r["store_path"]]
        del g["uncertainty"]
        attrs = {k: v for k, v in g.attrs.items() if not k.startswith("uncertainty")}
        g.attrs.put(attrs)
    store.consolidate()
    old = ProductStore(url, mode="r").catalog("products")
    rows = old.rows()
    assert len(rows) == old.nrows > 0
    for r in rows:
        assert r["uncertainty_samples"] == 0
        assert math.isnan(r["flux_fraction_below_3sigma"]) and math.isnan(r["median_significance"])
    assert validate_store(url) == []
    assert ProductStore(url, mode="r").find_orphans() == []
    table = query_catalog(url, catalog="products", model="xmm-denoise-v1")
    assert len(table) >= 1 and set(NEW_COLUMNS) <= set(table.colnames)
    recs = json.loads(format_table(table, "json"))
    assert recs[0]["uncertainty_samples"] == 0 and recs[0]["median_significance"] is None
    res = CliRunner().invoke(main, ["catalog", "query", "--store", str(url), "--format", "csv"])
    assert res.exit_code == 0 and "median_significance" in res.output

    # a new run appends: the columns appear, filled (0 / NaN) for the older rows
    v2 = _register_next(registry, tmp_path)
    summary = run_in_process(_doc(archive, url, models=["xmm-denoise"]))
    assert summary.n_products >= 1
    rows = ProductStore(url, mode="r").catalog("products").rows()
    new = [r for r in rows if r["model"] == v2]
    older = [r for r in rows if r["model"] != v2]
    assert new and all(r["uncertainty_samples"] == 4 for r in new)
    assert all(math.isfinite(r["median_significance"]) for r in new)
    assert older and all(r["uncertainty_samples"] == 0 for r in older)
    assert all(math.isnan(r["median_significance"]) for r in older)
    assert validate_store(url) == []


def _register_next(registry, tmp_path):
    return _register(_tiny(tmp_path, "dn", 7), "xmm-denoise", "dn").id


def test_export_writes_uncertainty_extension_and_significance_panels(default_run, tmp_path):
    import matplotlib.image as mpimg

    from xsa_enhance.cli.main import main

    store = ProductStore(default_run, mode="r")
    rows = store.catalog("products").rows()
    obsid = rows[0]["obsid"]
    sid = rows[0]["slice_id"]
    res = CliRunner().invoke(main, ["export", "--store", str(default_run), "--obsid", obsid,
                                    "--slice", sid, "--fits", str(tmp_path / "f"),
                                    "--png", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    n_products = 0
    for f in sorted((tmp_path / "f").glob("*.fits")):
        with fits.open(f) as hdul:
            if f.name.endswith("_counts.fits"):
                assert "UNCERTAINTY" not in hdul
                continue
            n_products += 1
            h0, hu = hdul[0].header, hdul["UNCERTAINTY"].header
            assert h0["XSAUNC"] is True
            model = h0["MODEL"]
            prod = store.read_product(obsid, sid, model, h0["CLAMP"])
            np.testing.assert_array_equal(hdul["UNCERTAINTY"].data, prod.uncertainty)
            assert hdul["UNCERTAINTY"].data.shape == hdul[0].data.shape
            assert hu["BUNIT"] == h0["BUNIT"] == "count" and hu["EXPOSURE"] == h0["EXPOSURE"]
            assert hu["UNCNSAMP"] == 4 and hu["UNCMETH"] == prod.attrs["uncertainty_method"]
            w0, wu = WCS(h0), WCS(hu)
            np.testing.assert_allclose(wu.wcs.crpix, w0.wcs.crpix)
            np.testing.assert_allclose(wu.wcs.crval, w0.wcs.crval)
            np.testing.assert_allclose(wu.pixel_scale_matrix, w0.pixel_scale_matrix)
    assert n_products == 2
    # one PNG: input, 2 products and 2 significance panels (3.6 in each at 90 dpi)
    (png,) = sorted((tmp_path / "p").glob("*.png"))
    img = mpimg.imread(png)
    assert img.shape[1] == pytest.approx(5 * 3.6 * 90, abs=2)
