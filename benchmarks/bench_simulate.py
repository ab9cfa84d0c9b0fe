"""Simulator throughput: event-level observations and training pairs, on one core.

* ``obs_*``: one 40 ks full-frame observation with flares, AGN and a cluster (~1 M events),
  written as gzipped PPS files; total wall time and events/s (caches warmed by a 1 ks run
  first, as in a batch of observations). The issue's target: < 5 s.
* ``pairs_*``: SR and DN training sets written to Zarr. A "pair" is one component sample
  (input + target images); a training field is the sum of one pair of each of the three
  components. Throughput with and without the Zarr writes. The issue's target: >= 20 pairs/s.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from xsa_enhance.instrument.background import Flare
from xsa_enhance.simulate.images import COMPONENTS, config_for_kind, simulate_component
from xsa_enhance.simulate.observation import SourceMix, simulate_observation
from xsa_enhance.simulate.training import write_training_set


def _observation(tmp: Path) -> dict:
    simulate_observation(tmp / "warm", obsid="0000000000", exposure_ks=1, seed=0)
    date = "2015-06-01T00:00:00"
    t0 = (57174 - 50814) * 86400 + 68.184  # TSTART of that date (TT)
    flares = (Flare(t0 + 12000, 800, 3.0), Flare(t0 + 30000, 1500, 1.0))
    mix = SourceMix(extended="cluster", absorption=3.0)
    start, cpu0 = time.perf_counter(), time.process_time()
    obs = simulate_observation(tmp / "obs", obsid="0000000001", exposure_ks=40, seed=1,
                               date_obs=date, sources=mix, flare_list=flares)
    dt = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    size = obs.pievli.stat().st_size / 1e6
    return {
        "obs_exposure_ks": 40.0,
        "obs_events": obs.n_events,
        "obs_seconds": round(dt, 3),
        "obs_cpu_seconds": round(cpu, 3),
        "obs_events_per_s": round(obs.n_events / dt),
        "obs_events_per_cpu_s": round(obs.n_events / cpu),
        "obs_pievli_mb": round(size, 1),
        "obs_target_seconds": 5.0,
    }


def _pairs(tmp: Path, kind: str, n: int) -> dict:
    cfg = config_for_kind(kind)
    for comp in COMPONENTS:  # warm the kernel and mask caches
        simulate_component(comp, np.random.default_rng(0), cfg)
    start, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n):
        for ci, comp in enumerate(COMPONENTS):
            simulate_component(comp, np.random.default_rng(np.random.SeedSequence([1, ci, i])),
                               cfg)
    sim = time.perf_counter() - start
    sim_cpu = time.process_time() - cpu0
    start, cpu0 = time.perf_counter(), time.process_time()
    write_training_set(tmp / f"{kind}.zarr", kind=kind, n=n, seed=1)
    full = time.perf_counter() - start
    full_cpu = time.process_time() - cpu0
    pairs = 3 * n
    return {
        f"pairs_{kind}_n": pairs,
        f"pairs_{kind}_per_cpu_s_simulate": round(pairs / sim_cpu, 2),
        f"pairs_{kind}_per_cpu_s_with_zarr": round(pairs / full_cpu, 2),
        f"pairs_{kind}_per_s_simulate": round(pairs / sim, 2),
        f"pairs_{kind}_per_s_with_zarr": round(pairs / full, 2),
        f"fields_{kind}_per_s_with_zarr": round(n / full, 2),
        f"pairs_{kind}_zarr_overhead": round(full / sim, 3),
    }


def run(quick: bool = False) -> dict:
    """Measure the simulator; ``quick`` uses fewer training samples."""
    n = 4 if quick else 20
    out: dict = {"cpu_count": os.cpu_count(), "pairs_target_per_s": 20.0}
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        tmp = Path(tmp)
        out.update(_observation(tmp))
        for kind in ("sr", "dn"):
            out.update(_pairs(tmp, kind, n))
    return out


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
