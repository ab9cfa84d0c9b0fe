"""Image figures of the real-data evaluation: PSNR / MS-SSIM / L1 and the flux ratio.

Every figure compares *rates* (counts/s/pixel) on the 1x grid. The image metrics use the common
linear scale ``rate / INPUT_CLAMP`` clipped to ``[0, 1]`` (:func:`linear_scale`) and its square
root; super-resolution outputs are brought to the 1x grid with :func:`rebin2`.
"""

from __future__ import annotations

import math

import numpy as np

from xsa_enhance.models.normalise import INPUT_CLAMP

__all__ = [
    "linear_scale",
    "image_metrics",
    "flux_ratio",
    "rebin2",
]


def linear_scale(rate: np.ndarray) -> np.ndarray:
    """The common scale of the image metrics: ``rate / INPUT_CLAMP`` clipped to ``[0, 1]``."""
    return np.clip(np.asarray(rate, dtype=np.float64) / INPUT_CLAMP, 0.0, 1.0)


def image_metrics(rate: np.ndarray, reference_rate: np.ndarray) -> dict[str, float]:
    """PSNR, MS-SSIM and L1 of a 1x rate image against a reference, linear and sqrt scales.

    Parameters
    ----------
    rate, reference_rate : numpy.ndarray
        Rates (counts/s/pixel) on the same grid.

    Returns
    -------
    dict
        ``psnr``, ``ms_ssim``, ``l1`` on :func:`linear_scale`; ``psnr_sqrt``, ``ms_ssim_sqrt``
        on its square root.
    """
    from xsa_enhance.training.metrics import compute_metrics

    a, b = linear_scale(rate), linear_scale(reference_rate)
    out = compute_metrics(a, b, metrics=("l1", "psnr", "ms_ssim"))
    sq = compute_metrics(np.sqrt(a), np.sqrt(b), metrics=("psnr", "ms_ssim"))
    out["psnr_sqrt"] = sq["psnr"]
    out["ms_ssim_sqrt"] = sq["ms_ssim"]
    return out


def flux_ratio(rate: np.ndarray, reference_rate: np.ndarray, mask: np.ndarray, *,
               background: float = 0.0, reference_background: float = 0.0) -> float:
    """Total rate inside the mask of an image over that of a reference.

    Parameters
    ----------
    rate, reference_rate : numpy.ndarray
        Rates on the same grid.
    mask : numpy.ndarray
        Pixels to sum.
    background, reference_background : float
        Per-pixel background rates subtracted from each total (0: totals include background).

    Returns
    -------
    float
        NaN when the reference total is not positive.
    """
    m = np.asarray(mask) > 0
    n = int(m.sum())
    num = float(np.asarray(rate, dtype=np.float64)[m].sum()) - background * n
    den = float(np.asarray(reference_rate, dtype=np.float64)[m].sum()) - reference_background * n
    return num / den if den > 0 else math.nan


def rebin2(img: np.ndarray) -> np.ndarray:
    """Sum 2 x 2 blocks (2x grid rates -> 1x grid rates)."""
    a = np.asarray(img, dtype=np.float64)
    ny, nx = a.shape[0] // 2, a.shape[1] // 2
    return a[: 2 * ny, : 2 * nx].reshape(ny, 2, nx, 2).sum(axis=(1, 3))
