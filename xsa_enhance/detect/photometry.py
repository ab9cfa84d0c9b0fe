"""Poisson aperture photometry and detection significance on X-ray counts images.

The X-ray specific part of source detection, written by hand; the geometry (which pixels lie
in an aperture or annulus) is photutils' (:func:`photutils.aperture.aperture_photometry`
with ``method="center"``, so every sum is a sum of whole-pixel integer counts).

For a source at ``(x, y)`` (0-based pixel coordinates):

* ``N``: counts of the mask pixels whose centres lie within ``aperture_px`` of the position;
* ``b``: background counts per pixel, the *mean* of the mask pixels of an annulus
  (``annulus_px``) around it. A plain mean, not a sigma-clipped one: at 20 ks most pixels
  hold 0 or 1 count, and clipping at a few sigma would throw every 1 away. The annulus
  includes the wings of the source and any neighbour, so ``b`` errs high (conservative);
* ``B = b * A``, ``A`` the number of mask pixels in the aperture: expected background counts;
* ``SIGNIF``: the one-sided Poisson tail probability ``P(n >= N | n ~ Poisson(B))``
  (:func:`scipy.stats.poisson.logsf`), converted to the Gaussian-equivalent sigma with
  :func:`scipy.stats.norm.isf` (``sqrt(-2 ln p)`` asymptotically where ``p`` underflows).
  The background is taken as known (the annulus has >10x the aperture's area);
* ``RATE = (N - B) / (T * EEF)`` counts/s, ``EEF`` the fraction of the PSF
  (:data:`xsa_enhance.instrument.psf.PSF_HANDBOOK`, on-axis 1 keV) inside the aperture, and
  ``RATE_ERR = sqrt(N + B * A / A_annulus) / (T * EEF)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from xsa_enhance.instrument.psf import PSF_HANDBOOK, KingPSF

__all__ = ["ApertureResult", "aperture_counts", "encircled_fraction", "poisson_significance",
           "poisson_photometry"]

logger = logging.getLogger(__name__)


def poisson_significance(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent sigma of ``P(n >= counts)`` for ``n ~ Poisson(expected)``.

    Parameters
    ----------
    counts : array
        Observed counts (integers, as floats).
    expected : array
        Expected background counts.

    Returns
    -------
    numpy.ndarray
        ``norm.isf(P)``; ``counts == 0`` gives ``-inf`` clipped to -10, ``expected <= 0``
        with ``counts > 0`` gives ``+inf``.
    """
    n = np.asarray(counts, dtype=np.float64)
    mu = np.asarray(expected, dtype=np.float64)
    mu_safe = np.maximum(mu, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logp = stats.poisson.logsf(n - 1, mu_safe)
        # far tail (scipy underflows to -inf): P(X >= n) ~ pmf(n) / (1 - mu / (n + 1))
        far = ~np.isfinite(logp) & (n > mu_safe)
        # (the pmf through gammaln, so that non-integer model "counts" work too)
        logpmf = n * np.log(mu_safe) - mu_safe - special.gammaln(n + 1.0)
        logp = np.where(far, logpmf - np.log1p(-np.minimum(mu_safe / (n + 1.0), 0.999)), logp)
        sig = stats.norm.isf(np.exp(logp))
        # exp underflows: invert log Q(s) ~ -s^2/2 - ln(s) - ln(2 pi)/2 (one refinement)
        tiny = logp < -700
        s0 = np.sqrt(np.maximum(-2.0 * logp, 1.0))
        s1 = np.sqrt(np.maximum(-2.0 * logp - 2.0 * np.log(s0) - np.log(2.0 * np.pi), 1.0))
        sig = np.where(tiny, s1, sig)
    sig = np.where((mu <= 0) & (n > 0), np.inf, sig)
    sig = np.where(np.isnan(sig), -10.0, sig)
    return np.clip(sig, -10.0, np.inf)


def encircled_fraction(aperture_px: float, pixel_arcsec: float = 4.0, *,
                       psf: KingPSF = PSF_HANDBOOK) -> float:
    """Fraction of a point source's counts inside a circular aperture (PSF model)."""
    return float(psf.encircled_energy(aperture_px * pixel_arcsec))


def aperture_counts(image: np.ndarray, mask: np.ndarray, x: np.ndarray, y: np.ndarray, *,
                    r_in: float, r_out: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``image`` and number of mask pixels in circles (``r_out`` None) or annuli.

    Pixels count when their centre lies inside (photutils ``method="center"``).

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    mask : numpy.ndarray of bool
        True where pixels are valid.
    x, y : array
        0-based pixel coordinates (column, row).
    r_in : float
        Circle radius, or inner annulus radius when ``r_out`` is given.
    r_out : float, optional
        Outer annulus radius.

    Returns
    -------
    sums, areas : numpy.ndarray
    """
    from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry

    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.size == 0:
        return np.zeros(0), np.zeros(0)
    pos = np.column_stack([x, y])
    ap = CircularAperture(pos, r=r_in) if r_out is None else CircularAnnulus(pos, r_in, r_out)
    m = np.asarray(mask, dtype=bool)
    data = np.where(m, np.asarray(image, dtype=np.float64), 0.0)
    sums = np.asarray(aperture_photometry(data, ap, method="center")["aperture_sum"],
                      dtype=np.float64)
    areas = np.asarray(aperture_photometry(m.astype(np.float64), ap,
                                           method="center")["aperture_sum"], dtype=np.float64)
    return sums, areas


@dataclass
class ApertureResult:
    """Poisson aperture photometry of a list of positions (see the module docstring).

    Attributes
    ----------
    counts, area : numpy.ndarray
        ``N`` and ``A`` (mask pixels in the aperture).
    bkg_per_pixel, bkg_counts : numpy.ndarray
        ``b`` and ``B = b * A``.
    annulus_area : numpy.ndarray
        Mask pixels in the annulus.
    net : numpy.ndarray
        ``N - B``.
    rate, rate_err : numpy.ndarray
        Aperture-corrected net count rate and its 1-sigma error (counts/s).
    signif : numpy.ndarray
        Gaussian-equivalent Poisson significance.
    eef : float
        Encircled-energy fraction used for the aperture correction.
    """

    counts: np.ndarray
    area: np.ndarray
    bkg_per_pixel: np.ndarray
    bkg_counts: np.ndarray
    annulus_area: np.ndarray
    net: np.ndarray
    rate: np.ndarray
    rate_err: np.ndarray
    signif: np.ndarray
    eef: float


def poisson_photometry(counts: np.ndarray, mask: np.ndarray, exposure_s: float,
                       x: np.ndarray, y: np.ndarray, *, aperture_px: float = 2.0,
                       annulus_px: tuple[float, float] = (5.0, 10.0),
                       pixel_arcsec: float = 4.0, psf: KingPSF = PSF_HANDBOOK,
                       background_offset: float = 0.0) -> ApertureResult:
    """Aperture counts, annulus background, rate and Poisson significance at positions.

    Parameters
    ----------
    counts : numpy.ndarray
        Counts image (the input; for a detection image, its counts for ``exposure_s``).
    mask : numpy.ndarray
        Valid pixels (non-zero).
    exposure_s : float
        Exposure of ``counts`` in seconds.
    x, y : array
        0-based pixel positions.
    aperture_px : float
        Aperture radius (pixels).
    annulus_px : tuple of float
        Background annulus radii (pixels).
    pixel_arcsec : float
        Pixel size, for the aperture correction.
    psf : KingPSF
        PSF of the aperture correction.
    background_offset : float
        Counts per pixel added to the annulus level (for a background-free detection image,
        e.g. a super-resolution output, the input's background scaled to its exposure).

    Returns
    -------
    ApertureResult
    """
    m = np.asarray(mask) > 0
    n, area = aperture_counts(counts, m, x, y, r_in=aperture_px)
    s_an, a_an = aperture_counts(counts, m, x, y, r_in=annulus_px[0], r_out=annulus_px[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(a_an > 0, s_an / np.maximum(a_an, 1.0), np.nan) + float(background_offset)
    bkg = b * area
    n = n + float(background_offset) * area
    eef = encircled_fraction(aperture_px, pixel_arcsec, psf=psf)
    net = n - bkg
    scale = float(exposure_s) * eef
    with np.errstate(divide="ignore", invalid="ignore"):
        var = n + bkg * area / np.maximum(a_an, 1.0)
    sig = poisson_significance(n, np.nan_to_num(bkg, nan=0.0))
    sig = np.where(np.isfinite(bkg), sig, np.nan)
    return ApertureResult(counts=n, area=area, bkg_per_pixel=b, bkg_counts=bkg,
                          annulus_area=a_an, net=net, rate=net / scale,
                          rate_err=np.sqrt(np.maximum(var, 0.0)) / scale, signif=sig,
                          eef=eef)
