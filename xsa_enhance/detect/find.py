"""Source detection on a counts image or on its enhanced (DN / SR) image.

:func:`detect_sources` works in three steps:

1. **Candidates** on the *detection image* (the input counts, or a model's output rebinned to
   the input grid): the image is smoothed with a mask-normalised Gaussian of ``smooth_px``
   pixels and every local maximum inside the mask is a candidate
   (:func:`photutils.detection.find_peaks`, a disk footprint of ``min_separation_px``);
   positions are refined with the centre of mass of the smoothed image in a 5 x 5 box
   (:func:`photutils.centroids.centroid_sources`).
2. **Detection-image score** ``DET_SIGNIF`` (with a model only): the Poisson aperture
   statistic of :mod:`xsa_enhance.detect.photometry` computed on the model's output counts
   (for its target exposure; a background-free SR output gets the input's background level
   scaled to that exposure). Model outputs are not Poisson images, so this is a *score*
   whose threshold was chosen on simulations, not a probability.
3. **Measurement on the input counts**: aperture counts, annulus background, rate and the
   Poisson significance ``SIGNIF`` (:func:`~xsa_enhance.detect.photometry.poisson_photometry`).
   A candidate is a source when ``SIGNIF >= min_signif`` and, with a model,
   ``DET_SIGNIF >= min_det_signif``.

The thresholds per detection mode (:data:`DEFAULT_THRESHOLDS`) were chosen on simulated
fields with extended emission, for purity >= 0.99 there (``xsa-enhance detect-eval``,
docs/sources.md).
Detection on the de-noised image admits a lower input significance than detection on the
input alone: its candidates are few (the model suppresses noise peaks), so fewer trials are
made and a lower threshold keeps the same purity.

Flags (bits of ``FLAGS``): :data:`FLAG_EDGE` (a pixel outside the mask - chip gap, bad
column, field-of-view edge - within ``aperture_px + 2`` pixels), :data:`FLAG_RESTORED` (the
aperture touches model pixels that received restored bright-source flux, i.e. a clamped
core), :data:`FLAG_LOW_CONFIDENCE` (with a per-pixel uncertainty of the output: the
aperture excess of the output is below 3 times its uncertainty), :data:`FLAG_EXTENDED`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from xsa_enhance.detect.photometry import aperture_counts, poisson_photometry
from xsa_enhance.instrument.psf import PSF_HANDBOOK, psf_kernel

__all__ = ["DEFAULT_THRESHOLDS", "DetectionConfig", "FLAG_EDGE", "FLAG_EXTENDED",
           "FLAG_LOW_CONFIDENCE", "FLAG_RESTORED", "SOURCE_COLUMNS", "config_for_mode",
           "detect_sources", "find_candidates", "image_sky_wcs", "smooth_image",
           "source_extent"]

logger = logging.getLogger(__name__)

FLAG_EDGE: int = 1
FLAG_RESTORED: int = 2
FLAG_LOW_CONFIDENCE: int = 4
FLAG_EXTENDED: int = 8

#: Defaults per detection mode: ``input`` (no model), ``dn`` and ``sr`` (detection on the
#: model's output): ``min_signif``, ``min_det_signif`` and the smoothing of the peak search.
#: Chosen on simulated fields, not on real data: 1.5 px (6") smoothing for every mode, and per
#: mode the thresholds that find the most simulated sources among those with purity >= 0.99
#: on 6 fields, each with 60 point sources and one extended source judged by an independent
#: deep image as real data are, a source split into two detections counting one true and one
#: false detection (``xsa-enhance detect-eval --sweep``, docs/sources.md; constant-clamp
#: models). 1.5 px was the best smoothing for input and DN and within 4 of 181 sources of the
#: best (2 px) for SR.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "input": {"min_signif": 5.0, "min_det_signif": 0.0, "smooth_px": 1.5},
    "dn": {"min_signif": 4.0, "min_det_signif": 3.0, "smooth_px": 1.5},
    "sr": {"min_signif": 4.0, "min_det_signif": 8.0, "smooth_px": 1.5},
}

#: Columns of a source table: name, unit, description.
SOURCE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ID", "", "source number in the table (1-based, by decreasing significance)"),
    ("X", "pix", "1-based column of the input grid (FITS/ds9 convention)"),
    ("Y", "pix", "1-based row of the input grid (FITS/ds9 convention)"),
    ("RA", "deg", "right ascension (ICRS) from the image's sky WCS (NaN without one)"),
    ("DEC", "deg", "declination (ICRS) from the image's sky WCS (NaN without one)"),
    ("RATE", "ct/s", "aperture-corrected background-subtracted count rate (input counts)"),
    ("RATE_ERR", "ct/s", "1-sigma error of RATE"),
    ("COUNTS", "ct", "input counts in the aperture"),
    ("BKG_COUNTS", "ct", "expected background counts in the aperture (annulus mean)"),
    ("SIGNIF", "", "Gaussian-equivalent sigma of the Poisson probability of >= COUNTS given "
                   "BKG_COUNTS (input counts)"),
    ("DET_SIGNIF", "", "the same statistic on the detection image (a score for model "
                       "outputs; equal to SIGNIF without a model)"),
    ("EXTENT", "arcsec", "Gaussian sigma of the source beyond the PSF (0: point-like)"),
    ("POINTLIKE", "", "consistent with a point source (EXTENT <= 6 arcsec or too faint to "
                      "tell)"),
    ("FLAGS", "", "bits: 1 near a chip gap or the mask edge, 2 restored (clamped) core, "
                  "4 low uncertainty-based confidence, 8 extended"),
)


@dataclass(frozen=True)
class DetectionConfig:
    """Parameters of :func:`detect_sources` (lengths in input pixels).

    The thresholds and smoothing default to those of the ``input`` mode
    (:data:`DEFAULT_THRESHOLDS`); :func:`config_for_mode` gives another mode's.

    Attributes
    ----------
    min_signif : float
        Minimum Poisson significance in the input counts.
    min_det_signif : float
        Minimum detection-image score (ignored without a model).
    smooth_px : float
        Gaussian sigma of the smoothing before the peak search.
    min_separation_px : float
        Radius of the local-maximum footprint.
    aperture_px : float
        Source aperture radius.
    annulus_px : tuple of float
        Background annulus radii.
    edge_px : float
        Distance to a masked pixel that sets :data:`FLAG_EDGE` (beyond the aperture).
    extent_limit_arcsec : float
        EXTENT above which a source (with >= ``extent_min_counts`` net counts) is extended.
    extent_min_counts : float
        Net counts needed to judge the extent.
    max_candidates : int
        At most this many candidates (the highest smoothed peaks) are measured.
    """

    min_signif: float = DEFAULT_THRESHOLDS["input"]["min_signif"]
    min_det_signif: float = DEFAULT_THRESHOLDS["input"]["min_det_signif"]
    smooth_px: float = DEFAULT_THRESHOLDS["input"]["smooth_px"]
    min_separation_px: float = 2.5
    aperture_px: float = 2.0
    annulus_px: tuple[float, float] = (5.0, 10.0)
    edge_px: float = 2.0
    extent_limit_arcsec: float = 6.0
    extent_min_counts: float = 30.0
    max_candidates: int = 20000


def config_for_mode(mode: str, **overrides: Any) -> DetectionConfig:
    """The default configuration of a detection mode (``input``, ``dn``, ``sr``)."""
    if mode not in DEFAULT_THRESHOLDS:
        raise ValueError(f"unknown detection mode {mode!r}; expected one of "
                         f"{sorted(DEFAULT_THRESHOLDS)}")
    cfg = DetectionConfig(**DEFAULT_THRESHOLDS[mode])
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **overrides) if overrides else cfg


def smooth_image(image: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Mask-normalised Gaussian smoothing (zero outside the mask)."""
    m = np.asarray(mask) > 0
    img = np.where(m, np.asarray(image, dtype=np.float64), 0.0)
    if sigma_px <= 0:
        return img
    num = ndimage.gaussian_filter(img, sigma_px, mode="constant")
    den = ndimage.gaussian_filter(m.astype(np.float64), sigma_px, mode="constant")
    return np.where(m & (den > 1e-6), num / np.maximum(den, 1e-6), 0.0)


def find_candidates(image: np.ndarray, mask: np.ndarray, *, smooth_px: float = 1.0,
                    min_separation_px: float = 2.5, max_candidates: int = 20000
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima of the smoothed detection image, centroided.

    Parameters
    ----------
    image : numpy.ndarray
        Detection image (counts or rate; any linear unit) on the input grid.
    mask : numpy.ndarray
        Valid pixels.
    smooth_px, min_separation_px : float
        Smoothing sigma and footprint radius (pixels).
    max_candidates : int
        Keep the highest peaks only.

    Returns
    -------
    x, y : numpy.ndarray
        0-based centroided positions.
    peak : numpy.ndarray
        Smoothed value at the peak pixel.
    """
    from photutils.centroids import centroid_com, centroid_sources
    from photutils.detection import find_peaks

    m = np.asarray(mask) > 0
    sm = smooth_image(image, m, smooth_px)
    h = int(math.ceil(min_separation_px))
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    foot = np.hypot(yy, xx) <= min_separation_px
    positive = sm[m & (sm > 0)]
    empty = np.zeros(0)
    if positive.size == 0:
        return empty, empty, empty
    # strictly above the smallest positive value: flat zero regions hold no peak
    thr = float(positive.min()) * (1 - 1e-9)
    tab = find_peaks(sm, thr, footprint=foot, mask=~m, n_peaks=max_candidates)
    if tab is None or len(tab) == 0:
        return empty, empty, empty
    px = np.asarray(tab["x_peak"], dtype=np.float64)
    py = np.asarray(tab["y_peak"], dtype=np.float64)
    peak = np.asarray(tab["peak_value"], dtype=np.float64)
    # centre of mass of the smoothed image above its 5x5-box minimum
    floor = ndimage.minimum_filter(np.where(m, sm, np.inf), size=5, mode="nearest")
    floor = np.where(np.isfinite(floor), floor, 0.0)
    excess = np.where(m, np.clip(sm - floor, 0.0, None), 0.0)
    cx, cy = centroid_sources(excess, px, py, box_size=5, centroid_func=centroid_com)
    bad = ~(np.isfinite(cx) & np.isfinite(cy)) | (np.hypot(cx - px, cy - py) > 1.5)
    cx = np.where(bad, px, cx)
    cy = np.where(bad, py, cy)
    return np.asarray(cx), np.asarray(cy), peak


_PSF_SIGMA_CACHE: dict[tuple[float, float], float] = {}


def _moment_sigma(stamp: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> float:
    w = np.clip(stamp, 0.0, None)
    tot = float(w.sum())
    if tot <= 0:
        return math.nan
    return math.sqrt(float((w * (dx * dx + dy * dy)).sum()) / (2.0 * tot))


def _psf_sigma(radius_px: float, pixel_arcsec: float) -> float:
    key = (radius_px, pixel_arcsec)
    if key not in _PSF_SIGMA_CACHE:
        h = int(math.ceil(radius_px))
        k = psf_kernel(PSF_HANDBOOK, pixel_arcsec=pixel_arcsec, radius_pixels=h)
        yy, xx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float64)
        k = np.where(np.hypot(yy, xx) <= radius_px, k, 0.0)
        _PSF_SIGMA_CACHE[key] = _moment_sigma(k, yy, xx)
    return _PSF_SIGMA_CACHE[key]


def source_extent(counts: np.ndarray, mask: np.ndarray, x: np.ndarray, y: np.ndarray,
                  bkg_per_pixel: np.ndarray, *, radius_px: float = 6.0,
                  pixel_arcsec: float = 4.0) -> np.ndarray:
    """Gaussian sigma (arcsec) of each source beyond the PSF, from second moments.

    The background-subtracted counts within ``radius_px`` of the (rounded) position give a
    second-moment sigma; the PSF's sigma measured the same way is subtracted in quadrature.
    Noisy for faint sources (see ``extent_min_counts``).
    """
    c = np.asarray(counts, dtype=np.float64)
    m = np.asarray(mask) > 0
    h = int(math.ceil(radius_px))
    s_psf = _psf_sigma(radius_px, pixel_arcsec)
    out = np.full(len(np.atleast_1d(x)), np.nan)
    for i, (px, py, b) in enumerate(zip(np.atleast_1d(x), np.atleast_1d(y),
                                        np.atleast_1d(bkg_per_pixel))):
        cx, cy = int(round(px)), int(round(py))
        y0, y1 = max(cy - h, 0), min(cy + h + 1, c.shape[0])
        x0, x1 = max(cx - h, 0), min(cx + h + 1, c.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy, dx = yy - py, xx - px
        sel = m[y0:y1, x0:x1] & (np.hypot(dy, dx) <= radius_px)
        stamp = np.where(sel, c[y0:y1, x0:x1] - (b if np.isfinite(b) else 0.0), 0.0)
        s = _moment_sigma(stamp, dy, dx)
        if np.isfinite(s):
            out[i] = math.sqrt(max(s * s - s_psf * s_psf, 0.0)) * pixel_arcsec
    return out


def _rebin_to_input(image: np.ndarray, factor: int) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    if factor == 1:
        return a
    ny, nx = a.shape[0] // factor, a.shape[1] // factor
    return a[: factor * ny, : factor * nx].reshape(ny, factor, nx, factor).sum(axis=(1, 3))


def detect_sources(
    counts: np.ndarray,
    exposure_s: float,
    mask: np.ndarray | None = None,
    *,
    config: DetectionConfig | None = None,
    detection_image: np.ndarray | None = None,
    detection_exposure_s: float | None = None,
    detection_factor: int = 1,
    background_free: bool = False,
    restored: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
    wcs: Any = None,
    pixel_arcsec: float = 4.0,
) -> Any:
    """Detect sources and measure them on the input counts.

    Parameters
    ----------
    counts : numpy.ndarray
        Input counts image (e.g. 411 x 403, 4" pixels).
    exposure_s : float
        Its exposure in seconds.
    mask : numpy.ndarray, optional
        Valid pixels (default: every pixel).
    config : DetectionConfig, optional
        Thresholds and lengths (default: :func:`config_for_mode` of ``input``, or of ``dn``
        with a detection image).
    detection_image : numpy.ndarray, optional
        A model output in counts for ``detection_exposure_s`` on a grid ``detection_factor``
        times finer than the input (rebinned by summing); default: detect on ``counts``.
    detection_exposure_s : float, optional
        Exposure the detection image's counts correspond to.
    detection_factor : int
        1 (DN) or 2 (SR).
    background_free : bool
        The detection image has no background (SR): the input's background level, scaled to
        ``detection_exposure_s``, is added to its annulus and aperture.
    restored : numpy.ndarray, optional
        Boolean map (detection grid) of pixels with restored bright-source flux.
    uncertainty : numpy.ndarray, optional
        1-sigma uncertainty of the detection image (same grid and units).
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the input grid (RA/DEC are NaN without one).
    pixel_arcsec : float
        Input pixel size.

    Returns
    -------
    astropy.table.Table
        One row per source (columns :data:`SOURCE_COLUMNS`), most significant first; its
        ``meta`` records the thresholds, the aperture and the significance method.
    """
    from astropy.table import Table

    c = np.asarray(counts, dtype=np.float64)
    m = np.ones(c.shape, bool) if mask is None else np.asarray(mask) > 0
    if m.shape != c.shape:
        raise ValueError(f"mask shape {m.shape} differs from the image {c.shape}")
    with_model = detection_image is not None
    if config is None:
        config = config_for_mode("dn" if with_model else "input")
    f = int(detection_factor)
    if with_model:
        det = _rebin_to_input(detection_image, f)
        if det.shape != c.shape:
            raise ValueError(f"detection image rebinned by {f} has shape {det.shape}, the "
                             f"input {c.shape}")
        det_exp = float(detection_exposure_s or exposure_s)
    else:
        det, det_exp = c, float(exposure_s)
    x, y, _peak = find_candidates(det, m, smooth_px=config.smooth_px,
                                  min_separation_px=config.min_separation_px,
                                  max_candidates=config.max_candidates)
    # measurement on the input counts
    phot = poisson_photometry(c, m, exposure_s, x, y, aperture_px=config.aperture_px,
                              annulus_px=config.annulus_px, pixel_arcsec=pixel_arcsec)
    if with_model:
        offset = 0.0
        if background_free:
            level = np.nanmedian(phot.bkg_per_pixel) if phot.bkg_per_pixel.size else 0.0
            offset = float(level) * det_exp / float(exposure_s)
        dphot = poisson_photometry(det, m, det_exp, x, y, aperture_px=config.aperture_px,
                                   annulus_px=config.annulus_px, pixel_arcsec=pixel_arcsec,
                                   background_offset=offset)
        det_sig = dphot.signif
    else:
        dphot = phot
        det_sig = phot.signif
    keep = (np.nan_to_num(phot.signif, nan=-np.inf) >= config.min_signif)
    if with_model:
        keep &= np.nan_to_num(det_sig, nan=-np.inf) >= config.min_det_signif
    idx = np.nonzero(keep)[0]
    order = idx[np.argsort(-np.nan_to_num(phot.signif[idx], posinf=1e9), kind="stable")]
    xs, ys = x[order], y[order]

    flags = np.zeros(order.size, dtype=np.int32)
    if order.size:
        # distance (pixels) to the nearest pixel outside the mask or the image
        dist = ndimage.distance_transform_edt(np.pad(m, 1, constant_values=False))[1:-1, 1:-1]
        iy = np.clip(np.round(ys).astype(int), 0, c.shape[0] - 1)
        ix = np.clip(np.round(xs).astype(int), 0, c.shape[1] - 1)
        near = dist[iy, ix] <= config.aperture_px + config.edge_px
        flags |= np.where(near, FLAG_EDGE, 0).astype(np.int32)
        if restored is not None:
            r1 = _rebin_to_input(np.asarray(restored, dtype=np.float64), f) > 0
            n_r, _ = aperture_counts(r1.astype(np.float64), m, xs, ys, r_in=config.aperture_px)
            flags |= np.where(n_r > 0, FLAG_RESTORED, 0).astype(np.int32)
        if uncertainty is not None and with_model:
            var1 = _rebin_to_input(np.asarray(uncertainty, dtype=np.float64) ** 2, f)
            v_ap, _ = aperture_counts(var1, m, xs, ys, r_in=config.aperture_px)
            excess = dphot.net[order]
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(v_ap > 0, excess / np.sqrt(v_ap), np.inf)
            flags |= np.where(z < 3.0, FLAG_LOW_CONFIDENCE, 0).astype(np.int32)
    extent = source_extent(c, m, xs, ys, phot.bkg_per_pixel[order], pixel_arcsec=pixel_arcsec)
    judged = phot.net[order] >= config.extent_min_counts
    extended = judged & (np.nan_to_num(extent) > config.extent_limit_arcsec)
    flags |= np.where(extended, FLAG_EXTENDED, 0).astype(np.int32)

    ra = np.full(order.size, np.nan)
    dec = np.full(order.size, np.nan)
    if wcs is not None and order.size:
        ra, dec = (np.asarray(v, dtype=np.float64) for v in wcs.pixel_to_world_values(xs, ys))
    values = {
        "ID": np.arange(1, order.size + 1, dtype=np.int32),
        "X": xs + 1.0,
        "Y": ys + 1.0,
        "RA": ra,
        "DEC": dec,
        "RATE": phot.rate[order],
        "RATE_ERR": phot.rate_err[order],
        "COUNTS": phot.counts[order],
        "BKG_COUNTS": phot.bkg_counts[order],
        "SIGNIF": phot.signif[order],
        "DET_SIGNIF": det_sig[order],
        "EXTENT": np.nan_to_num(extent, nan=0.0),
        "POINTLIKE": ~extended,
        "FLAGS": flags,
    }
    table = Table()
    for name, unit, desc in SOURCE_COLUMNS:
        table[name] = values[name]
        if unit:
            table[name].unit = unit
        table[name].description = desc
    table.meta.update({
        "EXPOSURE": float(exposure_s),
        "MINSIG": float(config.min_signif),
        "MINDSIG": float(config.min_det_signif) if with_model else 0.0,
        "APERPIX": float(config.aperture_px),
        "ANNIN": float(config.annulus_px[0]),
        "ANNOUT": float(config.annulus_px[1]),
        "EEF": float(phot.eef),
        "SIGMETH": "poisson-tail",
        "NCAND": int(x.size),
    })
    logger.info("%d candidates, %d sources (SIGNIF >= %.2f%s)", x.size, order.size,
                config.min_signif,
                f", DET_SIGNIF >= {config.min_det_signif:.2f}" if with_model else "")
    return table


def image_sky_wcs(header: Any, shape: tuple[int, int]) -> tuple[Any, str]:
    """The celestial WCS of an image on the input grid, and where it came from.

    The header's own sky WCS (primary or any alternate ``A``-``Z`` with RA/DEC axes) when it
    has one; otherwise, for an image on the standard DET grid with ``REFXCRVL``/
    ``REFYCRVL`` (or ``RA_PNT``/``DEC_PNT``) and ``PA_PNT``, the approximate one that
    ``xsa-enhance image`` writes (:func:`xsa_enhance.formats.skywcs.sky_wcs`);
    otherwise None.

    Returns
    -------
    wcs : astropy.wcs.WCS or None
    source : str
        ``header``, ``pointing`` or ``none``.
    """
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    if header is None:
        return None, "none"
    for alt in [" "] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]:
        key = "" if alt == " " else alt
        if f"CTYPE1{key}" not in header:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                w = WCS(header, key=alt, naxis=2)
            except Exception:  # noqa: BLE001 - astropy raises many kinds on odd headers
                continue
        if w.has_celestial:
            return w.celestial, "header"
    from xsa_enhance.formats.skywcs import projection_centre, sky_wcs
    from xsa_enhance.instrument.grid import GRID_1X

    if tuple(shape) != GRID_1X.shape:
        return None, "none"
    centre = projection_centre(header)
    if centre is None:
        return None, "none"
    return sky_wcs(GRID_1X, ra=centre[0], dec=centre[1], pa=centre[2]), "pointing"
