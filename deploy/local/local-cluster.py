#!/usr/bin/env python
"""A Dask LocalCluster that stands in for a SLURM/PBS allocation, for trying things locally.

It writes a scheduler file exactly like the scheduler in deploy/slurm/xsa-enhance-allocation.sbatch,
so the same client commands work against it:

    python deploy/local/local-cluster.py --workers 2 --scheduler-file /tmp/xsa-try/scheduler.json
    xsa-enhance run ... --scheduler-file /tmp/xsa-try/scheduler.json

It runs until interrupted (Ctrl-C or SIGTERM), then closes the cluster and removes the file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="number of worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--memory", default="auto", help="memory limit per worker (e.g. 2GiB)")
    parser.add_argument(
        "--scheduler-file", type=Path, required=True, help="where to write the scheduler file"
    )
    parser.add_argument(
        "--gpu-workers",
        type=int,
        default=0,
        help="how many of the workers advertise the GPU=1 resource (as the gpu profile does)",
    )
    parser.add_argument("--dashboard", default=":8787", help="dashboard address (:0 = any port)")
    args = parser.parse_args(argv)
    if args.workers < 1 or not 0 <= args.gpu_workers <= args.workers:
        parser.error("need --workers >= 1 and 0 <= --gpu-workers <= --workers")

    from distributed import LocalCluster, Nanny

    args.scheduler_file.parent.mkdir(parents=True, exist_ok=True)
    args.scheduler_file.unlink(missing_ok=True)
    cluster = LocalCluster(
        n_workers=0,
        threads_per_worker=args.threads,
        memory_limit=args.memory,
        dashboard_address=args.dashboard,
        scheduler_kwargs={"scheduler_file": str(args.scheduler_file)},
    )
    spec = dict(cluster.worker_spec)
    for i in range(args.workers):
        options = {
            "nthreads": args.threads,
            "memory_limit": args.memory,
            "name": f"local-{'gpu' if i < args.gpu_workers else 'cpu'}-{i}",
        }
        if i < args.gpu_workers:
            options["resources"] = {"GPU": 1}
        spec[options["name"]] = {"cls": Nanny, "options": options}
    cluster.worker_spec = spec
    cluster.scale(len(spec))
    from distributed import Client

    with Client(cluster) as client:
        client.wait_for_workers(args.workers, timeout=120)
    print(
        f"LocalCluster with {args.workers} worker(s) ({args.gpu_workers} with GPU=1); "
        f"scheduler file {args.scheduler_file}; dashboard {cluster.dashboard_link}",
        flush=True,
    )

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    cluster.close()
    args.scheduler_file.unlink(missing_ok=True)
    print("cluster closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
