"""Figures of a training run: the loss curve (``loss_curve.png``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["plot_loss_curve"]


def plot_loss_curve(metrics_log: str | os.PathLike[str], png: str | os.PathLike[str]) -> Path:
    """Plot training and validation loss against step from a ``metrics.jsonl`` file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr_s, tr_l, va_s, va_l = [], [], [], []
    for line in Path(metrics_log).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("type") == "train":
            tr_s.append(rec["step"])
            tr_l.append(rec["loss"])
        elif rec.get("type") == "val":
            va_s.append(rec["step"])
            va_l.append(rec["val_loss"])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if tr_s:
        ax.plot(tr_s, tr_l, lw=0.8, alpha=0.7, label="train (running mean)")
    if va_s:
        ax.plot(va_s, va_l, "o-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out)
    plt.close(fig)
    return out
