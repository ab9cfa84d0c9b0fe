"""Classical methods the models are compared with, run side by side on the same images.

All functions take a 1x counts image, its exposure and the detector mask, and return a *rate*
image (counts/s/pixel) on the requested output grid (factor 1: the 1x grid, DN; factor 2: the
2x grid, SR), so they are normalised and scored exactly like the model's output.

- :func:`gaussian_smoothing`: mask-normalised Gaussian smoothing (chip gaps do not darken the
  edges of the CCDs);
- :func:`wavelet_denoise`: PyWavelets: Anscombe variance-stabilising transform of the counts,
  soft thresholding of the detail coefficients at ``k`` sigma, inverse transform;
- :func:`richardson_lucy`: scikit-image Richardson-Lucy deconvolution with the known PSF, then
  re-convolution with the target PSF (the PSF the model is asked to produce: the same for DN,
  every length halved for SR).

For SR (factor 2) each method's 1x estimate is brought onto the 2x grid with bilinear
interpolation (rate per pixel divided by 4), and a background level estimated by sigma-clipping
inside the mask is subtracted, because SR targets carry no background.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage, signal

__all__ = [
    "BASELINES",
    "king_kernel",
    "known_psf_kernel",
    "background_level",
    "gaussian_smoothing",
    "wavelet_denoise",
    "richardson_lucy",
    "run_baselines",
]

logger = logging.getLogger(__name__)


def king_kernel(*, rc_px: float, alpha: float, half_size: int) -> np.ndarray:
    """A normalised King-profile kernel ``[1 + (r/rc)^2]^-alpha`` sampled at pixel centres.

    Each pixel value is the mean of a 5 x 5 sub-sampling of the profile.

    Parameters
    ----------
    rc_px : float
        Core radius in pixels.
    alpha : float
        Slope.
    half_size : int
        The kernel is ``2 * half_size + 1`` pixels square.

    Returns
    -------
    numpy.ndarray
        Kernel summing to 1.
    """
    sub = 5
    n = 2 * half_size + 1
    c = (np.arange(n * sub) + 0.5) / sub - n / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    prof = (1.0 + (xx**2 + yy**2) / rc_px**2) ** (-alpha)
    k = prof.reshape(n, sub, n, sub).mean(axis=(1, 3))
    return k / k.sum()


def known_psf_kernel(*, factor: int = 1, resolution: float = 1.0, half_size_arcsec: float = 60.0,
                     psf: str = "handbook") -> np.ndarray:
    """The simulator's PSF (on axis, 1 keV) as a convolution kernel on the 1x or 2x grid.

    Parameters
    ----------
    factor : int
        Grid factor (pixel size 4 arcsec / factor).
    resolution : float
        Multiplier of every PSF length (0.5 for the SR target PSF).
    half_size_arcsec : float
        Half-size of the kernel.
    psf : {"handbook", "ccf-extended"}
        Which of :mod:`xsa_enhance.instrument.psf`'s King models.

    Returns
    -------
    numpy.ndarray
        Normalised kernel.
    """
    from xsa_enhance.instrument import psf as ipsf

    models = {"handbook": ipsf.PSF_HANDBOOK, "ccf-extended": ipsf.PSF_CCF_EXTENDED}
    if psf not in models:
        raise ValueError(f"unknown PSF {psf!r}; choose from {sorted(models)}")
    pix = 4.0 / factor
    half = max(2, int(math.ceil(half_size_arcsec / pix)))
    return ipsf.psf_kernel(models[psf].with_scale(resolution), pixel_arcsec=pix,
                           radius_pixels=half)


def background_level(rate: np.ndarray, mask: np.ndarray) -> float:
    """Sigma-clipped (3 sigma, 5 iterations) median rate of the pixels inside the mask."""
    from astropy.stats import sigma_clipped_stats

    vals = np.asarray(rate, dtype=np.float64)[np.asarray(mask) > 0]
    if vals.size == 0:
        return 0.0
    _mean, median, _std = sigma_clipped_stats(vals, sigma=3.0, maxiters=5)
    return float(median)


def _to_output(rate1x: np.ndarray, mask: np.ndarray, factor: int, subtract_background: bool
               ) -> np.ndarray:
    m = np.asarray(mask) > 0
    r = np.where(m, rate1x, 0.0)
    if factor == 1:
        return r
    if subtract_background:
        r = np.where(m, np.clip(r - background_level(r, m), 0.0, None), 0.0)
    up = ndimage.zoom(r, factor, order=1, grid_mode=True, mode="nearest") / factor**2
    m2 = np.repeat(np.repeat(m, factor, axis=0), factor, axis=1)
    return np.clip(np.where(m2, up, 0.0), 0.0, None)


def gaussian_smoothing(counts: np.ndarray, exposure_s: float, mask: np.ndarray, *,
                       factor: int = 1, sigma_px: float = 1.0,
                       subtract_background: bool = True) -> np.ndarray:
    """Mask-normalised Gaussian smoothing of the rate image.

    Parameters
    ----------
    counts : numpy.ndarray
        1x counts image.
    exposure_s : float
        Its exposure.
    mask : numpy.ndarray
        Detector mask (non-zero inside).
    factor : int
        Output grid factor (1 DN, 2 SR).
    sigma_px : float
        Gaussian sigma in 1x pixels.
    subtract_background : bool
        For factor 2, subtract the sigma-clipped background level.

    Returns
    -------
    numpy.ndarray
        Rate on the output grid.
    """
    m = (np.asarray(mask) > 0).astype(np.float64)
    rate = np.asarray(counts, dtype=np.float64) / float(exposure_s) * m
    num = ndimage.gaussian_filter(rate, sigma_px, mode="constant")
    den = ndimage.gaussian_filter(m, sigma_px, mode="constant")
    sm = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0) * m
    return _to_output(sm, m, factor, subtract_background)


def wavelet_denoise(counts: np.ndarray, exposure_s: float, mask: np.ndarray, *,
                    factor: int = 1, wavelet: str = "db2", levels: int = 4, k: float = 3.0,
                    subtract_background: bool = True) -> np.ndarray:
    """Wavelet denoising with PyWavelets after an Anscombe transform of the counts.

    The Anscombe transform ``2 sqrt(c + 3/8)`` makes Poisson noise roughly unit-variance, so
    detail coefficients are soft-thresholded at ``k`` (in units of that sigma); the result is
    transformed back with the closed-form unbiased inverse of Makitalo & Foi (2011).

    Parameters
    ----------
    counts, exposure_s, mask, factor, subtract_background
        See :func:`gaussian_smoothing`.
    wavelet : str
        PyWavelets wavelet name.
    levels : int
        Decomposition levels.
    k : float
        Threshold in noise sigmas.

    Returns
    -------
    numpy.ndarray
        Rate on the output grid.
    """
    import pywt

    m = (np.asarray(mask) > 0).astype(np.float64)
    c = np.asarray(counts, dtype=np.float64) * m
    a = 2.0 * np.sqrt(c + 3.0 / 8.0)
    coeffs = pywt.wavedec2(a, wavelet, level=levels, mode="symmetric")
    out = [coeffs[0]]
    for detail in coeffs[1:]:
        out.append(tuple(pywt.threshold(d, k, mode="soft") for d in detail))
    rec = pywt.waverec2(out, wavelet, mode="symmetric")[: c.shape[0], : c.shape[1]]
    y = np.maximum(rec, 1e-3)
    s15 = math.sqrt(1.5)
    # closed-form approximation of the exact unbiased inverse (Makitalo & Foi 2011)
    inv = 0.25 * y**2 + 0.25 * s15 / y - 1.375 / y**2 + 0.625 * s15 / y**3 - 0.125
    den = np.clip(inv, 0.0, None) * m
    return _to_output(den / float(exposure_s), m, factor, subtract_background)


def richardson_lucy(counts: np.ndarray, exposure_s: float, mask: np.ndarray, *,
                    factor: int = 1, num_iter: int = 20,
                    psf_in: np.ndarray | None = None, psf_out: np.ndarray | None = None,
                    subtract_background: bool = True) -> np.ndarray:
    """Richardson-Lucy deconvolution with the known PSF, re-convolved with the target PSF.

    For factor 2 the counts are first spread onto the 2x grid (nearest neighbour, each 1x
    pixel's counts shared by its 4 sub-pixels), deconvolved with the input PSF sampled on the
    2x grid and re-convolved with the SR target PSF (every length halved).

    Parameters
    ----------
    counts, exposure_s, mask, factor, subtract_background
        See :func:`gaussian_smoothing`.
    num_iter : int
        Richardson-Lucy iterations (scikit-image).
    psf_in, psf_out : numpy.ndarray, optional
        Kernels on the working grid (default: :func:`known_psf_kernel` at resolution 1 and,
        for factor 2, 0.5).

    Returns
    -------
    numpy.ndarray
        Rate on the output grid.
    """
    from skimage.restoration import richardson_lucy as sk_rl

    m = np.asarray(mask) > 0
    c = np.where(m, np.asarray(counts, dtype=np.float64), 0.0)
    if factor > 1:
        c = np.repeat(np.repeat(c, factor, axis=0), factor, axis=1) / factor**2
        mw = np.repeat(np.repeat(m, factor, axis=0), factor, axis=1)
    else:
        mw = m
    if psf_in is None:
        psf_in = known_psf_kernel(factor=factor, resolution=1.0)
    if psf_out is None:
        psf_out = known_psf_kernel(factor=factor, resolution=0.5 if factor == 2 else 1.0)
    scale = max(float(c.max()), 1e-12)
    est = sk_rl(c / scale, psf_in, num_iter=num_iter, clip=False, filter_epsilon=1e-12)
    sharp = signal.fftconvolve(est * scale, psf_out, mode="same")
    rate = np.clip(sharp, 0.0, None) / float(exposure_s) * mw
    if factor > 1 and subtract_background:
        rate = np.where(mw, np.clip(rate - background_level(rate, mw), 0.0, None), 0.0)
    return rate


#: The classical methods by name (keyword options take their defaults).
BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "gaussian": gaussian_smoothing,
    "wavelet": wavelet_denoise,
    "richardson_lucy": richardson_lucy,
}


def run_baselines(counts: np.ndarray, exposure_s: float, mask: np.ndarray, *, factor: int,
                  names: tuple[str, ...] = tuple(BASELINES),
                  psf_in: np.ndarray | None = None, psf_out: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Run the named classical methods; returns output-grid rate images by name."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "richardson_lucy":
            out[name] = richardson_lucy(counts, exposure_s, mask, factor=factor,
                                        psf_in=psf_in, psf_out=psf_out)
        elif name in BASELINES:
            out[name] = BASELINES[name](counts, exposure_s, mask, factor=factor)
        else:
            raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return out
