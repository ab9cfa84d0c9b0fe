"""Pipeline benchmark: Dask scaling of event processing, orchestration overhead, projection.

Measured side by side in one run, on simulated observations served by the local archive:

- ``events.*``: event processing (screen, flares, slices, binning) of the same event lists
  on a LocalCluster with 1 worker and with 2 workers (worker processes, 1 thread each,
  warmed up first); ``scaling`` is throughput (observations/s) per worker count and
  ``events.speedup_2v1`` their ratio (target >= 1.7 on 2 cores).
- ``overhead.*``: a whole pipeline run (harvest through astroquery -> events -> store ->
  enhance with small SR and DN networks) with the in-process executor and with a 1-worker
  LocalCluster; orchestration overhead = wall time minus the time spent inside the stage
  functions, per observation and as a fraction of the stage time (target <= 10 %), in
  total and without the once-per-run part (``fixed_s``: selection queries, orphan scan,
  run log, consolidation). ``costs.enhance_s_per_product_cpu_*`` time the paper-size
  networks (32 filters, 4 RRDBs) separately, one CPU thread.
- ``projection.*``: the whole archive (~5,500 pn observations, ~24,000 slices) from the
  measured per-stage costs, on N CPU workers and with GPU inference (GPU cost per product
  passed in ``XSA_BENCH_GPU_S_PER_PRODUCT`` when measured on a GPU machine, else a stated
  assumption).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ARCHIVE_OBS = 5500
ARCHIVE_SLICES = 24000
CACHE = Path(os.environ.get("XSA_BENCH_CACHE", Path(tempfile.gettempdir()) / "xsa-bench-pipeline"))


def _events_job(pievli: str, fbktsr: str | None) -> float:
    """Process one event list on a worker; returns the stage time (s)."""
    from xsa_enhance.events import EventsConfig
    from xsa_enhance.pipeline.stages import events_stage

    t0 = time.perf_counter()
    events_stage(pievli, fbktsr, config=EventsConfig())
    return time.perf_counter() - t0


def _warm(_: int) -> int:
    import xsa_enhance.events  # noqa: F401
    import xsa_enhance.pipeline.stages  # noqa: F401

    return os.getpid()


def _events_scaling(files: list[tuple[str, str | None]], *, repeats: int, rounds: int) -> dict[str, Any]:
    """Event-processing throughput on 1 and 2 workers, measured in alternating rounds.

    Both clusters stay up; each round times the same batch (``files * repeats``) on the
    1-worker and then the 2-worker cluster. On a shared machine the load changes from
    minute to minute, so the rounds are interleaved and both the median and the best round
    are reported.
    """
    from distributed import Client, LocalCluster, wait

    jobs = files * repeats
    clusters = {}
    try:
        for n in (1, 2):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, memory_limit="3GiB")
            client = Client(cluster)
            client.gather(client.map(_warm, range(4 * n), pure=False))
            # one untimed event list per worker: first-call costs (imports, caches) excluded
            wait(client.map(_events_job, *zip(*(files * 2)[:n]), pure=False))
            clusters[n] = (cluster, client)
        rates: dict[int, list[float]] = {1: [], 2: []}
        stage: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for n in (1, 2):
                client = clusters[n][1]
                t0 = time.perf_counter()
                futs = client.map(_events_job, [f[0] for f in jobs], [f[1] for f in jobs],
                                  pure=False)
                stage[n] += client.gather(futs)
                rates[n].append(len(jobs) / (time.perf_counter() - t0))
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    return {
        "obs_per_s_1_worker": statistics.median(rates[1]),
        "obs_per_s_2_workers": statistics.median(rates[2]),
        "speedup_2v1": statistics.median(rates[2]) / statistics.median(rates[1]),
        "speedup_2v1_best": max(rates[2]) / max(rates[1]),
        "speedup_2v1_rounds": [r2 / r1 for r1, r2 in zip(rates[1], rates[2])],
        "stage_s_per_obs_1_worker": statistics.median(stage[1]),
        "stage_s_per_obs_2_workers": statistics.median(stage[2]),
        "tasks_per_round": len(jobs),
        "rounds": rounds,
        "load_average_1min": os.getloadavg()[0],
    }


def _models(directory: Path, *, filters: int, blocks: int) -> list[str]:
    import torch

    from xsa_enhance.models import build_network
    from xsa_enhance.models.registry import save_weights

    paths = []
    for kind in ("sr", "dn"):
        torch.manual_seed(0)
        net = build_network(kind, filters=filters, blocks=blocks, growth=filters)
        path = directory / f"bench-{kind}-{filters}x{blocks}.pt"
        save_weights(net, path, name=f"bench-{kind}", kind=kind, config={}, card={})
        paths.append(str(path))
    return paths


def _inference_cost(paths: list[str], *, threads: int, repeats: int) -> dict[str, float]:
    """Seconds per enhanced 411x403 image, full-size networks, CPU with ``threads`` threads."""
    import numpy as np
    import torch

    from xsa_enhance.models import load_model
    from xsa_enhance.models.inference import enhance

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.2, (411, 403)).astype(np.int32)
    mask = np.ones((411, 403), bool)
    out = {}
    for path in paths:
        model = load_model(path)
        enhance(counts, 2e4, mask, model, clamp="constant")  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            enhance(counts, 2e4, mask, model, clamp="constant")
        out[model.kind] = (time.perf_counter() - t0) / repeats
    return out


def _pipeline_run(arch: Any, models: list[str], store: Path, executor: Any) -> tuple[float, Any]:
    from xsa_enhance.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig.from_dict({
        "kind": "pipeline", "name": "bench", "store": str(store),
        "archive": {"tap_url": arch.tap_url, "aio_url": arch.aio_url, "retries": 0},
        "enhance": {"models": models, "clamps": ["constant"], "slice_lengths_ks": [10, 20]},
    })
    t0 = time.perf_counter()
    summary = run_pipeline(cfg, executor=executor)
    return time.perf_counter() - t0, summary


def run(quick: bool = False) -> dict:
    """Run the benchmark and return its figures (see the module docstring)."""
    from xsa_enhance.pipeline import DaskExecutor, InProcessExecutor
    from xsa_enhance.standin import LocalArchive

    n_obs = 2 if quick else 4
    repeats = 4 if quick else 10  # >= 12 s rounds: Dask start-up per round must not dominate
    CACHE.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"n_observations": n_obs, "cpu_cores": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="xsa-bench-pipeline-"))
    try:
        with LocalArchive(CACHE / "archive", kinds=["normal"] * n_obs, seed=7) as arch:
            files = []
            for o in arch.observations:
                piev = next(str(p) for n, p in o.files.items() if "S003PIEVLI" in n)
                fbk = next((str(p) for n, p in o.files.items() if "S003FBKTSR" in n), None)
                files.append((piev, fbk))

            # --- 1 vs 2 workers on event processing, same event lists, side by side
            ev = _events_scaling(files, repeats=repeats, rounds=2 if quick else 4)
            out["events"] = ev
            out["scaling"] = {"1": ev["obs_per_s_1_worker"], "2": ev["obs_per_s_2_workers"]}

            # --- orchestration overhead: whole runs, in-process and on a 1-worker cluster
            # (small networks: the overhead is about the orchestration; the stage time is
            # then small, so the overhead fraction is an upper bound)
            models = _models(work, filters=8, blocks=1)
            overhead: dict[str, Any] = {}
            costs: dict[str, float] = {}
            for label in ("inprocess", "dask_1_worker"):
                store = work / f"{label}.zarr"
                if label == "inprocess":
                    with InProcessExecutor() as ex:
                        wall, summary = _pipeline_run(arch, models, store, ex)
                    startup = 0.0
                else:
                    t0 = time.perf_counter()
                    ex = DaskExecutor.local(n_workers=1, threads_per_worker=1, dashboard_address=None,
                                            memory_limit="4GiB")
                    startup = time.perf_counter() - t0
                    try:
                        wall, summary = _pipeline_run(arch, models, store, ex)
                    finally:
                        ex.close()
                st = summary.stage_seconds
                inside = st.get("total_s", 0.0)
                drv = summary.driver_seconds
                fixed = drv.get("setup_s", 0.0) + drv.get("finalize_s", 0.0)
                overhead[label] = {
                    "wall_s": wall,
                    "stage_s": inside,
                    "overhead_s_per_obs": (wall - inside) / n_obs,
                    "overhead_fraction": (wall - inside) / inside,
                    # once per run (selection queries, orphan scan, consolidation): amortised
                    # over a large run; the rest grows with the number of observations
                    "fixed_s": fixed,
                    "per_obs_overhead_s": (wall - inside - fixed) / n_obs,
                    "per_obs_overhead_fraction": (wall - inside - fixed) / inside,
                    "commit_s_per_obs": drv.get("commit_s", 0.0) / n_obs,
                    "cluster_startup_s": startup,
                }
                if label == "inprocess":
                    n_prod = max(1, summary.n_products)
                    costs = {
                        "harvest_s_per_obs": st.get("harvest_s", 0.0) / n_obs,
                        "events_s_per_obs": st.get("events_s", 0.0) / n_obs,
                        "write_s_per_obs": st.get("write_s", 0.0) / n_obs,
                        "slices_per_obs": summary.n_slices / n_obs,
                        "product_io_s_per_product": (st.get("product_read_s", 0.0) + st.get("product_write_s", 0.0)) / n_prod,
                        "products": summary.n_products,
                    }
            out["overhead"] = overhead
            # --- full-size (paper) networks: CPU seconds per enhanced image, 1 thread
            full = _inference_cost(_models(work, filters=32, blocks=4), threads=1,
                                   repeats=1 if quick else 2)
            costs["enhance_s_per_product_cpu_sr"] = full["sr"]
            costs["enhance_s_per_product_cpu_dn"] = full["dn"]
            costs["enhance_s_per_product_cpu"] = (full["sr"] + full["dn"]) / 2
            out["costs"] = costs
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # --- whole-archive projection from the measured costs
    io_s = costs["harvest_s_per_obs"] + costs["events_s_per_obs"] + costs["write_s_per_obs"]
    # products: SR and DN, constant clamp, on every 20 ks input (~ the archive's 24,000
    # slices are taken as the enhanced inputs; quantile clamping doubles it)
    n_products = 2 * ARCHIVE_SLICES
    per_product = costs["enhance_s_per_product_cpu"] + costs["product_io_s_per_product"]
    cpu_total = ARCHIVE_OBS * io_s + n_products * per_product
    gpu_s = float(os.environ.get("XSA_BENCH_GPU_S_PER_PRODUCT", "0.05"))
    proj: dict[str, Any] = {
        "io_cpu_s_per_obs": io_s,
        "enhance_cpu_s_per_product": costs["enhance_s_per_product_cpu"],
        "products": n_products,
        "cpu_core_hours": cpu_total / 3600.0,
        "gpu_s_per_product_assumed": gpu_s,
        "gpu_s_per_product_source": "measured" if "XSA_BENCH_GPU_S_PER_PRODUCT" in os.environ
        else "assumed (H100-class, fp32/bf16, 416x416 frame)",
    }
    for n in (2, 16, 64, 256):
        proj[f"hours_on_{n}_cpu_workers"] = cpu_total / n / 3600.0 / 0.9  # 10 % orchestration
    for n_cpu, n_gpu in ((16, 1), (64, 4)):
        t = max((ARCHIVE_OBS * io_s + n_products * costs["product_io_s_per_product"]) / n_cpu,
                n_products * gpu_s / n_gpu) / 0.9
        proj[f"hours_on_{n_cpu}_cpu_{n_gpu}_gpu"] = t / 3600.0
    out["projection"] = proj
    return out


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
