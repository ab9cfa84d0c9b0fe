"""Disk full and permission denied on the store: nothing half-written is visible as complete.

Three ways the store's file system fails under a run:

- ``ENOSPC`` injected into zarr's lowest-level file write (``zarr.storage._local._put``)
  after a chosen number of writes -- mid-run and late (a failure while the store is being
  created is covered by the SIGKILL trials), the points placed by counting
  the writes of an undisturbed run (runs everywhere, no privileges needed);
- a real full disk: the store on a small ``tmpfs`` (needs root to mount; skipped otherwise);
- a read-only store: the ``tmpfs`` remounted read-only (``EROFS``) and ``EACCES`` injected
  (root bypasses file modes, so ``chmod`` proves nothing when the suite runs as root).

After each failure the store must open and every row it shows must describe complete,
readable data; once space/permission is back, a rerun must give exactly the undisturbed store.
The message the user sees is checked at the CLI (one line naming the store and the reason;
these two tests were xfail regressions until ``32e1fef`` converted storage OSErrors).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_reliability_support import (
    check_store_integrity,
    check_visible_state,
    make_tiny_models,
    pipeline_dict,
    run_in_process,
    snapshot,
)
from xsa_enhance.errors import XsaError
from xsa_enhance.standin import LocalArchive
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore

KINDS = ["normal", "flares"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("disk-archive"), kinds=KINDS, seed=51,
                      producer=minimal_products) as la:
        yield la


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("weights"))


@contextmanager
def failing_writes(after: int, err: int = errno.ENOSPC):
    """Make every zarr file write after the first ``after`` fail with ``OSError(err)``."""
    import zarr.storage._local as local

    original = local._put
    calls = {"n": 0, "failed": 0}

    def put(path, value, exclusive=False):
        calls["n"] += 1
        if after >= 0 and calls["n"] > after:
            calls["failed"] += 1
            raise OSError(err, os.strerror(err), str(path))
        return original(path, value, exclusive=exclusive)

    local._put = put
    try:
        yield calls
    finally:
        local._put = original


@pytest.fixture(scope="module")
def reference(archive, models, tmp_path_factory):
    """An undisturbed run, counting its file writes."""
    url = tmp_path_factory.mktemp("ref") / "store.zarr"
    with failing_writes(-1) as calls:
        summary = run_in_process(pipeline_dict(archive, url, models))
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.format()
    check_store_integrity(url)
    return url, calls["n"], snapshot(url)


def _disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _run_expecting_storage_failure(doc) -> str:
    """Run; the storage failure either ends the run or is recorded per observation."""
    try:
        summary = run_in_process(doc)
    except (OSError, XsaError) as exc:
        return f"raised {type(exc).__name__}: {exc}"
    reasons = [o["reason"] for o in summary.outcomes if o["status"] == "failed"]
    assert reasons, "the storage failure went unnoticed"
    return "; ".join(reasons)


@pytest.mark.parametrize("fraction", [0.5, pytest.param(0.9, marks=pytest.mark.slow)])
def test_enospc_at_a_point_of_the_run_then_rerun_equals_undisturbed(fraction, archive, models,
                                                                     reference, tmp_path):
    ref_url, n_writes, ref_snap = reference
    url = tmp_path / "store.zarr"
    doc = pipeline_dict(archive, url, models)
    with failing_writes(max(1, int(fraction * n_writes))) as calls:
        what = _run_expecting_storage_failure(doc)
    assert calls["failed"] >= 1
    assert "No space left on device" in what, what
    check_visible_state(url)
    # space is back: the rerun cleans up and completes
    summary = run_in_process(doc)
    assert {o["status"] for o in summary.outcomes} <= {"ok", "skipped"}, summary.format()
    check_store_integrity(url)
    assert snapshot(url) == ref_snap


# -- real file systems (tmpfs; root only) -----------------------------------------------------


@pytest.fixture()
def tmpfs(tmp_path):
    """Mount a tmpfs (``remount(size=..., ro=...)`` changes it); skips when mounting fails."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()

    def mount(opts: str) -> None:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")

    def remount(opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True,
                       capture_output=True)

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = {"done": False}

    def do_mount(opts: str) -> Path:
        mount(opts)
        mounted["done"] = True
        return mnt

    yield do_mount, remount
    if mounted["done"]:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_disk_then_more_space_equals_undisturbed(tmpfs, archive, models, reference):
    ref_url, _, ref_snap = reference
    mount, remount = tmpfs
    size_kb = max(64, int(0.6 * _disk_usage(ref_url) / 1024))
    mnt = mount(f"size={size_kb}k")
    url = mnt / "store.zarr"
    doc = pipeline_dict(archive, url, models)
    what = _run_expecting_storage_failure(doc)
    assert "No space left on device" in what, what
    check_visible_state(url)
    # nothing half-written is left next to the data: zarr writes through temporary files
    assert not list(mnt.rglob("*.partial"))
    remount("size=64m")
    summary = run_in_process(doc)
    assert {o["status"] for o in summary.outcomes} <= {"ok", "skipped"}, summary.format()
    check_store_integrity(url)
    assert snapshot(url) == ref_snap


def test_read_only_store_is_refused_and_left_untouched(tmpfs, archive, models, reference):
    ref_url, _, ref_snap = reference
    mount, remount = tmpfs
    mnt = mount("size=16m")
    url = mnt / "store.zarr"
    shutil.copytree(ref_url, url)
    before = {str(p.relative_to(url)): p.read_bytes() for p in url.rglob("*") if p.is_file()}
    remount("ro")
    doc = pipeline_dict(archive, url, models, force=True)
    with pytest.raises((OSError, XsaError)) as info:
        run_in_process(doc)
    assert "Read-only file system" in str(info.value) or "read-only" in str(info.value).lower()
    after = {str(p.relative_to(url)): p.read_bytes() for p in url.rglob("*") if p.is_file()}
    assert after == before
    remount("rw")
    check_store_integrity(url)
    assert snapshot(url) == ref_snap


def test_permission_denied_midway_leaves_nothing_visible_half_done(archive, models, reference,
                                                                   tmp_path):
    ref_url, n_writes, ref_snap = reference
    url = tmp_path / "store.zarr"
    doc = pipeline_dict(archive, url, models)
    with failing_writes(n_writes // 3, errno.EACCES):
        what = _run_expecting_storage_failure(doc)
    assert "Permission denied" in what, what
    check_visible_state(url)
    run_in_process(doc)
    check_store_integrity(url)
    assert snapshot(url) == ref_snap


# -- what the user sees ------------------------------------------------------------------------


def _cli_run(archive, url, tmp_path):
    import yaml
    from click.testing import CliRunner

    from xsa_enhance.cli.main import main

    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(yaml.safe_dump(pipeline_dict(archive, url, [])))
    return CliRunner().invoke(main, ["run", "--pipeline", str(pipeline)])


def test_cli_disk_full_is_one_line_naming_the_store(archive, reference, tmp_path):
    _, n_writes, _ = reference
    url = tmp_path / "store.zarr"
    with failing_writes(n_writes // 2):
        res = _cli_run(archive, url, tmp_path)
    assert res.exit_code == 2, (res.exit_code, res.exception)
    last = [ln for ln in res.output.splitlines() if ln.strip()][-1]
    assert last.startswith("error:") and str(url) in last and "No space left" in last


def test_cli_unwritable_store_is_one_line_naming_the_store(archive, tmp_path):
    url = tmp_path / "store.zarr"
    ProductStore(url, mode="a")
    with failing_writes(0, errno.EACCES):
        res = _cli_run(archive, url, tmp_path)
    assert res.exit_code == 2, (res.exit_code, res.exception)
    last = [ln for ln in res.output.splitlines() if ln.strip()][-1]
    assert last.startswith("error:") and str(url) in last and "Permission denied" in last
