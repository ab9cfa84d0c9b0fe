"""Benchmark of the models stage: CPU seconds per full frame, engine overhead, peak RSS.

Side by side in one run, at the paper size (32 filters, 4 RRDBs, 403 x 411 frames padded to
416 x 416), with freshly initialised weights (speed does not depend on the weight values):

* bare forward pass of the network on the engine's normalised, padded frame;
* the full engine (:func:`xsa_enhance.models.inference.enhance`: normalise, pad, forward,
  denormalise, restore, mask) on the same frame; the overhead is ``engine / bare - 1``;
  repeats are interleaved and the median is reported;
* peak resident memory of a fresh subprocess enhancing one frame, untiled and tiled (tile
  128 + receptive-radius overlap): ``VmHWM`` of the child, with ``resource.getrusage`` alongside
  (on Linux ``ru_maxrss`` can inherit the parent's high-water mark across fork + exec, so it is
  an upper bound; these runs are made first, while the parent is still small);
* on a CUDA GPU, when present: frames per second in fp32 and bf16 autocast, and the speed-up.

Run: ``python -m benchmarks.run --only models`` or ``python benchmarks/bench_models.py``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

_RSS_SCRIPT = r"""
import json, resource, sys, time
import numpy as np, torch
from xsa_enhance.models.networks import build_network
from xsa_enhance.models.registry import load_model, save_weights
from xsa_enhance.models.inference import enhance
kind, tile, path = sys.argv[1], sys.argv[2], sys.argv[3]
tile = None if tile == "none" else int(tile)
torch.manual_seed(0)
save_weights(build_network(kind), path, name="bench", kind=kind, config={}, card={})
model = load_model(path)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
counts = rng.poisson(0.5, (411, 403)).astype(float)
t = time.perf_counter()
out = enhance(counts, 20000.0, None, model, tile=tile, batch_size=1)
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hwm = None
try:  # VmHWM belongs to this process's own address space (ru_maxrss can inherit the
    # parent's high-water mark across fork + exec on Linux)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
except OSError:
    pass
print(json.dumps({"ru_maxrss_mb": peak / 1024, "vmhwm_mb": hwm, "ru_maxrss_before_mb":
                  before / 1024, "seconds": dt}))
"""


class _NullNet(torch.nn.Module):
    """Costs (almost) nothing but has the network's output shape: isolates the engine's own
    work (normalise, pad, batch, crop, denormalise, restore, mask) from the forward pass."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x[:, :1]
        if self.factor > 1:
            y = y.repeat_interleave(self.factor, 2).repeat_interleave(self.factor, 3)
        return y


def _frame() -> tuple[np.ndarray, np.ndarray]:
    from xsa_enhance.instrument.grid import GRID_1X

    rng = np.random.default_rng(0)
    counts = rng.poisson(0.5, GRID_1X.shape).astype(float)
    counts[200, 200] += 800  # a bright source, so the restoration has work to do
    try:
        from xsa_enhance.instrument.mask import detector_mask

        mask = detector_mask(GRID_1X).astype(float)
    except ImportError:  # pragma: no cover
        mask = np.ones(GRID_1X.shape)
    return counts * mask, mask


def _peak_rss(kind: str, tile: int | None, tmp: Path) -> dict[str, float]:
    """Peak RSS of a fresh interpreter enhancing one frame (started before the big runs)."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, kind, "none" if tile is None else str(tile),
         str(tmp / f"rss-{kind}.pt")],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_figures(kind: str, repeats: int, tmp: Path, *, tiled: bool) -> dict[str, Any]:
    from xsa_enhance.models.inference import enhance, pad_frame
    from xsa_enhance.models.normalise import normalise
    from xsa_enhance.models.networks import build_network
    from xsa_enhance.models.registry import load_model, save_weights

    torch.manual_seed(0)
    path = tmp / f"{kind}.pt"
    save_weights(build_network(kind), path, name=f"bench-{kind}", kind=kind, config={}, card={})
    model = load_model(path)
    counts, mask = _frame()
    # the bare pass gets exactly the engine's input: the normalised, padded frame
    x_np, _ = normalise(counts / 20_000.0 * mask, "constant", "sqrt")
    x = torch.from_numpy(pad_frame(x_np[None, None], (416, 416))[0].astype(np.float32))
    bare, eng = [], []
    enhance(counts, 20_000.0, mask, model)  # warm-up
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        t = time.perf_counter()
        with torch.inference_mode():
            model.network(x)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        enhance(counts, 20_000.0, mask, model)
        eng.append(time.perf_counter() - t)
    b, e = statistics.median(bare), statistics.median(eng)
    # the engine's own cost, measured directly (robust to load from other processes)
    null = dataclasses.replace(model, network=_NullNet(model.factor))
    own = []
    for _ in range(5):
        t = time.perf_counter()
        enhance(counts, 20_000.0, mask, null)
        own.append(time.perf_counter() - t)
    figures: dict[str, Any] = {
        "engine_own_s": min(own),
        "engine_overhead_direct_pct": 100.0 * min(own) / min(bare),
        "engine_overhead_min_pct": 100.0 * (min(eng) / min(bare) - 1.0),
    }
    if tiled:
        t = time.perf_counter()
        enhance(counts, 20_000.0, mask, model, tile=208, batch_size=4)
        figures["engine_tiled208_s_per_frame"] = time.perf_counter() - t
    return {
        "bare_forward_s": b,
        "engine_s_per_frame": e,
        "engine_overhead_pct": 100.0 * (e / b - 1.0),
        "bare_forward_all_s": bare,
        "engine_all_s": eng,
        **figures,
        "parameters": sum(p.numel() for p in model.network.parameters()),
    }


def _gpu_figures(repeats: int, tmp: Path) -> dict[str, Any]:
    from xsa_enhance.models.inference import enhance_batch
    from xsa_enhance.models.networks import build_network
    from xsa_enhance.models.registry import load_model, save_weights

    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    counts, mask = _frame()
    n = 16
    for kind in ("sr", "dn"):
        path = tmp / f"gpu-{kind}.pt"
        torch.manual_seed(0)
        save_weights(build_network(kind), path, name="g", kind=kind, config={}, card={})
        model = load_model(path, device="cuda")
        for prec in ("fp32", "bf16"):
            enhance_batch([counts] * 2, [2e4] * 2, [mask] * 2, model, precision=prec,
                          batch_size=8)
            torch.cuda.synchronize()
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                enhance_batch([counts] * n, [2e4] * n, [mask] * n, model, precision=prec,
                              batch_size=8)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            out[f"{kind}_{prec}_frames_per_s"] = n / statistics.median(times)
        out[f"{kind}_bf16_speedup"] = out[f"{kind}_bf16_frames_per_s"] / out[
            f"{kind}_fp32_frames_per_s"]
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the figures described in the module docstring.

    Parameters
    ----------
    quick : bool
        Fewer repeats (and the SR peak-RSS runs only).

    Returns
    -------
    dict
        ``cpu_sr`` / ``cpu_dn`` (bare and engine seconds per frame, overhead %, tiled time),
        ``rss`` (peak RSS in MB, untiled and tiled), ``gpu`` (when CUDA is available),
        ``torch_threads``.
    """
    repeats = 2 if quick else 5
    result: dict[str, Any] = {"torch_threads": torch.get_num_threads(),
                              "network": "32 filters, 4 RRDBs, growth 32; frame 416x416"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rss: dict[str, Any] = {}
        for kind in (("sr",) if quick else ("sr", "dn")):
            for tile in (None, 128):
                r = _peak_rss(kind, tile, tmp)
                label = "untiled" if tile is None else f"tile{tile}"
                rss[f"{kind}_{label}_peak_mb"] = r["vmhwm_mb"] or r["ru_maxrss_mb"]
                rss[f"{kind}_{label}_ru_maxrss_mb"] = r["ru_maxrss_mb"]
                rss[f"{kind}_{label}_s"] = r["seconds"]
        rss["after_model_load_mb"] = r["ru_maxrss_before_mb"]
        result["rss"] = rss
        for kind in ("sr", "dn"):
            result[f"cpu_{kind}"] = _cpu_figures(kind, repeats, tmp, tiled=not quick)
        if torch.cuda.is_available():
            result["gpu"] = _gpu_figures(3 if quick else 5, tmp)
    return result


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=ap.parse_args().quick), indent=2))
