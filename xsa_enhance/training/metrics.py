"""Image-quality metrics on the linear scale, as the reference work computed them (piq).

Images are normalised linear rates in ``[0, 1]`` (rate clamped at the model's clamp value and
divided by it, no stretch). For super-resolution the 1x input is compared with the 2x target
after nearest-neighbour upsampling (:func:`upsample_nearest`); the values of a 1x pixel then
carry over unchanged because the 2x clamp is a quarter of the 1x clamp.

SSIM and MS-SSIM use the paper's window 13, sigma 2.5, K1 0.01, K2 0.05 and MS weights; piq's
automatic average-pool downsampling of large images is switched off so every pixel counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xsa_enhance.training.losses import (
    MS_SSIM_MIN_SIDE,
    MS_SSIM_WEIGHTS,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
)

__all__ = [
    "METRICS",
    "HIGHER_IS_BETTER",
    "compute_metrics",
    "region_metrics",
    "upsample_nearest",
]

logger = logging.getLogger(__name__)

#: Metric names in report order.
METRICS: tuple[str, ...] = ("l1", "psnr", "poisson", "ssim", "ms_ssim", "fsim", "haarpsi")
#: Metrics where a larger value is better (the others: smaller is better).
HIGHER_IS_BETTER: frozenset[str] = frozenset({"psnr", "ssim", "ms_ssim", "fsim", "haarpsi"})


def _as_tensor(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(img, dtype=np.float32) if not torch.is_tensor(img) else img)
    t = t.to(torch.float32)
    while t.ndim < 4:
        t = t.unsqueeze(0)
    return t.clamp(0.0, 1.0)


def upsample_nearest(img: np.ndarray, factor: int = 2) -> np.ndarray:
    """Nearest-neighbour upsampling of a 2-D image by an integer factor."""
    return np.repeat(np.repeat(np.asarray(img), factor, axis=-2), factor, axis=-1)


def compute_metrics(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    *,
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Metrics of one prediction against its target (both normalised linear, same shape).

    Parameters
    ----------
    pred, target : array_like
        2-D images (or ``(N, 1, H, W)`` batches, averaged) with values in ``[0, 1]``;
        values outside are clipped, as piq requires.
    metrics : sequence of str
        Subset of :data:`METRICS`.

    Returns
    -------
    dict of str to float
        ``l1`` (mean absolute error), ``psnr`` (dB, data range 1), ``poisson`` (Poisson NLL
        with the prediction as rate), ``ssim``, ``ms_ssim``, ``fsim`` (grey-scale FSIM),
        ``haarpsi``. MS-SSIM is NaN for images smaller than 193 pixels.
    """
    import piq

    x = _as_tensor(pred)
    y = _as_tensor(target)
    if x.shape != y.shape:
        raise ValueError(f"prediction shape {tuple(x.shape)} differs from target {tuple(y.shape)}")
    out: dict[str, float] = {}
    with torch.no_grad():
        for name in metrics:
            if name == "l1":
                val = F.l1_loss(x, y)
            elif name == "psnr":
                val = piq.psnr(x, y, data_range=1.0)
            elif name == "poisson":
                val = F.poisson_nll_loss(x, y, log_input=False, full=False, eps=1e-8)
            elif name == "ssim":
                val = piq.ssim(
                    x, y, kernel_size=SSIM_WINDOW, kernel_sigma=SSIM_SIGMA, data_range=1.0,
                    k1=SSIM_K1, k2=SSIM_K2, downsample=False,
                )
            elif name == "ms_ssim":
                if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
                    out[name] = float("nan")
                    continue
                val = piq.multi_scale_ssim(
                    x, y, kernel_size=SSIM_WINDOW, kernel_sigma=SSIM_SIGMA, data_range=1.0,
                    scale_weights=torch.tensor(MS_SSIM_WEIGHTS), k1=SSIM_K1, k2=SSIM_K2,
                )
            elif name == "fsim":
                val = piq.fsim(x, y, data_range=1.0, chromatic=False)
            elif name == "haarpsi":
                val = piq.haarpsi(x, y, data_range=1.0)
            else:
                raise ValueError(f"unknown metric {name!r}; choose from {METRICS}")
            out[name] = float(val)
    return out


def region_metrics(
    pred: np.ndarray, target: np.ndarray, regions: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Pixel-wise metrics restricted to region masks.

    Parameters
    ----------
    pred, target : numpy.ndarray
        2-D normalised linear images of the same shape.
    regions : dict of str to numpy.ndarray
        Boolean masks of the same shape (e.g. ``background``, ``faint_extended``,
        ``point_sources``).

    Returns
    -------
    dict
        Per region: ``n_pixels``, ``l1``, ``psnr`` (from the region's mean squared error,
        data range 1), ``poisson`` and ``bias`` (mean of pred - target).
    """
    p = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
    t = np.clip(np.asarray(target, dtype=np.float64), 0.0, 1.0)
    out: dict[str, dict[str, float]] = {}
    for name, mask in regions.items():
        m = np.asarray(mask, dtype=bool)
        n = int(m.sum())
        if n == 0:
            out[name] = {"n_pixels": 0, "l1": float("nan"), "psnr": float("nan"),
                         "poisson": float("nan"), "bias": float("nan")}
            continue
        d = p[m] - t[m]
        mse = float(np.mean(d**2))
        out[name] = {
            "n_pixels": n,
            "l1": float(np.mean(np.abs(d))),
            "psnr": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
            "poisson": float(np.mean(p[m] - t[m] * np.log(p[m] + 1e-8))),
            "bias": float(np.mean(d)),
        }
    return out
