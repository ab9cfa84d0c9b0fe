"""Store integrity at archive scale: concurrent runs, checksums, deep validation, repair.

Each fault an operator can cause is reproduced on a copy of one undisturbed run's store
(``reference``): two runs started together, a deleted and a truncated product chunk, a
truncated catalog chunk, a damaged root ``zarr.json``. For each, ``validate --deep`` must
name the damaged product or column, no command may print a traceback, and ``repair --apply``
followed by a plain run must give back a store equal to the undisturbed one (array for array,
row for row: :func:`snapshot`, read straight from Zarr).

The checksums themselves are checked against an independent computation (hashlib over the
arrays read straight from Zarr, chunk counts from the data).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from test_reliability_support import (
    check_store_integrity,
    make_tiny_models,
    pipeline_dict,
    run_in_process,
    snapshot,
)
from xsa_enhance.cli.main import main
from xsa_enhance.standin import LocalArchive
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore
from xsa_enhance.store.integrity import deep_check
from xsa_enhance.store.lease import LEASE_NAME, LeaseHeldError, StoreLease, read_lease

KINDS = ["normal", "flares"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("integrity-archive"), kinds=KINDS, seed=61,
                      producer=minimal_products) as la:
        yield la


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def reference(archive, models, tmp_path_factory):
    """One undisturbed run: the store, its snapshot and its pipeline document."""
    url = tmp_path_factory.mktemp("ref") / "store.zarr"
    doc = pipeline_dict(archive, url, models)
    summary = run_in_process(doc)
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.format()
    counts = check_store_integrity(url)
    assert counts["products"] >= 2
    return url, snapshot(url)


def _copy(reference, tmp_path: Path) -> Path:
    url = tmp_path / "store.zarr"
    shutil.copytree(reference[0], url)
    return url


def _doc(archive, models, url: Path) -> dict:
    return pipeline_dict(archive, url, models)


def _cli(*args: str):
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{args}: {type(res.exception).__name__}: {res.exception}\n{res.output}")
    assert "Traceback" not in res.output, res.output
    return res


def _products(url: Path) -> list[str]:
    store = ProductStore(url, mode="r")
    return sorted(store.catalog("products").column("store_path").tolist())


def _shard(url: Path, group: str, array: str = "counts") -> Path:
    files = [p for p in (url / group / array / "c").rglob("*") if p.is_file()]
    assert len(files) == 1, files
    return files[0]


def _catalog_chunk(url: Path, catalog: str, column: str) -> Path:
    state = json.loads((url / "zarr.json").read_text())["attributes"]["catalogs"]
    return url / state[catalog]["path"] / column / "c" / "0"


def _repair_and_rerun(url: Path, archive, models, reference) -> None:
    res = _cli("repair", str(url))
    assert res.exit_code == 1, res.output  # dry run: damage found, nothing changed
    before = {p: p.stat().st_mtime_ns for p in url.rglob("*") if p.is_file()}
    assert before == {p: p.stat().st_mtime_ns for p in url.rglob("*") if p.is_file()}
    res = _cli("repair", str(url), "--apply")
    assert res.exit_code == 0, res.output
    assert deep_check(url) == []
    summary = run_in_process(_doc(archive, models, url))
    assert {o["status"] for o in summary.outcomes} <= {"ok", "skipped"}, summary.format()
    check_store_integrity(url)
    assert deep_check(url) == []
    assert snapshot(url) == reference[1]


# ---------------------------------------------------------------------- checksums
def test_checksums_match_an_independent_computation(reference):
    url = reference[0]
    root = zarr.open_group(str(url), mode="r", use_consolidated=False)
    checked = 0
    for path in _products(url) + [f"{p.rsplit('/products/', 1)[0]}/input" for p in _products(url)]:
        group = root[path]
        sums = dict(group.attrs)["checksums"]
        assert set(sums) == set(group.array_keys())
        for name, rec in sums.items():
            data = np.ascontiguousarray(group[name][...])
            h = hashlib.sha256(data.dtype.str.encode() + str(data.shape).encode() + data.tobytes())
            assert rec["sha256"] == h.hexdigest(), (path, name)
            # chunks stored: zarr keeps each array in one shard file (absent when the
            # array holds only its fill value) of shard / chunk inner chunks
            arr = group[name]
            shards = [p for p in (url / path / name / "c").rglob("*") if p.is_file()]
            per_shard = int(np.prod([s // c for s, c in zip(arr.shards, arr.chunks)]))
            nonfill = len(shards) * per_shard
            assert rec["chunks"] == nonfill, (path, name)
            checked += 1
    assert checked >= 10
    assert deep_check(url) == []


# ---------------------------------------------------------------------- damaged product chunks
@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_damaged_product_chunk_is_found_and_repaired(damage, archive, models, reference,
                                                     tmp_path):
    url = _copy(reference, tmp_path)
    victim = _products(url)[0]
    shard = _shard(url, victim)
    if damage == "delete":
        shard.unlink()
    else:
        os.truncate(shard, shard.stat().st_size // 2)
    key = victim.replace("obs/", "").replace("/products/", "/")
    findings = deep_check(url)
    assert [(f.kind, f.key) for f in findings] == [("product", key)], findings
    res = _cli("validate", "--deep", str(url))
    assert res.exit_code == 1
    assert f"product {key}: array counts" in res.output
    assert "repair" in res.output
    # without --deep the schema check still passes (the fault is invisible to it)
    assert _cli("validate", str(url)).exit_code == 0
    # reading the product (export) refuses the damaged array instead of writing zeros
    res = _cli("export", "--store", str(url), "--obsid", key.split("/")[0], "--fits",
               str(tmp_path / "fits"))
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0 and f"{victim}/counts" in res.output
    assert "repair" in res.output
    _repair_and_rerun(url, archive, models, reference)
    quarantined = list((url / "quarantine").rglob("counts"))
    assert len(quarantined) == 1


def test_damaged_slice_input_reprocesses_its_observation(archive, models, reference, tmp_path):
    url = _copy(reference, tmp_path)
    product = _products(url)[0]
    slice_group = product.rsplit("/products/", 1)[0]
    obsid = slice_group.split("/")[1]
    _shard(url, f"{slice_group}/input", "exposure").unlink()
    findings = deep_check(url)
    key = slice_group.replace("obs/", "")
    assert [(f.kind, f.key) for f in findings] == [("slice", key)], findings
    res = _cli("repair", str(url))
    assert f"quarantine obs/{obsid} " in res.output, res.output
    _repair_and_rerun(url, archive, models, reference)
    assert len(list((url / "quarantine").glob(f"*/obs/{obsid}"))) == 1


# ---------------------------------------------------------------------- damaged catalogs
def test_truncated_catalog_chunk_is_reported_and_rebuilt(archive, models, reference, tmp_path):
    url = _copy(reference, tmp_path)
    chunk = _catalog_chunk(url, "products", "store_path")
    os.truncate(chunk, 55)
    findings = deep_check(url)
    assert [(f.kind, f.key) for f in findings] == [("catalog", "products.store_path")]
    res = _cli("validate", "--deep", str(url))
    assert res.exit_code == 1
    assert "products" in res.output and "store_path" in res.output and "repair" in res.output
    for args in (["catalog", "query", "--store", str(url), "--catalog", "products"],
                 ["run", "--store", str(url), "--in-process", "--force",
                  "--tap-url", archive.tap_url, "--aio-url", archive.aio_url]):
        res = _cli(*args)
        assert res.exit_code == 2, res.output
        line = res.output.strip()
        assert line.count("\n") == 0 and "store_path" in line and "repair" in line, line
    _repair_and_rerun(url, archive, models, reference)


def test_damaged_runs_log_keeps_what_reads_back(archive, models, reference, tmp_path):
    url = _copy(reference, tmp_path)
    n_runs = len(ProductStore(url, mode="r").catalog("runs").read())
    os.truncate(_catalog_chunk(url, "runs", "obsid"), 20)
    assert [(f.kind, f.key) for f in deep_check(url)] == [("catalog", "runs.obsid")]
    res = _cli("repair", str(url), "--apply")
    assert res.exit_code == 0 and f"catalog runs: 0 rows ({n_runs} rows not recoverable)" \
        in res.output, res.output
    assert deep_check(url) == []
    summary = run_in_process(_doc(archive, models, url))  # all done already: skipped
    assert {o["status"] for o in summary.outcomes} == {"skipped"}, summary.format()
    assert snapshot(url) == reference[1]


def test_damaged_root_metadata_is_rebuilt(archive, models, reference, tmp_path):
    url = _copy(reference, tmp_path)
    meta = url / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:200])
    findings = deep_check(url)
    assert [f.kind for f in findings] == ["root"]
    res = _cli("validate", "--deep", str(url))
    assert res.exit_code == 1 and "zarr.json" in res.output and "repair" in res.output
    res = _cli("catalog", "query", "--store", str(url))
    assert res.exit_code == 2 and "repair" in res.output, res.output
    _repair_and_rerun(url, archive, models, reference)
    runs = ProductStore(url, mode="r").catalog("runs").read()
    assert len(runs) >= 2  # the reference run's rows were salvaged


# ---------------------------------------------------------------------- the writer lease
_RACER = textwrap.dedent("""
    import os, sys, time, pathlib
    import torch, xsa_enhance.pipeline, xsa_enhance.events, xsa_enhance.archive  # warm imports
    from xsa_enhance.cli.main import main
    ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    ready.write_text("ready")
    while not go.exists():
        time.sleep(0.002)
    main(sys.argv[3:], prog_name="xsa-enhance")
""")


def _race(tmp_path: Path, pipeline: Path, *extra: str) -> list[subprocess.CompletedProcess]:
    """Start two `xsa-enhance run` at the same instant (both warmed up, then released)."""
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        args = [sys.executable, "-c", _RACER, str(ready), str(go), "run", "--pipeline",
                str(pipeline), *extra]
        procs.append((subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=env), ready))
    deadline = time.monotonic() + 300
    while not all(r.exists() for _, r in procs) and time.monotonic() < deadline:
        assert all(p.poll() is None for p, _ in procs), [p.communicate() for p, _ in procs]
        time.sleep(0.02)
    go.write_text("go")
    out = []
    for p, _ in procs:
        stdout, stderr = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("wait", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_two_runs_started_together(wait, archive, models, reference, tmp_path):
    import yaml

    url = tmp_path / "store.zarr"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(_doc(archive, models, url)))
    results = _race(tmp_path, pipeline, *(["--wait-for-lock"] if wait else []))
    codes = sorted(r.returncode for r in results)
    if wait:
        assert codes == [0, 0], [r.stderr[-2000:] for r in results]
        assert any("waiting" in r.stderr for r in results), [r.stderr for r in results]
    else:
        assert codes == [0, 2], [r.stderr[-2000:] for r in results]
        loser = next(r for r in results if r.returncode == 2)
        lines = loser.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), loser.stderr
        assert "being written by run" in lines[0] and "--wait-for-lock" in lines[0]
        assert "Traceback" not in loser.stderr
    for r in results:
        assert "Traceback" not in r.stderr
    assert snapshot(url) == reference[1]
    check_store_integrity(url)
    store = ProductStore(url, mode="r")
    assert [r["status"] for r in store.run_log] == ["finished"] * (2 if wait else 1)
    runs = store.catalog("runs").read()
    first = runs[runs["run_id"] == store.run_log[0]["run_id"]]
    assert sorted(first["obsid"]) == sorted(set(first["obsid"]))  # each observation once
    assert set(first["status"]) == {"ok"}
    assert not (url / LEASE_NAME).exists()


def test_lease_held_by_a_live_run_stops_a_second_one(tmp_path):
    held = StoreLease(tmp_path / "s.zarr", run_id="first").acquire()
    try:
        doc = read_lease(tmp_path / "s.zarr")
        assert doc["pid"] == os.getpid() and doc["run_id"] == "first"
        t0 = time.monotonic()
        with pytest.raises(LeaseHeldError, match=r"being written by run first .*pid") as exc:
            StoreLease(tmp_path / "s.zarr", run_id="second").acquire(wait_s=0.3, poll_s=0.05)
        assert "\n" not in str(exc.value)
        assert time.monotonic() - t0 >= 0.3
    finally:
        held.release()
    assert not (tmp_path / "s.zarr" / LEASE_NAME).exists()
    again = StoreLease(tmp_path / "s.zarr", run_id="second").acquire()
    again.release()
    assert [p.name for p in (tmp_path / "s.zarr").iterdir()] == []  # no private files left


def test_stale_leases_are_taken_over(tmp_path, caplog):
    folder = tmp_path / "s.zarr"
    folder.mkdir()
    # a run killed on this host: its pid no longer exists
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LEASE_NAME).write_text(json.dumps({"token": "x", "run_id": "killed",
                                                 "host": socket.gethostname(),
                                                 "pid": dead.pid}))
    lease = StoreLease(folder, run_id="new").acquire()
    assert lease.took_over["run_id"] == "killed"
    assert "taking over" in caplog.text and "no longer exists" in caplog.text
    lease.release()
    # a run on another host whose heartbeat stopped long ago (file-server time)
    (folder / LEASE_NAME).write_text(json.dumps({"token": "y", "run_id": "elsewhere",
                                                 "host": "node-17.cluster", "pid": 1}))
    old = time.time() - 3600
    os.utime(folder / LEASE_NAME, (old, old))
    lease = StoreLease(folder, run_id="new2").acquire()
    assert lease.took_over["run_id"] == "elsewhere"
    # ... but a fresh heartbeat from another host is respected
    lease.release()
    (folder / LEASE_NAME).write_text(json.dumps({"token": "z", "run_id": "alive",
                                                 "host": "node-18.cluster", "pid": 1}))
    with pytest.raises(LeaseHeldError, match="alive"):
        StoreLease(folder, run_id="new3").acquire()


def test_heartbeat_keeps_the_lease_and_notices_a_take_over(tmp_path):
    folder = tmp_path / "s.zarr"
    lease = StoreLease(folder, run_id="slow", heartbeat_s=0.05, stale_s=1.0).acquire()
    try:
        old = time.time() - 100
        os.utime(folder / LEASE_NAME, (old, old))
        time.sleep(0.3)
        assert time.time() - (folder / LEASE_NAME).stat().st_mtime < 5  # refreshed
        lease.check()
        # another run took it over while this one stalled
        (folder / LEASE_NAME).write_text(json.dumps({"token": "other", "run_id": "thief"}))
        time.sleep(0.3)
        from xsa_enhance.store.lease import LeaseLostError

        with pytest.raises(LeaseLostError, match="thief"):
            lease.check()
    finally:
        lease.release()
    assert (folder / LEASE_NAME).exists()  # the thief's lease is not removed


def test_killed_run_is_marked_interrupted(archive, models, reference, tmp_path):
    url = _copy(reference, tmp_path)
    store = ProductStore(url, mode="r+")
    store.record_run({"run_id": "killed-1", "started": "2026-01-01T00:00:00Z",
                      "status": "running"})
    summary = run_in_process(_doc(archive, models, url))
    assert any("killed-1" in n for n in summary.notes), summary.notes
    log = {r["run_id"]: r["status"] for r in ProductStore(url, mode="r").run_log}
    assert log["killed-1"] == "interrupted"
    assert log[summary.run_id] == "finished"


def test_argument_paths_are_checked_up_front(archive, models, reference, tmp_path):
    url = _copy(reference, tmp_path)
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    res = _cli("run", "--store", str(url), "--in-process", "--work-dir", str(a_file),
               "--tap-url", archive.tap_url, "--aio-url", archive.aio_url)
    assert res.exit_code == 2 and "--work-dir" in res.output and str(a_file) in res.output
    res = _cli("run", "--store", str(a_file), "--in-process",
               "--tap-url", archive.tap_url, "--aio-url", archive.aio_url)
    assert res.exit_code == 2 and "must be a folder" in res.output
    assert a_file.read_text() == "x"


# ---------------------------------------------------------------------- smaller faults
def test_transient_html_reply_is_described_as_the_reply_that_failed(archive, tmp_path,
                                                                    monkeypatch):
    from xsa_enhance.archive import ArchiveConfig, harvest_observation
    from xsa_enhance.standin import FaultPlan

    monkeypatch.chdir(tmp_path)
    obsid = archive.observations[0].obsid
    # the first request (astroquery's HEAD) gets an HTML page, the next one data
    with LocalArchive(archive.root, kinds=KINDS, seed=61, producer=minimal_products,
                      faults=FaultPlan(wrong_content_type=1)) as la:
        cfg = ArchiveConfig(tap_url=la.tap_url, aio_url=la.aio_url, timeout=10.0, retries=0,
                            backoff=0.01)
        res = harvest_observation(obsid, tmp_path / "h", config=cfg)
    assert res.status == "failed"
    assert "text/html" in res.reason and "transient" in res.reason, res.reason
    assert res.reason.isprintable() and len(res.reason) < 300, res.reason


def test_servers_sharing_a_cache_build_the_database_safely(tmp_path):
    import sqlite3
    import threading

    from xsa_enhance.standin.catalog import build_database, plan_observations

    observations = plan_observations(40, seed=3)
    db = tmp_path / "xsa.sqlite"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            for _ in range(3):
                build_database(db, observations)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["xsa.sqlite"]  # no *.tmp left behind
    with sqlite3.connect(db) as conn:
        n = conn.execute("SELECT COUNT(*) FROM v_all_observations").fetchone()[0]
    assert n == len(observations)


def test_catalog_query_into_an_unwritable_folder_is_one_line(reference, tmp_path):
    target = tmp_path / "missing-folder" / "rows.csv"
    res = _cli("catalog", "query", "--store", str(reference[0]), "--format", "csv",
               "-o", str(target))
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and str(target) in res.output, res.output
