"""Security at the pipeline level: hostile archive replies, hostile obsids, weights, loopback.

- a malicious tar (``..`` path, absolute path, symlink) served by the local archive for one
  observation: refused, nothing written outside the task's folder, the batch goes on;
- observation ids are validated before they are used in a path or a query: ids coming from a
  hostile TAP reply, from the command line and from the store API;
- weights: every ``torch.load`` in the package uses ``weights_only=True``; a weight file
  tampered with during a run is refused by its sha256 and the products are recorded as failed;
  a pickle that would run code is never executed, the run carries on without that model;
- the local archive listens on the loopback interface only (``archive serve`` uses the same
  class; its printed address is checked in ``test_archive_cli.py``).

Harvest-level versions of the tar and credential checks are in ``test_archive_harvest.py``;
registry-level weight checks in ``test_models_registry.py``.
"""

from __future__ import annotations

import ast
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from test_reliability_support import (
    check_store_integrity,
    make_tiny_models,
    outcomes_by_obsid,
    pipeline_dict,
    run_in_process,
)
from xsa_enhance.standin import FaultPlan, LocalArchive
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore

REPO = Path(__file__).resolve().parents[1]
KINDS = ["normal", "normal"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("sec-archive")


def _evil_files(*dirs: Path) -> list[Path]:
    found = []
    for d in dirs:
        if d.is_dir():
            found += [p for p in d.rglob("xsa-evil-*")]
    return found


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_malicious_tar_is_refused_and_the_batch_goes_on(kind, root, tmp_path):
    url = tmp_path / "store.zarr"
    work = tmp_path / "work" / "deep" / "er"
    with LocalArchive(root, kinds=KINDS, seed=81, producer=minimal_products) as probe:
        victim, other = (o.obsid for o in probe.observations)
    for stale in (Path("/tmp") / f"xsa-evil-{victim}.txt",):
        stale.unlink(missing_ok=True)
    plan = FaultPlan(malicious_tar=kind, obsids=frozenset({victim}))
    with LocalArchive(root, kinds=KINDS, seed=81, producer=minimal_products, faults=plan) as la:
        summary = run_in_process(pipeline_dict(la, url, [], retries=1, work_dir=str(work),
                                               keep_downloads=True))
    got = outcomes_by_obsid(summary)
    assert got[victim]["status"] == "failed"
    assert "unsafe tar reply refused" in got[victim]["reason"], got[victim]["reason"]
    assert got[other]["status"] == "ok"
    assert _evil_files(tmp_path) == [] and not (Path("/tmp") / f"xsa-evil-{victim}.txt").exists()
    # no link of any kind was created in the task folders
    assert not [p for p in tmp_path.rglob("*") if p.is_symlink()]
    check_store_integrity(url)


def _inject_hostile_rows(archive: LocalArchive, obsid: str) -> None:
    """Add an observation with a hostile id to the archive's tables (a compromised archive)."""
    db = sqlite3.connect(archive.root / "xsa.sqlite")
    try:
        src = archive.observations[0].obsid
        for table in ("v_public_observations", "v_all_observations", "v_exposure"):
            cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            rows = db.execute(f"SELECT * FROM {table} WHERE observation_id = ?", (src,)).fetchall()
            for row in rows:
                row = list(row)
                row[cols.index("observation_id")] = obsid
                db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
        db.commit()
    finally:
        db.close()


HOSTILE = ["../../../tmp/xsa-evil-obs", "0123456789' OR '1'='1"]


def _run_with_hostile_obsid(hostile: str, root: Path, tmp_path: Path):
    import shutil

    url = tmp_path / "store.zarr"
    work = tmp_path / "work"
    arch_root = tmp_path / "archive"
    shutil.copytree(root, arch_root, dirs_exist_ok=True)
    with LocalArchive(arch_root, kinds=KINDS, seed=81, producer=minimal_products) as la:
        _inject_hostile_rows(la, hostile)
        before = {str(p) for p in Path("/tmp").iterdir()}
        summary = run_in_process(pipeline_dict(la, url, [], work_dir=str(work)))
        after = {str(p) for p in Path("/tmp").iterdir()}
    return url, work, la, summary, after - before


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_obsid_from_the_archive_writes_nothing_outside(hostile, root, tmp_path):
    url, work, la, summary, new_in_tmp = _run_with_hostile_obsid(hostile, root, tmp_path)
    got = outcomes_by_obsid(summary)
    assert all(got[o.obsid]["status"] == "ok" for o in la.observations)
    if hostile in got:
        assert got[hostile]["status"] != "ok"
    store = ProductStore(url, mode="r")
    assert store.list_observations() == sorted(o.obsid for o in la.observations)
    assert hostile not in set(store.catalog("observations").column("obsid").tolist())
    assert not [p for p in new_in_tmp if "xsa-evil" in p or p.endswith("/x")]
    assert not [p for p in tmp_path.rglob("*") if "xsa-evil" in p.name]
    check_store_integrity(url)


@pytest.mark.parametrize("hostile", HOSTILE[:1])
def test_hostile_obsid_from_the_archive_is_refused_before_use(hostile, root, tmp_path):
    _, _, _, summary, _ = _run_with_hostile_obsid(hostile, root, tmp_path)
    got = outcomes_by_obsid(summary)
    if hostile in got:
        assert "not an XMM-Newton observation id" in got[hostile]["reason"], got[hostile]


def test_cli_refuses_a_bad_obsid_before_anything_happens(tmp_path):
    from click.testing import CliRunner

    from xsa_enhance.cli.main import main

    for bad in ("../../etc/passwd", "123", "0123456789; rm -rf /"):
        res = CliRunner().invoke(main, ["run", "--in-process", "--store", str(tmp_path / "s.zarr"),
                                        "--obsid", bad, "--tap-url", "http://127.0.0.1:9/tap",
                                        "--aio-url", "http://127.0.0.1:9/aio?"])
        assert res.exit_code == 2 and res.output.startswith("error:"), res.output
        assert "obsids" in res.output
        assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("bad", ["a/b", "/abs", "..", "0123456789/../x"])
def test_store_validates_obsids(bad, tmp_path):
    from xsa_enhance.errors import XsaError

    store = ProductStore(tmp_path / "s.zarr", mode="a")
    with pytest.raises(XsaError):
        store.begin_observation(bad, attrs={})
    assert store.list_observations() == []


# -- weights ------------------------------------------------------------------------------------


def test_every_torch_load_in_the_package_is_weights_only():
    calls = []
    for path in (REPO / "xsa_enhance").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            if name == "load" and owner == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                ok = "weights_only" in kw and isinstance(kw["weights_only"], ast.Constant) \
                    and kw["weights_only"].value is True
                calls.append((f"{path.relative_to(REPO)}:{node.lineno}", ok))
            if owner in ("pickle", "dill", "cloudpickle") and name in ("load", "loads"):
                calls.append((f"{path.relative_to(REPO)}:{node.lineno} {owner}.{name}", False))
    assert calls, "no torch.load found: the scan is broken"
    assert [c for c, ok in calls if not ok] == []


def test_weights_tampered_during_a_run_are_refused(root, tmp_path):
    """The driver pins each model's sha256; a file changed before the workers load it is refused."""
    from xsa_enhance.pipeline import InProcessExecutor, PipelineConfig, run_pipeline
    from xsa_enhance.pipeline.tasks import clear_model_cache

    models = make_tiny_models(tmp_path / "weights")
    url = tmp_path / "store.zarr"
    clear_model_cache()
    tampered = []

    def progress(state):
        if state.message == "submitted" and not tampered:
            with open(models[0], "ab") as fh:  # one appended byte: a different file
                fh.write(b"\0")
            tampered.append(models[0])

    with LocalArchive(root, kinds=KINDS, seed=81, producer=minimal_products) as la:
        cfg = PipelineConfig.from_dict(pipeline_dict(la, url, models))
        with InProcessExecutor() as ex:
            summary = run_pipeline(cfg, executor=ex, progress=progress)
    clear_model_cache()
    assert tampered
    assert summary.n_products_failed > 0
    for o in summary.outcomes:
        assert o["status"] == "failed" and o["stage"] == "enhance"
        assert ("weights changed during the run" in o["reason"]
                or "sha256 mismatch" in o["reason"]), o["reason"]
    store = ProductStore(url, mode="r")
    products = store.catalog("products").read()
    assert "tiny-sr" not in {str(m) for m in products["model"]}  # nothing from the tampered file
    assert len(products) == summary.n_products > 0  # the untouched DN model still ran
    check_store_integrity(url)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_never_executed_by_a_run(root, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": _Payload(str(marker)), "meta": {"name": "evil", "kind": "dn"}}, evil)
    url = tmp_path / "store.zarr"
    with LocalArchive(root, kinds=KINDS, seed=81, producer=minimal_products) as la:
        summary = run_in_process(pipeline_dict(la, url, [str(evil)]))
    assert not marker.exists(), "the pickle payload ran"
    assert any("evil.pt" in n and "not available" in n for n in summary.notes), summary.notes
    assert {o["status"] for o in summary.outcomes} == {"ok"}
    assert ProductStore(url, mode="r").catalog("products").nrows == 0


# -- loopback ------------------------------------------------------------------------------------


def _non_loopback_addresses() -> list[str]:
    addrs = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addrs.add(info[4][0])
    except socket.gaierror:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            addrs.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(a for a in addrs if not a.startswith("127."))


def test_local_archive_is_not_reachable_from_other_interfaces(root):
    with LocalArchive(root, kinds=KINDS, seed=81, producer=minimal_products) as la:
        port = la.port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        addrs = _non_loopback_addresses()
        if not addrs:
            pytest.skip("this machine has no non-loopback IPv4 address to try")
        for addr in addrs:
            with pytest.raises(OSError):
                socket.create_connection((addr, port), timeout=3).close()
