"""Products in physical, comparable units; ok observations without products say why;
unknown models stop ``run`` before harvesting and ``export`` with one line (issue 20).

A one-observation local archive and tiny SR/DN networks registered as ``xmm-superres-v1`` /
``xmm-denoise-v1`` in a temporary registry.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from _tiny import minimal_archive, tiny_weights
from click.testing import CliRunner

from test_reliability_support import pipeline_dict, run_in_process
from xsa_enhance.cli.main import main
from xsa_enhance.errors import ConfigError
from xsa_enhance.store import ProductStore

NEW_COLUMNS = ("input_exposure", "input_rate", "output_rate", "output_background",
               "restored_rate")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    yield from minimal_archive(tmp_path_factory.mktemp("phys-archive"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from xsa_enhance.models.registry import register_weights

    reg = tmp_path_factory.mktemp("registry")
    d = tmp_path_factory.mktemp("w")
    mp = pytest.MonkeyPatch()
    mp.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    register_weights(tiny_weights(d, "sr", 1), name="xmm-superres", kind="sr")
    register_weights(tiny_weights(d, "dn", 2), name="xmm-denoise", kind="dn")
    yield reg
    mp.undo()


@pytest.fixture(scope="module")
def run(archive, registry, tmp_path_factory):
    url = tmp_path_factory.mktemp("phys") / "store.zarr"
    summary = run_in_process(pipeline_dict(archive, url, ["xmm-superres", "xmm-denoise"]))
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.outcomes
    return url, summary


def test_products_carry_rates_exposures_and_the_background_meaning(run):
    url, _ = run
    store = ProductStore(url, mode="r")
    slices = {r["slice_id"]: r for r in store.catalog("slices").rows()}
    rows = store.catalog("products").rows()
    assert {r["model"] for r in rows} == {"xmm-superres-v1", "xmm-denoise-v1"}
    for r in rows:
        s = slices[r["slice_id"]]
        prod = store.read_product(r["obsid"], r["slice_id"], r["model"], r["clamp_mode"])
        data = store.read_slice_input(r["obsid"], r["slice_id"])
        # recomputed from the stored arrays and attributes, not from the row
        in_counts = float(np.asarray(data.counts, float)[np.asarray(data.mask, bool)].sum())
        out_counts = float(np.asarray(prod.counts, float)[np.asarray(prod.mask, bool)].sum())
        assert r["input_exposure"] == pytest.approx(s["exposure"]) == pytest.approx(
            data.attrs["exposure_s"])
        assert r["input_rate"] == pytest.approx(in_counts / s["exposure"], rel=1e-9)
        assert r["output_exposure"] == pytest.approx(prod.attrs["target_exposure_s"])
        assert r["output_rate"] == pytest.approx(out_counts / prod.attrs["target_exposure_s"],
                                                 rel=1e-6)
        # SR targets were simulated without background, DN targets with it
        assert r["output_background"] == {"sr": "excluded", "dn": "included"}[r["kind"]]
        assert r["restored_rate"] == pytest.approx(float(prod.attrs["restored_rate"]))
        assert r["restored_rate"] >= 0
    # the query shows them with units
    from xsa_enhance.store.query import query_catalog

    t = query_catalog(url, catalog="products")
    assert str(t["output_rate"].unit) == "ct / s" and str(t["input_counts"].unit) == "ct"
    assert str(t["input_exposure"].unit) == "s"


def test_ok_observation_without_products_says_why(archive, registry, tmp_path):
    url = tmp_path / "store.zarr"
    doc = pipeline_dict(archive, url, ["xmm-superres"])
    doc["enhance"]["slice_lengths_ks"] = [500]  # longer than the observation
    summary = run_in_process(doc)
    store = ProductStore(url, mode="r")
    obs = store.catalog("observations").rows()
    runs = store.catalog("runs").rows()
    assert len(obs) == 1 and obs[0]["status"] == "ok" and obs[0]["n_slices"] > 0
    assert store.catalog("products").nrows == 0
    clean_ks = obs[0]["clean_exposure"] / 1000
    lengths = sorted({r["length_ks"] for r in store.catalog("slices").rows() if r["length_ks"] > 0})
    assert lengths and max(lengths) < 500
    for reason in (obs[0]["reason"], runs[0]["reason"], summary.outcomes[0]["reason"]):
        assert reason.startswith("no enhanced products: ")
        assert f"clean exposure {clean_ks:.1f} ks gives no 500 ks slice" in reason
        assert f"(images made: {lengths[0]} ks" in reason
    assert runs[0]["status"] == "ok" and runs[0]["n_products"] == 0
    # and with no model at all
    url2 = tmp_path / "none.zarr"
    run_in_process(pipeline_dict(archive, url2, []))
    obs = ProductStore(url2, mode="r").catalog("observations").rows()
    assert obs[0]["status"] == "ok" and obs[0]["reason"].startswith(
        "no enhanced products: no model was run")


def test_store_without_the_rate_columns_reads_and_grows(archive, registry, tmp_path):
    import zarr

    from xsa_enhance.config.store_check import validate_store
    from xsa_enhance.store.query import query_catalog

    url = tmp_path / "store.zarr"
    run_in_process(pipeline_dict(archive, url, ["xmm-denoise"]))
    store = ProductStore(url, mode="a")
    path = store.root.attrs["catalogs"]["products"]["path"]
    group = zarr.open_group(str(url), mode="a", use_consolidated=False)[path]
    for col in NEW_COLUMNS:
        del group[col]
    store.consolidate()
    rows = ProductStore(url, mode="r").catalog("products").rows()
    assert rows and all(np.isnan(r["output_rate"]) and r["output_background"] == ""
                        for r in rows)
    assert validate_store(url) == []
    assert len(query_catalog(url, catalog="products")) == len(rows)
    run_in_process(pipeline_dict(archive, url, ["xmm-superres"]))
    rows = ProductStore(url, mode="r").catalog("products").rows()
    old = [r for r in rows if r["model"] == "xmm-denoise-v1"]
    new = [r for r in rows if r["model"] == "xmm-superres-v1"]
    assert old and new
    assert all(r["output_background"] == "" and np.isnan(r["input_rate"]) for r in old)
    assert all(r["output_background"] == "excluded" and r["input_rate"] > 0 for r in new)
    assert validate_store(url) == []


def test_query_and_export_resolve_aliases_and_refuse_unknown_models(run, tmp_path):
    from xsa_enhance.store.query import query_catalog

    url, _ = run
    alias = query_catalog(url, catalog="products", model="xmm-superres")
    assert set(alias["model"]) == {"xmm-superres-v1"} and len(alias) > 0
    with pytest.raises(ConfigError, match=r"unknown model 'xmm-superres-v99'; models in .*: "
                                          r"xmm-denoise-v1, xmm-superres-v1; aliases: "
                                          r"xmm-denoise, xmm-superres$"):
        query_catalog(url, catalog="products", model="xmm-superres-v99")
    obsid = str(alias["obsid"][0])
    runner = CliRunner()
    res = runner.invoke(main, ["export", "--store", str(url), "--obsid", obsid, "--model",
                               "xmm-superres", "--fits", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "f").glob("*.fits"))
    assert any("xmm-superres-v1" in n for n in names)
    assert not any("xmm-denoise" in n for n in names)
    res = runner.invoke(main, ["export", "--store", str(url), "--obsid", obsid, "--model",
                               "xmm-superres-v99", "--fits", str(tmp_path / "g")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "unknown model 'xmm-superres-v99'" in res.output
    assert "xmm-denoise-v1, xmm-superres-v1" in res.output
    assert not (tmp_path / "g").exists() or not list((tmp_path / "g").iterdir())


def test_run_refuses_an_unknown_model_before_harvesting(tmp_path, monkeypatch):
    from xsa_enhance.pipeline import resolve_models

    empty = tmp_path / "empty-registry"
    empty.mkdir()
    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(empty))
    # the standard aliases may lack weights (noted); any other name is an error
    models, notes = resolve_models(["xmm-superres"])
    assert models == [] and any("no trained model is installed" in n for n in notes)
    with pytest.raises(ConfigError, match=r"unknown model 'xmm-superres-v99': no weights are "
                                          r"registered; known aliases: xmm-superres, xmm-denoise"):
        resolve_models(["xmm-superres-v99"])
    # the CLI stops before contacting the archive (nothing listens on this port)
    res = CliRunner().invoke(main, ["run", "--store", str(tmp_path / "s.zarr"), "--in-process",
                                    "--tap-url", "http://127.0.0.1:9/tap", "--aio-url",
                                    "http://127.0.0.1:9/aio?", "--obsid", "0123700101",
                                    "--model", "xmm-superres-v99"])
    assert res.exit_code == 2, res.output
    assert "unknown model 'xmm-superres-v99'" in res.output and "Traceback" not in res.output


def test_progress_lines_keep_one_total(capsys):
    from xsa_enhance.cli.run import ProgressPrinter
    from xsa_enhance.pipeline.run import ProgressState

    printer = ProgressPrinter()
    st = ProgressState(observations_total=3)
    totals = []
    # products become known as observations finish: 2, then 2 more
    for obs_done, prod_total, prod_done in ((1, 2, 0), (2, 4, 2), (3, 4, 4)):
        st.observations_done, st.products_total, st.products_done = obs_done, prod_total, prod_done
        st.message = f"obs{obs_done} ok"
        printer(st)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    for line in lines:
        totals.append(re.match(r"^\[obs (\d+)/(\d+)\]", line).group(2))
    assert totals == ["3", "3", "3"]
    assert "products 0/2+" in lines[0] and "products 4/4 " in lines[2]
