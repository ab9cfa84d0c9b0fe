"""deploy/slurm/xsa-enhance-allocation.sbatch: scheduler, workers and client in one allocation.

No SLURM here: a stand-in ``srun`` starts the tasks locally (with SLURM_PROCID set, and
signalling them when it is itself signalled, as slurmstepd does), and a stand-in
``xsa-enhance`` client records what it was given and what cluster it found.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "deploy" / "slurm" / "xsa-enhance-allocation.sbatch"

FAKE_SRUN = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    # stand-in for srun: run --ntasks copies of the command locally
    ntasks=1
    while [[ $# -gt 0 && "$1" == --* ]]; do
        case "$1" in --ntasks=*) ntasks="${1#--ntasks=}";; esac
        shift
    done
    echo "$ntasks" > "$FAKE_SRUN_LOG"
    pids=()
    for ((i = 0; i < ntasks; i++)); do
        SLURM_PROCID=$i setsid "$@" &
        pids+=("$!")
    done
    stop() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; wait; exit 0; }
    trap stop TERM INT
    wait
    """
)

FAKE_CLIENT = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    from distributed import Client

    args = sys.argv[1:]
    sf = args[args.index("--scheduler-file") + 1]
    with Client(scheduler_file=sf, timeout="60s") as c:
        c.wait_for_workers(2, timeout="60s")
        workers = c.scheduler_info()["workers"]
        total = c.submit(sum, range(10), resources={{"GPU": 1}}).result()
        dirs = c.run(lambda dask_worker: dask_worker.local_directory)
        out = {{
            "args": args,
            "address": c.scheduler.address,
            "names": sorted(w["name"] for w in workers.values()),
            "resources": [w["resources"] for w in workers.values()],
            "threads": [w["nthreads"] for w in workers.values()],
            "memory": [w["memory_limit"] for w in workers.values()],
            "dirs": sorted(dirs.values()),
            "sum": total,
        }}
    with open(os.environ["FAKE_CLIENT_OUT"], "w") as fh:
        json.dump(out, fh)
    """
)


def test_sbatch_syntax_and_directives():
    text = SBATCH.read_text()
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    directives = re.findall(r"^#SBATCH (--[\w-]+)=", text, re.M)
    for needed in ("--nodes", "--ntasks-per-node", "--cpus-per-task", "--time", "--output"):
        assert needed in directives
    # every #SBATCH line comes before the first command (sbatch stops reading at it)
    first_cmd = min(i for i, l in enumerate(text.splitlines()) if l and not l.startswith("#"))
    assert all(
        i < first_cmd for i, l in enumerate(text.splitlines()) if l.startswith("#SBATCH")
    )


def _port_open(address: str) -> bool:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def test_sbatch_runs_scheduler_workers_and_client_in_one_allocation(tmp_path):
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "srun").write_text(FAKE_SRUN)
    client = fakebin / "fake-xsa-enhance"
    client.write_text(FAKE_CLIENT.format(python=sys.executable))
    for f in fakebin.iterdir():
        f.chmod(0o755)
    node_tmp = tmp_path / "node-tmp"
    node_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "XSA_"))}
    env.update(
        PATH=f"{fakebin}:{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        SLURM_JOB_ID="777",
        SLURM_NTASKS="2",
        SLURM_CPUS_PER_TASK="1",
        SLURM_MEM_PER_CPU="1000",
        TMPDIR=str(node_tmp),
        XSA_ENHANCE_HOME=str(tmp_path / "checkout"),
        XSA_VENV=sys.prefix,
        XSA_STORE=str(tmp_path / "store"),
        XSA_SHARED_DIR=str(tmp_path / "shared"),
        XSA_WORKER_RESOURCES="GPU=1",
        XSA_MIN_WORKERS="2",
        XSA_ENHANCE=str(client),
        XSA_CLIENT_ARGS="--force",
        FAKE_CLIENT_OUT=str(tmp_path / "client.json"),
        FAKE_SRUN_LOG=str(tmp_path / "srun.log"),
    )
    proc = subprocess.run(
        ["bash", str(SBATCH)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "client.json").read_text())
    sched = tmp_path / "shared" / "scheduler-777.json"
    assert out["args"] == [
        "-v",
        "run",
        "--pipeline",
        str(tmp_path / "checkout" / "pipelines" / "archive-reprocess.yaml"),
        "--store",
        str(tmp_path / "store"),
        "--scheduler-file",
        str(sched),
        "--force",
    ]
    assert (tmp_path / "srun.log").read_text().strip() == "2"
    assert out["names"] == ["xsa-777-0", "xsa-777-1"]
    assert out["resources"] == [{"GPU": 1}, {"GPU": 1}]
    assert out["threads"] == [1, 1]
    # 1000 MiB per CPU x 1 CPU, less 10 % headroom
    assert out["memory"] == [900 * 2**20, 900 * 2**20]
    for i, d in enumerate(out["dirs"]):
        assert Path(d).resolve().is_relative_to((node_tmp / f"xsa-enhance-777-{i}").resolve())
    assert out["sum"] == 45
    # everything is torn down at the end: scheduler file, scratch, listening scheduler
    assert not sched.exists()
    assert not any(node_tmp.iterdir())
    assert not _port_open(out["address"])


def test_sbatch_refuses_to_run_without_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "XSA_"))}
    env["SLURM_JOB_ID"] = "1"
    proc = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "XSA_STORE" in proc.stderr
