"""The ``sources`` catalog of the product store: stores written before it, query filters
(cone on source positions, model, clamp, significance, rate), the CLI in every format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.store import CATALOG_SCHEMAS, ProductStore
from xsa_enhance.store.query import EXPORT_FORMATS, query_catalog


def _src(**values):
    row = {c.name: {"str": "", "f8": 0.0, "i8": 0, "bool": False}[c.dtype]
           for c in CATALOG_SCHEMAS["sources"] if c.name not in ("run_id", "created")}
    row.update({"obsid": "0100000001", "expidstr": "S003", "slice_id": "S003_020ks_000",
                "length_ks": 20, "model": "input", "kind": "input", "source_id": 1})
    row.update(values)
    return row


ROWS = [
    _src(source_id=1, ra=10.0, dec=20.0, signif=12.0, rate=0.02),
    _src(source_id=2, ra=10.0, dec=20.5, signif=5.5, rate=0.001),
    _src(source_id=1, model="xmm-denoise-v3", kind="dn", clamp_mode="constant", ra=10.01,
         dec=20.0, signif=4.0, rate=0.0005),
    _src(source_id=1, obsid="0100000002", ra=200.0, dec=-45.0, signif=30.0, rate=0.1),
]


def _old_store(path):
    """A store as written before the sources catalog existed."""
    store = ProductStore(path)
    state = dict(store.root.attrs["catalogs"])
    del state["sources"]
    store.root.attrs["catalogs"] = state
    del store.root["catalogs/sources.0"]
    return path


def test_old_store_without_sources_reads_empty_and_gets_the_catalog_on_commit(tmp_path):
    url = _old_store(tmp_path / "old.zarr")
    t = query_catalog(url, catalog="sources")
    assert len(t) == 0 and "ra" in t.colnames and "signif" in t.colnames
    r = CliRunner().invoke(main, ["catalog", "query", "--store", str(url), "--catalog",
                                  "sources"])
    assert r.exit_code == 0 and "(no rows)" in r.output
    assert "sources" not in ProductStore(url, mode="r").root.attrs["catalogs"]
    store = ProductStore(url)
    assert store.commit({"sources": ROWS}, run_id="r1") == {"sources": 4}
    assert len(query_catalog(url, catalog="sources")) == 4
    # committing the same rows again adds nothing (key: obsid, slice, model, clamp, id)
    assert ProductStore(url).commit({"sources": ROWS}, run_id="r2") == {}
    assert ProductStore(url).remove_observations(["0100000002"]) == 1
    assert sorted(set(query_catalog(url, catalog="sources")["obsid"])) == ["0100000001"]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "store.zarr"
    ProductStore(path).commit({"sources": ROWS}, run_id="r1")
    return path


def test_filters(url):
    t = query_catalog(url, catalog="sources", cone=(10.0, 20.0, 0.1))
    # the cone is on source positions (not pointings): 20.5 deg lies outside
    assert sorted(zip(t["model"], t["source_id"])) == [("input", 1), ("xmm-denoise-v3", 1)]
    assert list(query_catalog(url, catalog="sources", min_signif=10)["signif"]) == [12.0, 30.0]
    assert len(query_catalog(url, catalog="sources", min_rate=0.0009)) == 3
    t = query_catalog(url, catalog="sources", model="xmm-denoise-v3", clamp="constant")
    assert len(t) == 1 and t["kind"][0] == "dn"
    assert len(query_catalog(url, catalog="sources", obsid="0100000002")) == 1
    from xsa_enhance.errors import ConfigError

    with pytest.raises(ConfigError, match="sources catalog only"):
        query_catalog(url, catalog="products", min_signif=5)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_cli_every_format(url, tmp_path, fmt):
    out = tmp_path / f"s.{fmt}"
    r = CliRunner().invoke(main, ["catalog", "query", "--store", str(url), "--catalog",
                                  "sources", "--min-signif", "5", "--format", fmt,
                                  "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 0
    if fmt == "json":
        recs = json.loads(out.read_text())
        assert sorted(r["signif"] for r in recs) == [5.5, 12.0, 30.0]
        assert all("ra" in r and "dec" in r for r in recs)
