"""The HPC guide's "Try it locally": the documented commands give the documented output.

The commands and the expected output are read from docs/hpc.md itself, so the page and the
behaviour cannot drift apart.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    check_cmd = next(l for l in blocks[2].splitlines() if l.startswith("python -c"))
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
