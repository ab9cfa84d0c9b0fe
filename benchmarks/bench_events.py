"""Events stage benchmark: screening + binning throughput and end-to-end time from an FTZ file.

Measured side by side in one run, on one core (the stage is single-threaded numpy), as wall
time and as CPU time of the process (the latter is robust to other jobs sharing the machine):

- ``fused``: :func:`xsa_enhance.events.screen_and_bin` (the paper's screening expression, the
  0.5-2 keV band, the 403 x 411 DET grid) on in-memory columns, in M events/s;
- ``baseline``: the straightforward implementation -- an ``astropy.table.Table`` of the
  columns, boolean-mask selection, ``numpy.histogram2d`` on the grid edges; same events;
- their ratio, and whether the two images are identical;
- end to end from a gzipped PIEVLI-like file with all 14 PPS columns: decompression (ISA-L;
  the standard-library gzip module for comparison), FITS parsing and column extraction, flare
  GTIs (light curve from the events), screening (pixel indices), binning of every slice
  (50 ks -> full + 5x10 + 2x20 + 30 + 40 + 50 = 11 images), and the whole
  :func:`~xsa_enhance.events.process_event_list` call.

Usage: ``python -m benchmarks.bench_events [--quick]``.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _events(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic pn-like events: ~70 % singles, most FLAG 0, PI spread over 0.2-15 keV."""
    rng = np.random.default_rng(seed)
    return {
        "TIME": np.sort(rng.uniform(0.0, 50_000.0, n)),
        "RAWX": rng.integers(1, 65, n).astype(np.int16),
        "RAWY": rng.integers(1, 201, n).astype(np.int16),
        "DETX": rng.normal(-1500, 7000, n).clip(-20000, 16000).astype(np.int16),
        "DETY": rng.normal(-1000, 7000, n).clip(-19000, 17000).astype(np.int16),
        "X": rng.integers(10000, 40000, n).astype(np.int32),
        "Y": rng.integers(10000, 40000, n).astype(np.int32),
        "PHA": rng.integers(0, 4096, n).astype(np.int16),
        "PI": (rng.exponential(1800.0, n) + 150).clip(0, 20000).astype(np.int16),
        "FLAG": np.where(rng.random(n) < 0.85, 0, rng.choice([1, 4, 0x10000, 0x20000], n)).astype(np.int32),
        "PATTERN": np.where(rng.random(n) < 0.72, 0, rng.integers(1, 13, n)).astype(np.uint8),
        "PAT_ID": rng.integers(0, 100, n).astype(np.int16),
        "PAT_SEQ": rng.integers(0, 4, n).astype(np.uint8),
        "CCDNR": rng.integers(1, 13, n).astype(np.uint8),
    }


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _best_cpu(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time of this process (robust to other jobs on the machine)."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def _baseline(cols: dict[str, np.ndarray], grid) -> np.ndarray:
    """The straightforward implementation: astropy Table, mask, histogram2d."""
    from astropy.table import Table

    t = Table({k: cols[k] for k in ("DETX", "DETY", "PI", "PATTERN", "FLAG", "RAWY")}, copy=False)
    m = (
        (t["PI"] > 300)
        & (t["RAWY"] > 12)
        & (t["PATTERN"] <= 4)
        & ((t["FLAG"] == 0) | ((t["FLAG"] & 0x10000) != 0))
        & (t["PI"] >= 500)
        & (t["PI"] <= 2000)
    )
    sel = t[m]
    h, _, _ = np.histogram2d(
        np.asarray(sel["DETY"], float), np.asarray(sel["DETX"], float), bins=[grid.y_edges, grid.x_edges]
    )
    return h.astype(np.int32)


def run(quick: bool = False) -> dict:
    """Run the benchmark.

    Parameters
    ----------
    quick : bool
        Smaller inputs (about 10 s in all) for CI smoke runs.

    Returns
    -------
    dict
        Figures (see the module docstring).
    """
    from xsa_enhance.events import EventsConfig, parse_expression, process_event_list, screen_and_bin
    from xsa_enhance.events.expression import DEFAULT_EXPRESSION
    from xsa_enhance.events.testing import write_event_list
    from xsa_enhance.instrument.grid import GRID_1X

    n_mem = 2_000_000 if quick else 20_000_000
    n_file = 1_000_000 if quick else 5_000_000
    repeat = 2 if quick else 3
    expr = parse_expression(DEFAULT_EXPRESSION)

    cols = _events(n_mem)
    t_fused, c_fused, img_fused = _best_cpu(
        lambda: screen_and_bin(cols, expression=expr, band=(500, 2000), grid=GRID_1X), repeat
    )
    t_base, c_base, img_base = _best_cpu(lambda: _baseline(cols, GRID_1X), repeat)
    # binning alone (no screening) for reference
    from xsa_enhance.events import bin_events

    t_bin, c_bin, _ = _best_cpu(lambda: bin_events(cols["DETX"], cols["DETY"]), repeat)
    in_memory = {
        "events": n_mem,
        "fused_screen_bin_Mev_per_s": n_mem / t_fused / 1e6,
        "baseline_table_histogram2d_Mev_per_s": n_mem / t_base / 1e6,
        "speedup_vs_baseline": t_base / t_fused,
        "fused_screen_bin_Mev_per_cpu_s": n_mem / c_fused / 1e6,
        "baseline_Mev_per_cpu_s": n_mem / c_base / 1e6,
        "speedup_vs_baseline_cpu": c_base / c_fused,
        "bin_only_Mev_per_s": n_mem / t_bin / 1e6,
        "bin_only_Mev_per_cpu_s": n_mem / c_bin / 1e6,
        "images_identical": bool(np.array_equal(img_fused, img_base)),
        "selected_fraction": float(img_fused.sum()) / n_mem,
    }
    del cols

    # ---------------------------------------------------------------- end to end from FTZ
    ev = _events(n_file, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "P0000000001PNS003PIEVLI0000.FTZ"
        write_event_list(path, ev, ccd_gtis=[[0.0, 50_000.0]])
        del ev
        size_mb = path.stat().st_size / 1e6
        # the standard-library gzip module, for comparison with the reader's ISA-L path
        t_gzip, _ = _best(lambda: gzip.decompress(path.read_bytes()), 1)
        cfg = EventsConfig()  # every 10 ks multiple: 50 ks -> 5+2+1+1+1 slices + full image
        best_total, timings, n_images = float("inf"), {}, 0
        for _ in range(repeat):
            tm: dict[str, float] = {}
            t0 = time.perf_counter()
            obs = process_event_list(path, None, config=cfg, timings=tm)
            total = time.perf_counter() - t0
            if total < best_total:
                best_total, timings, n_images = total, tm, len(obs.slices)
    end_to_end = {
        "events": n_file,
        "file_MB": size_mb,
        "decompress_s": timings.get("decompress_s", float("nan")),
        "decompress_stdlib_gzip_s": t_gzip,
        "fits_parse_columns_s": timings.get("parse_s", float("nan")),
        "read_total_s": timings.get("read_s", float("nan")),
        "flares_s": timings.get("flares_s", float("nan")),
        "screen_s": timings.get("screen_s", float("nan")),
        "bin_slices_s": timings.get("bin_s", float("nan")),
        "total_s": best_total,
        "images": n_images,
        "Mev_per_s_total": n_file / best_total / 1e6,
    }
    return {
        "in_memory": in_memory,
        "end_to_end_ftz": end_to_end,
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":  # pragma: no cover - manual use
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
