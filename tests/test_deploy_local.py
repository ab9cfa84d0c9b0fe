"""The HPC guide's "Try it locally": the documented commands give the documented output.

The commands and the expected output are read from docs/hpc.md itself, so the page and the
behaviour cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HPC = REPO / "docs" / "hpc.md"


def _section() -> str:
    text = HPC.read_text()
    start = text.index("## Try it locally")
    return text[start:]


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def test_try_it_locally_commands_give_the_documented_output(tmp_path):
    blocks = _blocks(_section())
    start_cmd = blocks[0].strip()
    documented_line = blocks[1].strip()
    check_cmd = next(
        l for b in blocks[2:] for l in b.splitlines() if l.startswith("python -c")
    )
    sched = "/tmp/xsa-try/scheduler.json"
    assert sched in start_cmd and sched in check_cmd
    mine = str(tmp_path / "scheduler.json")

    # 1. the local cluster, as documented (our own scheduler-file path; any free dashboard port)
    args = start_cmd.replace(sched, mine).split()
    assert args[:2] == ["python", "deploy/local/local-cluster.py"]
    proc = subprocess.Popen(
        [sys.executable, *args[1:], "--dashboard", ":0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        first = proc.stdout.readline().strip()
        expected = re.escape(documented_line.replace(sched, mine)).replace("8787", r"\d+")
        assert re.fullmatch(expected, first), (first, documented_line)
        assert Path(mine).is_file()

        # 2. the documented check, verbatim but for the path
        out = subprocess.run(
            ["bash", "-c", check_cmd.replace(sched, mine).replace("python ", f"{sys.executable} ", 1)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "2 workers"  # what the page says it prints
        assert "The first prints `2 workers`" in _section()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "cluster closed" in rest
    assert not Path(mine).exists()  # the scheduler file is removed on exit


def test_local_cluster_gpu_workers_and_argument_checks(tmp_path):
    sched = tmp_path / "s.json"
    proc = subprocess.Popen(
        [sys.executable, "deploy/local/local-cluster.py", "--workers", "2", "--gpu-workers", "1",
         "--scheduler-file", str(sched), "--dashboard", ":0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )
    try:
        assert "(1 with GPU=1)" in proc.stdout.readline()
        from distributed import Client

        with Client(scheduler_file=str(sched), timeout=30) as client:
            workers = client.scheduler_info()["workers"].values()
            assert sorted((w["name"], w["resources"].get("GPU", 0)) for w in workers) == [
                ("local-cpu-1", 0),
                ("local-gpu-0", 1),
            ]
            # a task that needs the GPU resource runs on the GPU worker only
            where = client.submit(lambda: __import__("distributed").get_worker().name,
                                  resources={"GPU": 1}, pure=False).result(timeout=30)
            assert where == "local-gpu-0"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    bad = subprocess.run(
        [sys.executable, "deploy/local/local-cluster.py", "--workers", "1", "--gpu-workers", "2",
         "--scheduler-file", str(sched)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "--gpu-workers" in bad.stderr


@pytest.mark.slow
def test_try_it_locally_full_run(tmp_path, request):
    """The whole section: cluster, local archive, the documented run and query (minutes)."""
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow: run with `make test-slow` (pytest -m slow)")
    blocks = _blocks(_section())
    sched = "/tmp/xsa-try/scheduler.json"
    mine = str(tmp_path / "scheduler.json")
    serve = next(b for b in blocks if "archive serve" in b).strip()
    port = re.search(r"--port (\d+)", serve).group(1)
    client_block = next(b for b in blocks if "xsa-enhance run" in b)
    joined = re.sub(r"\\\n\s*", " ", client_block)
    run_cmd = next(l for l in joined.splitlines() if l.startswith("xsa-enhance run"))
    query_cmd = next(l for l in joined.splitlines() if l.startswith("xsa-enhance catalog"))
    free = _free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "deploy/local/local-cluster.py", "--workers", "2",
             "--scheduler-file", mine, "--dashboard", ":0"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True))
        procs.append(subprocess.Popen(
            serve.replace(f"--port {port}", f"--port {free}").replace("xsa-enhance", _xsa(), 1).split(),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True))
        assert "LocalCluster with 2 worker(s)" in procs[0].stdout.readline()
        for line in procs[1].stdout:  # printed once the observations are ready
            if line.startswith("AIO URL:"):
                assert line.split()[-1] == f"http://127.0.0.1:{free}/nxsa-sl/servlet/data-action-aio?"
                break
        else:
            pytest.fail("the local archive never printed its URLs")
        threading.Thread(target=procs[1].stdout.read, daemon=True).start()  # keep the pipe drained
        store = str(tmp_path / "store.zarr")

        def adapt(cmd: str) -> list[str]:
            cmd = cmd.replace(sched, mine).replace("/tmp/xsa-try/store.zarr", store)
            cmd = cmd.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
            return [_xsa()] + shlex.split(cmd)[1:]

        run = subprocess.run(adapt(run_cmd), cwd=REPO, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Dask workers: 2" in run.stderr + run.stdout
        out = run.stdout
        assert re.search(r"6 observations - \d+ ok, 2 skipped, 1 failed", out), out[-2000:]
        assert re.search(r"skipped\s+\(select: proprietary", out)
        assert re.search(r"failed\s+\(harvest: ", out)
        query = subprocess.run(adapt(query_cmd), cwd=REPO, capture_output=True, text=True, timeout=300)
        assert query.returncode == 0
        statuses = re.findall(r"^\s*\S+ \d{10}\s+(ok|failed|skipped)\s", query.stdout, re.M)
        assert sorted(statuses).count("failed") == 1 and statuses.count("skipped") == 2
        assert len(statuses) == 6
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.communicate(timeout=60)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _xsa() -> str:
    return str(Path(sys.executable).parent / "xsa-enhance")
