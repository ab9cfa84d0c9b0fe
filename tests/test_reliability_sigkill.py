"""SIGKILL of the whole run at random points; the rerun's store equals an uninterrupted run's.

``test_pipeline_run.py`` kills one run at one chosen point (after the first slice rows are
published). Here the kill point is drawn at random (seeded per trial) over the whole run: the
child reports every progress event of the driver, the trial picks one of the reference run's
progress events uniformly and then a random delay inside the gap that follows it (as timed in
the reference run), so kills land during selection, downloads, event processing, array writes,
catalog commits, inference and the final bookkeeping alike. Odd trials kill the resumed run a second time. After
every kill the store must open, and every row it shows must describe complete, readable data
(:func:`check_store_integrity` with orphans allowed); after the final rerun there must be no
orphans, no duplicate rows, and the store must equal the uninterrupted run's, array for array.

Two trials run in the normal suite; the full set of 10 trials is ``slow``
(``make test-slow`` or ``XSA_SLOW=1``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from test_reliability_support import (
    check_store_integrity,
    check_visible_state,
    make_tiny_models,
    pipeline_dict,
    run_in_process,
    slow_enabled,
    snapshot,
)
from xsa_enhance.standin import LocalArchive
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore

KINDS = ["normal", "flares", "corrupt"]
SEED = 31

_CHILD = textwrap.dedent("""
    import json, os, sys, pathlib
    from xsa_enhance.pipeline import PipelineConfig, run_pipeline, InProcessExecutor
    import xsa_enhance.models, xsa_enhance.events, xsa_enhance.archive, torch  # warm imports
    cfg = PipelineConfig.from_dict(json.loads(sys.argv[1]))
    progress_file = pathlib.Path(sys.argv[3])
    events = [0]
    def progress(state):
        events[0] += 1
        tmp = progress_file.with_suffix(".tmp")
        tmp.write_text(str(events[0]))
        os.replace(tmp, progress_file)
    pathlib.Path(sys.argv[2]).write_text("ready")
    with InProcessExecutor() as ex:
        run_pipeline(cfg, executor=ex, progress=progress)
""")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("kill-archive"), kinds=KINDS, seed=SEED,
                      producer=minimal_products) as la:
        yield la


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def reference(archive, models, tmp_path_factory):
    from xsa_enhance.pipeline import InProcessExecutor, PipelineConfig, run_pipeline

    url = tmp_path_factory.mktemp("ref") / "store.zarr"
    stamps: list[float] = []
    t0 = time.perf_counter()
    with InProcessExecutor() as ex:
        summary = run_pipeline(PipelineConfig.from_dict(pipeline_dict(archive, url, models)),
                               executor=ex,
                               progress=lambda state: stamps.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    status = {o["obsid"]: o["status"] for o in summary.outcomes}
    assert sorted(status.values()) == ["failed", "ok", "ok"], summary.format()
    counts = check_store_integrity(url)
    assert counts["products"] >= 2
    return url, (stamps, wall), snapshot(url)


def _progress(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def _kill_at_random(doc: dict, tmp: Path, after_events: int, delay_s: float) -> dict:
    """Start a run in a child process; SIGKILL it ``delay_s`` after its n-th progress event."""
    tag = time.monotonic_ns()
    ready, progress = tmp / f"ready-{tag}", tmp / f"progress-{tag}"
    log = open(tmp / "child.log", "ab")
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(doc), str(ready),
                             str(progress)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready.exists(), (tmp / "child.log").read_text()[-2000:]
        while (_progress(progress) < after_events and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.005)
        time.sleep(delay_s)
        finished_first = proc.poll() is not None
        if not finished_first:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    state = {"killed": not finished_first, "returncode": proc.returncode}
    if not finished_first:
        assert proc.returncode == -signal.SIGKILL
    return state


def _trial(seed: int, archive, models, reference, tmp_path: Path) -> list[dict]:
    ref_url, (stamps, wall), ref_snap = reference
    rng = np.random.default_rng(seed)
    bounds = [0.0] + stamps + [wall]
    url = tmp_path / "store.zarr"
    doc = pipeline_dict(archive, url, models)
    n_kills = 1 + seed % 2
    states = []
    for _ in range(n_kills):
        event = int(rng.integers(0, len(stamps) + 1))
        delay = float(rng.uniform(0.0, bounds[event + 1] - bounds[event]))
        state = _kill_at_random(doc, tmp_path, event, delay)
        state.update(after_event=event, of_events=len(stamps), delay_s=round(delay, 3))
        visible = check_visible_state(url)
        if visible is None:
            state["run_status"] = "store not initialised"
        else:
            state.update(visible)
            store = ProductStore(url, mode="r")
            state["run_status"] = store.run_log[-1]["status"] if store.run_log else None
        states.append(state)
    summary = run_in_process(doc)
    assert summary.count("ok") + summary.count("skipped") == 2 and summary.count("failed") == 1
    final = check_store_integrity(url)
    assert final["orphans"] == 0
    assert snapshot(url) == ref_snap
    store = ProductStore(url, mode="r")
    assert store.run_log[-1]["status"] == "finished"
    return states


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_random_sigkill_then_resume_equals_uninterrupted(seed, archive, models, reference, tmp_path):
    states = _trial(seed, archive, models, reference, tmp_path)
    assert len(states) == 1 + seed % 2


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 110))
def test_random_sigkill_ten_trials(seed, archive, models, reference, tmp_path, request):
    if not slow_enabled(request.config):
        pytest.skip("long trial: run with -m slow (make test-slow) or XSA_SLOW=1")
    states = _trial(seed, archive, models, reference, tmp_path)
    record = Path(request.config.cache.mkdir("xsa-sigkill-trials")) / f"seed{seed}.json"
    record.write_text(json.dumps(states, default=str))
