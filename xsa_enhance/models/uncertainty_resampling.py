"""Resampling of a counts image for the uncertainty estimate of an enhanced image.

:func:`resample_counts` draws independent resamplings of a counts image by one of
:data:`METHODS` (described in :mod:`xsa_enhance.models.uncertainty`); :func:`resolve_method`
turns ``"auto"`` into the default method of a model's kind (:data:`DEFAULT_METHOD`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "METHODS",
    "DEFAULT_METHOD",
    "resample_counts",
    "resolve_method",
]

#: Resampling methods of :func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`.
METHODS: tuple[str, ...] = ("poisson-bootstrap", "poisson-counts", "thinning", "poisson-model")
#: Default method per model kind, chosen by measurement (docs/uncertainty.md).
DEFAULT_METHOD: dict[str, str] = {"dn": "poisson-model", "sr": "poisson-bootstrap"}


def _smooth(counts: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Mask-normalised Gaussian smoothing (no bleeding across chip gaps / the mask edge)."""
    if sigma_px <= 0:
        return counts * (mask > 0)
    m = (mask > 0).astype(np.float64)
    num = ndimage.gaussian_filter(counts * m, sigma_px, mode="constant")
    den = ndimage.gaussian_filter(m, sigma_px, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-6, num / np.maximum(den, 1e-12), 0.0)
    return out * m


def resample_counts(
    counts: np.ndarray,
    mask: np.ndarray,
    *,
    method: str,
    n_samples: int,
    rng: np.random.Generator,
    smooth_px: float = 1.0,
    expected: np.ndarray | None = None,
) -> tuple[list[np.ndarray], float]:
    """Independent resamplings of a counts image.

    Parameters
    ----------
    counts, mask : numpy.ndarray
        Input counts and detector mask (1x grid).
    method : str
        One of :data:`METHODS`.
    n_samples : int
        Number of resamples.
    rng : numpy.random.Generator
    smooth_px : float
        Gaussian sigma (input pixels) of the rate estimate of ``poisson-bootstrap``.
    expected : numpy.ndarray, optional
        The expected counts to draw around for ``poisson-model`` (required there).

    Returns
    -------
    samples : list of numpy.ndarray
        float64 counts images.
    exposure_factor : float
        Exposure of the resamples over that of the input (0.5 for thinning, else 1).
    """
    c = np.clip(np.asarray(counts, dtype=np.float64), 0, None) * (mask > 0)
    if method == "poisson-bootstrap":
        lam = _smooth(c, mask, smooth_px)
        return [rng.poisson(lam).astype(np.float64) for _ in range(n_samples)], 1.0
    if method == "poisson-model":
        if expected is None:
            raise ValueError("method 'poisson-model' needs the expected counts")
        lam = np.clip(np.asarray(expected, dtype=np.float64), 0, None) * (mask > 0)
        return [rng.poisson(lam).astype(np.float64) for _ in range(n_samples)], 1.0
    if method == "poisson-counts":
        return [rng.poisson(c).astype(np.float64) for _ in range(n_samples)], 1.0
    if method == "thinning":
        ci = np.round(c).astype(np.int64)
        return [rng.binomial(ci, 0.5).astype(np.float64) for _ in range(n_samples)], 0.5
    raise ValueError(f"unknown uncertainty method {method!r}; expected one of {METHODS}")


def resolve_method(method: str, model: Any) -> str:
    """``"auto"`` -> :data:`DEFAULT_METHOD` of the model's kind; other names are checked."""
    if method == "auto":
        return DEFAULT_METHOD.get(str(model.kind), "poisson-bootstrap")
    if method not in METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; expected 'auto' or one of "
                         f"{METHODS}")
    return method
