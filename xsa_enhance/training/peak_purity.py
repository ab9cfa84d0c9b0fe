"""Peak purity: are the most prominent peaks of an output real sources of the deep image?

The ``n_peaks`` most prominent local maxima of a method's output (:func:`find_peaks`) are
checked in an independent deep image (:func:`confirm_peaks`): a peak is *real* when the deep
counts in an ``r = 2`` px aperture exceed the local background from an annulus with a one-sided
Poisson tail probability (:func:`poisson_significance`) equivalent to >= 3 Gaussian sigma.
:func:`peak_purity` does both and returns a :class:`PeakCheck`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, stats

__all__ = [
    "PeakCheck",
    "find_peaks",
    "poisson_significance",
    "confirm_peaks",
    "peak_purity",
]


def _disk_offsets(r_in: float, r_out: float) -> tuple[np.ndarray, np.ndarray]:
    h = int(math.ceil(r_out))
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1]
    d = np.hypot(dy, dx)
    sel = (d >= r_in) & (d <= r_out)
    return dy[sel], dx[sel]


def _gather(img: np.ndarray, valid: np.ndarray, ys: np.ndarray, xs: np.ndarray,
            dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``(K, A)`` values of ``img`` at ``(ys + dy, xs + dx)``; NaN outside / invalid."""
    yy = ys[:, None] + dy[None, :]
    xx = xs[:, None] + dx[None, :]
    inside = (yy >= 0) & (yy < img.shape[0]) & (xx >= 0) & (xx < img.shape[1])
    yc, xc = np.clip(yy, 0, img.shape[0] - 1), np.clip(xx, 0, img.shape[1] - 1)
    ok = inside & valid[yc, xc]
    return np.where(ok, img[yc, xc], np.nan)


def find_peaks(rate: np.ndarray, mask: np.ndarray, *, factor: int = 1, n_peaks: int = 25,
               smooth_px: float = 1.0, min_separation_px: float = 3.0,
               annulus_px: tuple[float, float] = (5.0, 10.0)
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The most prominent local maxima of an image, in 1x pixel coordinates.

    The image (on the 1x or 2x grid) is smoothed with a mask-normalised Gaussian of
    ``smooth_px`` input pixels; local maxima are pixels equal to the maximum of a disk of
    radius ``min_separation_px`` input pixels around them, inside the mask, positive and
    above the mean of the surrounding box (no flat plateaus; ties within the separation are
    resolved greedily, most prominent first). The prominence is the smoothed peak value minus
    the median of the smoothed image over an annulus (``annulus_px`` input pixels, mask pixels
    only; at least half of it must lie in the mask); it is computed for the ``max(20 n_peaks,
    500)`` maxima with the largest excess over the mean of the annulus-sized box. All lengths
    scale with ``factor`` on the 2x grid; positions are mapped to the 1x grid with
    ``(i + 0.5) / factor - 0.5``.

    Parameters
    ----------
    rate : numpy.ndarray
        Output image (any linear unit).
    mask : numpy.ndarray
        Mask on the same grid as ``rate``.
    factor : int
        Grid factor of ``rate`` (1 or 2).
    n_peaks : int
        How many to return (fewer when the image has fewer maxima).
    smooth_px, min_separation_px : float
        In input (1x) pixels.
    annulus_px : tuple of float
        Inner and outer radius of the prominence annulus, input pixels.

    Returns
    -------
    y, x : numpy.ndarray
        1x coordinates (float), most prominent first.
    prominence : numpy.ndarray
        In the unit of ``rate``.
    """
    f = int(factor)
    m = np.asarray(mask) > 0
    img = np.where(m, np.asarray(rate, dtype=np.float64), 0.0)
    if smooth_px > 0:
        num = ndimage.gaussian_filter(img, smooth_px * f, mode="constant")
        den = ndimage.gaussian_filter(m.astype(np.float64), smooth_px * f, mode="constant")
        sm = np.where(m & (den > 1e-6), num / np.maximum(den, 1e-6), 0.0)
    else:
        sm = img
    r = min_separation_px * f
    h = int(math.ceil(r))
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    foot = np.hypot(yy, xx) <= r
    mx = ndimage.maximum_filter(np.where(m, sm, -np.inf), footprint=foot, mode="constant",
                                cval=-np.inf)
    # strict maxima only: a flat plateau (e.g. an empty, background-free SR region) is not a
    # peak, so the value must exceed the mean of its separation box
    box = ndimage.uniform_filter(sm, size=2 * h + 1, mode="constant")
    cand = m & (sm > 0) & (sm >= mx) & (sm > box * (1 + 1e-9))
    ys, xs = np.nonzero(cand)
    empty = np.zeros(0)
    if ys.size == 0:
        return empty, empty, empty
    # pre-rank by the excess over the mean of the annulus-sized box (cheap) and compute the
    # annulus median only for the best candidates
    n_keep = max(20 * n_peaks, 500)
    if ys.size > n_keep:
        wide = int(math.ceil(annulus_px[1] * f))
        level = ndimage.uniform_filter(sm, size=2 * wide + 1, mode="constant")
        pre = np.argsort(-(sm[ys, xs] - level[ys, xs]), kind="stable")[:n_keep]
        ys, xs = ys[pre], xs[pre]
    dy, dx = _disk_offsets(annulus_px[0] * f, annulus_px[1] * f)
    vals = _gather(sm, m, ys, xs, dy, dx)
    frac = np.mean(np.isfinite(vals), axis=1)
    keep = frac >= 0.5
    ys, xs, vals = ys[keep], xs[keep], vals[keep]
    if ys.size == 0:
        return empty, empty, empty
    prom = sm[ys, xs] - np.nanmedian(vals, axis=1)
    # greedy suppression of maxima closer than the separation (plateaus give ties)
    order = []
    for k in np.argsort(-prom, kind="stable"):
        if len(order) >= n_peaks:
            break
        if all((ys[k] - ys[j]) ** 2 + (xs[k] - xs[j]) ** 2 > r * r for j in order):
            order.append(int(k))
    order = np.asarray(order, dtype=np.int64)
    y1 = (ys[order] + 0.5) / f - 0.5
    x1 = (xs[order] + 0.5) / f - 0.5
    return y1, x1, prom[order]


@dataclass
class PeakCheck:
    """Peaks of a method's output checked in the deep image.

    Attributes
    ----------
    y, x : numpy.ndarray
        1x pixel coordinates of the peaks (most prominent first).
    prominence : numpy.ndarray
        Prominence in the output image.
    counts : numpy.ndarray
        Deep counts in the aperture.
    expected : numpy.ndarray
        Expected background counts in the aperture (annulus mean x aperture pixels).
    significance : numpy.ndarray
        Gaussian-equivalent sigma of the one-sided Poisson tail ``P(N >= counts | expected)``.
    real : numpy.ndarray of bool
        ``significance >= threshold``.
    """

    y: np.ndarray
    x: np.ndarray
    prominence: np.ndarray
    counts: np.ndarray
    expected: np.ndarray
    significance: np.ndarray
    real: np.ndarray

    @property
    def purity(self) -> float:
        """Fraction of the peaks that are real (NaN without peaks)."""
        return float(np.mean(self.real)) if self.real.size else math.nan

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the peak list."""
        return {"purity": self.purity, "n_peaks": int(self.real.size),
                "n_real": int(np.sum(self.real)),
                "peaks": [{"y": round(float(a), 2), "x": round(float(b), 2),
                           "prominence": float(p), "counts": int(c), "expected": round(float(e), 3),
                           "significance": round(float(s), 2), "real": bool(r)}
                          for a, b, p, c, e, s, r in zip(self.y, self.x, self.prominence,
                                                         self.counts, self.expected,
                                                         self.significance, self.real)]}


def poisson_significance(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent sigma of ``P(N >= counts)`` for ``N ~ Poisson(expected)``.

    Uses :func:`scipy.stats.poisson.sf` (``sf(counts - 1)``) and the normal inverse survival
    function; 0 counts gives 0 sigma (well, ``-inf`` clipped to -10), a zero expectation with
    counts gives +inf.
    """
    n = np.asarray(counts, dtype=np.float64)
    mu = np.asarray(expected, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = stats.poisson.logsf(n - 1, np.maximum(mu, 1e-300))
        sig = stats.norm.isf(np.exp(logp))
        # deep tails: exp(logp) underflows; use the asymptotic inverse of the log tail
        tiny = logp < -700
        if np.any(tiny):
            sig = np.where(tiny, np.sqrt(-2.0 * logp), sig)
    sig = np.where((mu <= 0) & (n > 0), np.inf, sig)
    return np.clip(sig, -10.0, np.inf)


def confirm_peaks(deep_counts: np.ndarray, mask: np.ndarray, y: np.ndarray, x: np.ndarray, *,
                  aperture_px: float = 2.0, annulus_px: tuple[float, float] = (5.0, 10.0),
                  threshold_sigma: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray]:
    """Aperture excess of the deep image at given 1x positions.

    Counts in the mask pixels whose centres lie within ``aperture_px`` of the position are
    compared with ``n_aperture x`` the mean counts of the mask pixels of an annulus around it
    (``annulus_px``); the excess is significant when the one-sided Poisson tail probability of
    the aperture counts given that expectation corresponds to at least ``threshold_sigma``.
    The annulus mean includes the wings of the source itself and any neighbour, so the test is
    conservative (it errs towards "not real").

    Parameters
    ----------
    deep_counts : numpy.ndarray
        Counts of the deep image (1x grid).
    mask : numpy.ndarray
        1x mask.
    y, x : numpy.ndarray
        Positions (1x pixel coordinates, may be fractional).
    aperture_px : float
        Aperture radius in 1x pixels.
    annulus_px : tuple of float
        Background annulus radii.
    threshold_sigma : float
        Significance required to call the excess real.

    Returns
    -------
    counts, expected, significance : numpy.ndarray
    real : numpy.ndarray of bool
    """
    c = np.asarray(deep_counts, dtype=np.float64)
    m = np.asarray(mask) > 0
    h = int(math.ceil(annulus_px[1])) + 1
    n = len(y)
    counts = np.zeros(n)
    expected = np.zeros(n)
    for i, (py, px) in enumerate(zip(np.asarray(y, float), np.asarray(x, float))):
        cy, cx = int(round(py)), int(round(px))
        y0, y1 = max(cy - h, 0), min(cy + h + 1, c.shape[0])
        x0, x1 = max(cx - h, 0), min(cx + h + 1, c.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(yy - py, xx - px)
        mm = m[y0:y1, x0:x1]
        sub = c[y0:y1, x0:x1]
        ap = mm & (d <= aperture_px)
        an = mm & (d >= annulus_px[0]) & (d <= annulus_px[1])
        counts[i] = sub[ap].sum()
        expected[i] = sub[an].mean() * ap.sum() if an.any() else math.nan
    sig = poisson_significance(counts, np.nan_to_num(expected, nan=0.0))
    sig = np.where(np.isfinite(expected), sig, np.nan)
    real = np.nan_to_num(sig, nan=-np.inf) >= threshold_sigma
    return counts, expected, sig, real


def peak_purity(output_rate: np.ndarray, deep_counts: np.ndarray, mask: np.ndarray, *,
                factor: int = 1, n_peaks: int = 25, threshold_sigma: float = 3.0,
                **peak_options: Any) -> PeakCheck:
    """Find the most prominent peaks of an output and check them in the deep image.

    Parameters
    ----------
    output_rate : numpy.ndarray
        The method's output on its grid (1x, or 2x for SR).
    deep_counts : numpy.ndarray
        Deep counts on the 1x grid.
    mask : numpy.ndarray
        1x mask (repeated onto the 2x grid for ``factor == 2``).
    factor : int
        Grid factor of ``output_rate``.
    n_peaks : int
        Number of peaks checked.
    threshold_sigma : float
        See :func:`confirm_peaks`.
    **peak_options
        Passed to :func:`find_peaks`.

    Returns
    -------
    PeakCheck
    """
    m1 = np.asarray(mask) > 0
    m_out = np.repeat(np.repeat(m1, factor, axis=0), factor, axis=1) if factor > 1 else m1
    y, x, prom = find_peaks(output_rate, m_out, factor=factor, n_peaks=n_peaks, **peak_options)
    counts, expected, sig, real = confirm_peaks(deep_counts, m1, y, x,
                                                threshold_sigma=threshold_sigma)
    return PeakCheck(y, x, prom, counts, expected, sig, real)
