"""Helpers shared by the reliability, security and bad-input suites (and tests of the helpers).

The other ``tests/test_reliability_*``, ``tests/test_security_*`` and ``tests/test_badinput_*``
modules import from here (``tests/`` is on ``sys.path`` under pytest's default import mode).

- :func:`make_tiny_models`: two tiny SR/DN networks saved as weight files (stand-ins for the
  trained models; the point is the plumbing, not the science);
- :func:`pipeline_dict` / :func:`run_in_process`: a pipeline run against a local archive;
- :func:`snapshot`: the content of a store, independent of run ids and times;
- :func:`check_store_integrity`: what "nothing half-written visible as complete" means, checked
  group by group and row by row against the arrays themselves;
- :func:`slow_enabled`: the long trials run only with ``-m slow`` (``make test-slow``) or
  ``XSA_SLOW=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

VOLATILE_COLUMNS = {"run_id", "created", "harvest_time", "harvest_status"}
VOLATILE_ATTRS = {"written", "harvest_time", "harvest_status"}
CATALOG_KEYS = {
    "observations": ("obsid",),
    "slices": ("obsid", "slice_id"),
    "products": ("obsid", "slice_id", "model", "clamp_mode"),
}


def slow_enabled(config: pytest.Config) -> bool:
    """Whether the long trials were asked for (``-m slow`` or ``XSA_SLOW=1``)."""
    if os.environ.get("XSA_SLOW", "") not in ("", "0"):
        return True
    markexpr = config.getoption("-m", default="") or ""
    return "slow" in markexpr and "not slow" not in markexpr


def make_tiny_models(directory: Path) -> list[str]:
    """Save a tiny SR and a tiny DN network (fixed seeds) and return their paths."""
    import torch

    from xsa_enhance.models import build_network
    from xsa_enhance.models.registry import save_weights

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in ("sr", "dn"):
        torch.manual_seed(1)
        net = build_network(kind, filters=4, blocks=1, growth=4)
        path = directory / f"tiny-{kind}.pt"
        save_weights(net, path, name=f"tiny-{kind}", kind=kind, config={}, card={})
        paths.append(str(path))
    return paths


def pipeline_dict(archive: Any, store: Path | str, models: list[str] | None = None, *,
                  retries: int = 0, timeout_s: float = 30.0, backoff_s: float = 0.01,
                  executor: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """A pipeline document (the YAML shape) for a run against ``archive``."""
    doc: dict[str, Any] = {
        "kind": "pipeline",
        "name": "reliability",
        "store": str(store),
        "archive": {"tap_url": archive.tap_url, "aio_url": archive.aio_url,
                    "retries": retries, "timeout_s": timeout_s, "backoff_s": backoff_s},
        "enhance": {"models": list(models or []), "clamps": ["constant"],
                    "slice_lengths_ks": [20]},
        "executor": executor or {"kind": "inprocess"},
    }
    doc.update(top)
    return doc


def run_in_process(doc: dict[str, Any]) -> Any:
    """Run the pipeline document with the in-process executor; returns the RunSummary."""
    from xsa_enhance.pipeline import InProcessExecutor, PipelineConfig, run_pipeline

    with InProcessExecutor() as ex:
        return run_pipeline(PipelineConfig.from_dict(doc), executor=ex)


def _digest(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def snapshot(url: Path | str) -> tuple[dict[str, list[tuple[str, ...]]], dict[str, str]]:
    """Catalog rows (without run ids and times) and a digest of every array and attribute.

    Read straight from the Zarr groups (not through the store's own readers), so two stores
    compare equal only if every array holds the same bytes.
    """
    from xsa_enhance.store import ProductStore

    store = ProductStore(url, mode="r")
    cats: dict[str, list[tuple[str, ...]]] = {}
    for name in ("observations", "slices", "products"):
        t = store.catalog(name).read()
        cols = [c for c in t.colnames if c not in VOLATILE_COLUMNS]
        cats[name] = sorted(tuple(str(r[c]) for c in cols) for r in t)
    arrays: dict[str, str] = {}
    root = zarr.open_group(str(url), mode="r", use_consolidated=False)
    if "obs" in root:
        for obsid in sorted(root["obs"].group_keys()):
            group = root[f"obs/{obsid}"]
            arrays[f"obs/{obsid}@attrs"] = json.dumps(
                {k: v for k, v in dict(group.attrs).items() if k not in VOLATILE_ATTRS},
                sort_keys=True, default=str)
            for path, node in group.members(max_depth=None):
                key = f"obs/{obsid}/{path}"
                if isinstance(node, zarr.Array):
                    arrays[key] = _digest(node[...])
                else:
                    attrs = {k: v for k, v in dict(node.attrs).items() if k not in VOLATILE_ATTRS}
                    arrays[key + "@attrs"] = json.dumps(attrs, sort_keys=True, default=str)
    return cats, arrays


def check_store_integrity(url: Path | str, *, allow_orphans: bool = False) -> dict[str, int]:
    """Assert that everything the store shows as done is really there, and nothing else is.

    - every catalog row's key is unique;
    - every ``observations``/``slices``/``products`` row points at a group marked complete
      whose arrays all read back with the expected shapes (counts, mask; exposure for
      inputs), and slice ``counts`` equal the masked sum of the stored array;
    - no orphans (groups without rows or not complete) and no stray catalog generations.

    Parameters
    ----------
    url : path
        The store.
    allow_orphans : bool
        Accept orphans (the state right after a kill, before the next run cleans them).

    Returns
    -------
    dict
        Rows per catalog (and ``orphans``).
    """
    from xsa_enhance.store import ProductStore

    store = ProductStore(url, mode="r")
    root = zarr.open_group(str(url), mode="r", use_consolidated=False)
    n: dict[str, int] = {}
    for name, key in CATALOG_KEYS.items():
        t = store.catalog(name).read()
        keys = [tuple(str(r[k]) for k in key) for r in t]
        assert len(keys) == len(set(keys)), f"duplicate rows in the {name} catalog"
        n[name] = len(t)
        for row in t:
            path = str(row["store_path"])
            group = root[path]
            assert isinstance(group, zarr.Group), path
            assert group.attrs.get("complete") is True, f"{path} listed but not complete"
            if name == "observations":
                continue
            counts = np.asarray(group["counts"][...])
            mask = np.asarray(group["mask"][...])
            assert counts.shape == mask.shape and counts.ndim == 2, path
            if name == "slices":
                exposure = np.asarray(group["exposure"][...])
                assert exposure.shape == counts.shape
                assert int(counts[mask].sum()) == int(row["counts"]), path
                assert row["obsid"] in {str(o) for o in store.catalog("observations").column("obsid")}
            else:
                assert np.isfinite(counts).all(), path
                assert float(counts[mask].sum()) == pytest.approx(float(row["output_counts"]), rel=1e-5)
    orphans = store.find_orphans() + store.stray_catalog_groups()
    n["orphans"] = len(orphans)
    if not allow_orphans:
        assert store.find_orphans() == [], "orphans left in the store"
        assert store.stray_catalog_groups() == [], "stray catalog generations left in the store"
    runs = store.catalog("runs").read()
    n["runs"] = len(runs)
    return n


def check_visible_state(url: Path | str) -> dict[str, int] | None:
    """After a crash: ``None`` if the store was never initialised, else the integrity counts.

    A store killed while it was being created is not yet a product store; readers are told so
    (``InputFileError``) and the next run completes it. Otherwise everything it shows must be
    complete and readable (orphans allowed: the next run removes them).
    """
    from xsa_enhance.errors import InputFileError
    from xsa_enhance.store import ProductStore

    if not (Path(url) / "zarr.json").exists():
        return None
    try:
        ProductStore(url, mode="r")
    except InputFileError as exc:
        assert "not an xsa-enhance product store" in str(exc), exc
        return None
    return check_store_integrity(url, allow_orphans=True)


def outcomes_by_obsid(summary: Any) -> dict[str, dict[str, Any]]:
    """The run summary's outcomes keyed by observation."""
    return {o["obsid"]: o for o in summary.outcomes}


def runs_rows(url: Path | str, run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """The runs catalog rows (of one run, by default the last) keyed by observation."""
    from xsa_enhance.store import ProductStore

    store = ProductStore(url, mode="r")
    t = store.catalog("runs").read()
    if run_id is None and len(t):
        run_id = str(t["run_id"][-1])
    return {str(r["obsid"]): {c: r[c] for c in t.colnames} for r in t if str(r["run_id"]) == run_id}


# -- tests of the helpers themselves: the comparisons the suites rely on must see damage ----


def _row(catalog: str, **values: Any) -> dict[str, Any]:
    from xsa_enhance.store.catalog import CATALOG_SCHEMAS

    defaults = {"str": "", "f8": 0.0, "i8": 0, "bool": False}
    row = {c.name: defaults[c.dtype] for c in CATALOG_SCHEMAS[catalog]
           if c.name not in ("run_id", "created")}
    row.update(values)
    return row


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    from xsa_enhance.store import ProductStore

    url = tmp_path_factory.mktemp("helpers") / "s.zarr"
    store = ProductStore(url, mode="a")
    counts = np.arange(12, dtype=np.int32).reshape(3, 4)
    mask = counts % 2 == 0
    store.begin_observation("0123456789", attrs={"obsid": "0123456789"})
    path = store.write_slice_input("0123456789", "S003_020ks_000", counts=counts, exposure_s=2e4,
                                   mask=mask, attrs={})
    store.finish_observation("0123456789")
    store.commit({
        "observations": [_row("observations", obsid="0123456789", expidstr="S003", status="ok",
                              store_path="obs/0123456789", n_slices=1)],
        "slices": [_row("slices", obsid="0123456789", expidstr="S003", slice_id="S003_020ks_000",
                        length_ks=20, exposure=2e4, counts=int(counts[mask].sum()),
                        store_path=path)],
    }, run_id="r1")
    return url


def test_snapshot_sees_a_changed_pixel(small_store, tmp_path):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_store, copy)
    assert snapshot(copy) == snapshot(small_store)
    arr = zarr.open_array(str(copy / "obs/0123456789/S003_020ks_000/input/counts"), mode="r+")
    data = arr[...]
    data[1, 2] += 1
    arr[...] = data
    assert snapshot(copy) != snapshot(small_store)


def test_integrity_check_sees_incomplete_and_orphan_groups(small_store, tmp_path):
    import shutil

    assert check_store_integrity(small_store)["slices"] == 1
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_store, copy)
    g = zarr.open_group(str(copy / "obs/0123456789/S003_020ks_000/input"), mode="r+")
    g.attrs["complete"] = False
    with pytest.raises(AssertionError, match="not complete"):
        check_store_integrity(copy)
    shutil.rmtree(copy)
    shutil.copytree(small_store, copy)
    zarr.open_group(str(copy / "obs"), mode="r+").create_group("0999999999", attributes={"complete": True})
    with pytest.raises(AssertionError, match="orphans"):
        check_store_integrity(copy)
