"""The pipeline pairs every clamp mode with weights trained for it.

A temporary registry (``XSA_ENHANCE_WEIGHTS_DIR``) holds tiny SR/DN networks registered as
``xmm-superres`` / ``xmm-denoise`` versions trained for the constant or the quantile clamp.
The aliases in ``enhance.models`` resolve, per clamp, to the newest matched weights; the
products catalog records which (``model``, ``weights_sha256``, ``trained_clamp``,
``clamp_mismatch``). A clamp mode without weights, or an unknown model, stops the run before
anything is harvested; an explicit version with another mode is refused at config validation
unless ``enhance.allow_clamp_mismatch``. Stores written before the new columns still read,
validate and take new rows.
"""

from __future__ import annotations

import pytest
from _tiny import minimal_archive, tiny_weights

from test_reliability_support import pipeline_dict, run_in_process
from xsa_enhance.errors import ConfigError
from xsa_enhance.pipeline import PipelineConfig
from xsa_enhance.store import ProductStore

CLAMPS = ["constant", "quantile:0.9999"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    yield from minimal_archive(tmp_path_factory.mktemp("clamp-archive"))


_tiny = tiny_weights


def _register(path, name, kind, clamp):
    """Register ``path`` as the next version of ``name``, trained (config) for ``clamp``."""
    from xsa_enhance.models.registry import load_model, register_weights

    config = {**load_model(path).config, "clamp": clamp}
    return register_weights(path, name=name, kind=kind, config=config)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """xmm-superres v1 constant, v2 quantile:0.9999, v3 constant; xmm-denoise v1 constant,
    v2 quantile:0.999 (each from different random weights)."""
    reg = tmp_path / "registry"
    reg.mkdir()
    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    entries = {}
    for seed, (name, kind, clamp) in enumerate([
            ("xmm-superres", "sr", "constant"), ("xmm-superres", "sr", "quantile:0.9999"),
            ("xmm-superres", "sr", "constant"), ("xmm-denoise", "dn", "constant"),
            ("xmm-denoise", "dn", "quantile:0.999")], start=1):
        e = _register(_tiny(tmp_path, kind, seed), name, kind, clamp)
        entries[e.id] = e
    return entries


def _doc(archive, store, models, clamps=CLAMPS, **enhance):
    doc = pipeline_dict(archive, store, models)
    doc["enhance"].update({"clamps": list(clamps), **enhance})
    return doc


def _products(url):
    return ProductStore(url, mode="r").catalog("products").rows()


def test_aliases_run_each_clamp_with_matched_weights_and_the_catalog_records_it(
        archive, registry, tmp_path):
    from xsa_enhance.config.store_check import validate_store

    url = tmp_path / "store.zarr"
    doc = _doc(archive, url, ["xmm-superres", "xmm-denoise"])
    summary = run_in_process(doc)
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.outcomes
    assert {(m.source, m.clamp, m.name) for m in summary.models} == {
        ("xmm-superres", "constant", "xmm-superres-v3"),
        ("xmm-superres", "quantile:0.9999", "xmm-superres-v2"),
        ("xmm-denoise", "constant", "xmm-denoise-v1"),
        ("xmm-denoise", "quantile:0.9999", "xmm-denoise-v2"),
    }
    assert "xmm-superres -> xmm-superres-v2" in summary.format()
    rows = _products(url)
    assert rows and len(rows) == summary.n_products
    expected = {
        ("sr", "constant"): ("xmm-superres-v3", "constant"),
        ("sr", "quantile:0.9999"): ("xmm-superres-v2", "quantile:0.9999"),
        ("dn", "constant"): ("xmm-denoise-v1", "constant"),
        ("dn", "quantile:0.9999"): ("xmm-denoise-v2", "quantile:0.999"),
    }
    assert {(r["kind"], r["clamp_mode"]) for r in rows} == set(expected)
    for r in rows:
        model, trained = expected[(r["kind"], r["clamp_mode"])]
        assert (r["model"], r["trained_clamp"], r["clamp_mismatch"]) == (model, trained, False)
        assert r["weights_sha256"] == registry[model].sha256
        attrs = ProductStore(url, mode="r").read_product(
            r["obsid"], r["slice_id"], r["model"], r["clamp_mode"]).attrs
        assert (attrs["trained_clamp"], attrs["clamp_mismatch"]) == (trained, False)
    # one alias under two clamps: two different weights
    sr = {r["clamp_mode"]: r["weights_sha256"] for r in rows if r["kind"] == "sr"}
    assert sr["constant"] != sr["quantile:0.9999"]
    assert validate_store(url) == []

    # a rerun finds every product (keyed by the resolved weights id) and makes none
    again = run_in_process(doc)
    assert again.n_products == 0 and {o["status"] for o in again.outcomes} == {"skipped"}

    # newer quantile weights: the next run adds their products, the older ones stay
    v4 = _register(_tiny(tmp_path, "sr", 11), "xmm-superres", "sr", "quantile:0.99")
    third = run_in_process(doc)
    new = [r for r in _products(url) if r["model"] == v4.id]
    assert third.n_products == len(new) > 0
    assert {(r["clamp_mode"], r["trained_clamp"]) for r in new} == {
        ("quantile:0.9999", "quantile:0.99")}


def test_a_clamp_mode_without_weights_stops_the_run_before_harvesting(archive, registry,
                                                                        tmp_path):
    url = tmp_path / "store.zarr"
    with pytest.raises(ConfigError) as info:
        run_in_process(_doc(archive, url, ["xmm-superres", "xmm-denoise"],
                            clamps=["constant", "none"]))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == ("no xmm-superres weights trained for clamp mode 'none'; trained modes: "
                   "constant, quantile")
    store = ProductStore(url, mode="r")
    assert store.catalog("observations").nrows == 0 and store.catalog("products").nrows == 0
    assert store.run_log[-1]["status"] == "failed"

    with pytest.raises(ConfigError, match=r"^unknown model 'xmm-nope'; known models: "):
        run_in_process(_doc(archive, tmp_path / "s2.zarr", ["xmm-nope"], clamps=["constant"]))
    assert ProductStore(tmp_path / "s2.zarr", mode="r").catalog("observations").nrows == 0


def test_explicit_version_with_another_mode_is_refused_unless_allowed(archive, registry,
                                                                      tmp_path):
    url = tmp_path / "store.zarr"
    doc = _doc(archive, url, ["xmm-superres-v3", "xmm-denoise"])
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_dict(doc, source="p.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("p.yaml: $.enhance.models[0]: xmm-superres-v3 was trained for clamp "
                          "mode 'constant', not 'quantile'")
    assert "use the alias xmm-superres" in msg and "enhance.allow_clamp_mismatch: true" in msg
    # a matching explicit version is fine
    PipelineConfig.from_dict(_doc(archive, url, ["xmm-superres-v2"], clamps=["quantile:0.99"]))

    doc["enhance"]["allow_clamp_mismatch"] = True
    summary = run_in_process(doc)
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.outcomes
    got = {(r["model"], r["clamp_mode"]): (r["trained_clamp"], r["clamp_mismatch"])
           for r in _products(url)}
    assert got == {
        ("xmm-superres-v3", "constant"): ("constant", False),
        ("xmm-superres-v3", "quantile:0.9999"): ("constant", True),
        # the alias still gets matched weights
        ("xmm-denoise-v1", "constant"): ("constant", False),
        ("xmm-denoise-v2", "quantile:0.9999"): ("quantile:0.999", False),
    }
    assert "MISMATCH: trained for constant" in summary.format()


def test_weight_file_with_another_mode_stops_the_run(archive, registry, tmp_path):
    path = _tiny(tmp_path, "dn", 21)  # a file whose config says constant
    with pytest.raises(ConfigError, match=r"tiny-dn-21\.pt was trained for clamp mode "
                                          r"'constant', not 'quantile'.*allow_clamp_mismatch"):
        run_in_process(_doc(archive, tmp_path / "s.zarr", [str(path)]))


def test_store_written_before_the_new_columns_reads_validates_and_grows(archive, registry,
                                                                       tmp_path):
    import zarr

    from xsa_enhance.config.store_check import validate_store
    from xsa_enhance.store.query import query_catalog

    url = tmp_path / "store.zarr"
    run_in_process(_doc(archive, url, ["xmm-denoise"], clamps=["constant"]))
    # make it an old store: no trained_clamp / clamp_mismatch columns
    store = ProductStore(url, mode="a")
    path = store.root.attrs["catalogs"]["products"]["path"]
    group = zarr.open_group(str(url), mode="a", use_consolidated=False)[path]
    for col in ("trained_clamp", "clamp_mismatch"):
        del group[col]
    store.consolidate()
    old = ProductStore(url, mode="r").catalog("products")
    rows = old.rows()
    assert len(rows) == old.nrows > 0
    assert {(r["trained_clamp"], r["clamp_mismatch"]) for r in rows} == {("", False)}
    assert validate_store(url) == []
    table = query_catalog(url, catalog="products")
    assert len(table) == len(rows) and "trained_clamp" in table.colnames

    # a new run appends to the old catalog: the columns appear, filled for the older rows
    summary = run_in_process(_doc(archive, url, ["xmm-superres"], clamps=["constant"]))
    assert summary.n_products > 0
    rows = _products(url)
    by_model = {(r["model"], r["trained_clamp"]) for r in rows}
    assert by_model == {("xmm-denoise-v1", ""), ("xmm-superres-v3", "constant")}
    assert validate_store(url) == []


def test_resolve_models_with_copies_of_the_shipped_weights(tmp_path, monkeypatch):
    """The shipped paper-size weights re-registered for the quantile clamp in a temporary
    registry: the aliases give the constant (shipped) and the quantile copies per clamp."""
    from xsa_enhance.models.registry import default_registry_dir, list_models
    from xsa_enhance.pipeline import resolve_models

    shipped_dir = default_registry_dir()
    shipped = {e.id: e for e in list_models(registry_dir=shipped_dir)}
    reg = tmp_path / "registry"
    reg.mkdir()
    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    from xsa_enhance.models.registry import register_weights

    for ident, name, kind in (("xmm-superres-v5", "xmm-superres", "sr"),
                              ("xmm-denoise-v3", "xmm-denoise", "dn")):
        e = shipped[ident]
        src = shipped_dir / e.file
        register_weights(src, name=name, kind=kind, config=e.config, card=e.card)
        register_weights(src, name=name, kind=kind, config={**e.config, "clamp": "quantile:0.9999"},
                         card=e.card)
    models, notes = resolve_models(["xmm-superres", "xmm-denoise"], CLAMPS)
    assert notes == []
    assert {(m.source, m.clamp): (m.name, m.trained_clamp) for m in models} == {
        ("xmm-superres", "constant"): ("xmm-superres-v1", "constant"),
        ("xmm-superres", "quantile:0.9999"): ("xmm-superres-v2", "quantile:0.9999"),
        ("xmm-denoise", "constant"): ("xmm-denoise-v1", "constant"),
        ("xmm-denoise", "quantile:0.9999"): ("xmm-denoise-v2", "quantile:0.9999"),
    }
    with pytest.raises(ConfigError, match="no xmm-denoise weights trained for clamp mode 'none'"):
        resolve_models(["xmm-denoise"], ["none"])
