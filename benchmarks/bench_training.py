"""Training-stage costs, side by side in one run (CPU, one torch thread).

Figures: seconds per optimiser step of the ``small`` and ``paper`` presets (SR and DN), the
ratio paper/small, seconds to draw one sample from the Zarr store, and seconds per full frame
for the metrics and each classical baseline.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _step_time(kind: str, preset: str, store: str, steps: int) -> float:
    from xsa_enhance.training.data import PairSource, open_pairs
    from xsa_enhance.training.losses import loss_from_config
    from xsa_enhance.training.train import _build, load_config

    cfg = load_config(preset=preset, overrides={"kind": kind, "train_set": store})
    src = PairSource(open_pairs(store), "train", crop=cfg.crop)
    net = _build(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    loss_fn = loss_from_config(cfg.loss)
    it = src.iterate(cfg.seed, batch_size=cfg.batch_size)
    x, y = next(it)
    loss_fn(net(x), y).backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def run(quick: bool = False) -> dict:
    """Measure the training stage's costs; returns a flat dict of figures."""
    from xsa_enhance.simulate.training import write_training_set
    from xsa_enhance.training.baselines import run_baselines
    from xsa_enhance.training.data import PairSource, open_pairs
    from xsa_enhance.training.metrics import compute_metrics

    torch.set_num_threads(1)
    out: dict = {"torch_threads": 1}
    steps = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for kind in ("sr", "dn"):
            stores[kind] = str(Path(tmp) / f"{kind}.zarr")
            t0 = time.perf_counter()
            write_training_set(stores[kind], kind=kind, n=10, seed=3)
            out[f"{kind}_training_set_10_pairs_s"] = round(time.perf_counter() - t0, 3)
        for kind in ("sr", "dn"):
            small = _step_time(kind, "small", stores[kind], steps)
            paper = _step_time(kind, "paper", stores[kind], 1 if quick else 2)
            out[f"{kind}_small_step_s"] = round(small, 4)
            out[f"{kind}_paper_step_s"] = round(paper, 4)
            out[f"{kind}_paper_over_small_step"] = round(paper / small, 2)
        src = PairSource(open_pairs(stores["sr"]), "train", crop=64)
        rng = np.random.default_rng(0)
        n = 5 if quick else 20
        t0 = time.perf_counter()
        for _ in range(n):
            src.sample(rng)
        out["sr_sample_64px_s"] = round((time.perf_counter() - t0) / n, 4)
        full = PairSource(open_pairs(stores["sr"]), "test", crop=None)
        combo, pos = full.draw(rng)
        counts, tgt, mask = full.counts(combo, pos)
        lin_t = np.clip(tgt / full.out_exp / 0.0005584, 0, 1)
        t0 = time.perf_counter()
        compute_metrics(lin_t * 0.9, lin_t)
        out["sr_metrics_full_frame_s"] = round(time.perf_counter() - t0, 3)
        for name in ("gaussian", "wavelet", "richardson_lucy"):
            t0 = time.perf_counter()
            run_baselines(counts, full.in_exp, mask.astype(float), factor=2, names=(name,))
            out[f"sr_baseline_{name}_full_frame_s"] = round(time.perf_counter() - t0, 3)
    return out


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=1))
