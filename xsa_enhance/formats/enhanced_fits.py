"""FITS files of enhanced images: the counts images read by ``xsa-enhance enhance``, the
enhanced image it writes, and the ``UNCERTAINTY`` extension shared with ``xsa-enhance export``.

The layout is described in ``docs/inference.md`` ("FITS output of xsa-enhance enhance"); the
WCS of the output is the input's scaled to the output grid (:func:`scaled_wcs_header`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.errors import InputFileError
from xsa_enhance.formats.skywcs import det_wcs_cards, projection_centre, sky_wcs_header
from xsa_enhance.instrument.grid import DetGrid

__all__ = ["read_counts_fits", "scaled_wcs_header", "uncertainty_hdu", "write_enhanced_fits"]

logger = logging.getLogger(__name__)

#: Identification keywords copied from the input image to the enhanced one.
_COPY_KEYS = ("OBS_ID", "EXP_ID", "EXPIDSTR", "INSTRUME", "FILTER", "SUBMODE", "DATAMODE",
              "DATE-OBS", "DATE-END", "RA_PNT", "DEC_PNT", "PA_PNT", "RA_NOM", "DEC_NOM",
              "OBJECT", "TELESCOP", "SLICEID", "SLICE", "SLICE_KS", "EMIN", "EMAX", "BUNIT0")


def read_counts_fits(path: str | Path) -> tuple[np.ndarray, float, np.ndarray | None, Any]:
    """Read a counts image: primary HDU data, ``EXPOSURE`` keyword, optional ``MASK`` HDU.

    Parameters
    ----------
    path : path-like
        FITS file as written by ``xsa-enhance image`` (events stage ``write_image_fits``).

    Returns
    -------
    counts : numpy.ndarray
    exposure_s : float
    mask : numpy.ndarray or None
    header : astropy.io.fits.Header
        The primary header.
    """
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul[0]
            if hdu.data is None and len(hdul) > 1 and hdul[1].is_image:
                hdu = hdul[1]
            if hdu.data is None or hdu.data.ndim != 2:
                raise InputFileError(path, "no 2-D counts image in the primary HDU")
            counts = np.asarray(hdu.data, dtype=np.float64)
            header = hdu.header.copy()
            mask = None
            if "MASK" in hdul:
                mask = np.asarray(hdul["MASK"].data, dtype=np.float64)
    except InputFileError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(path, f"not a readable FITS image: {exc}") from exc
    expo = header.get("EXPOSURE", header.get("ONTIME", header.get("LIVETIME")))
    try:
        exposure_s = float(expo)
    except (TypeError, ValueError):
        raise InputFileError(path, "no usable EXPOSURE keyword (seconds) in the header") from None
    if not (np.isfinite(exposure_s) and exposure_s > 0):
        raise InputFileError(path, f"EXPOSURE must be positive, got {expo!r}")
    if mask is not None and mask.shape != counts.shape:
        raise InputFileError(path, f"MASK shape {mask.shape} differs from image {counts.shape}")
    bad = ~np.isfinite(counts)
    if bad.any():
        iy, ix = (int(v[0]) for v in np.nonzero(bad))
        raise InputFileError(path, f"{int(bad.sum())} non-finite (NaN/Inf) pixel(s) in the counts "
                                   f"image, first at row {iy}, column {ix} (0-based)")
    if mask is not None and not np.all(np.isfinite(mask)):
        raise InputFileError(path, "non-finite (NaN/Inf) values in the MASK extension")
    return counts, exposure_s, mask, header


def scaled_wcs_header(header: Any, factor: int, out_grid: DetGrid | None) -> tuple[Any, str]:
    """WCS keywords of an enhanced image: the input's WCS scaled to the output grid.

    Every WCS of the input (primary and alternates ``A``-``Z``) is scaled by ``factor``
    (``CRPIX' = f (CRPIX - 0.5) + 0.5``, ``CD``/``CDELT`` divided by f). When the input has
    no sky WCS but a pointing, the sky WCS of :func:`~xsa_enhance.formats.skywcs.sky_wcs_header`
    and the DET WCS ``L`` are built for ``out_grid``.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The input image's header.
    factor : int
        Output pixels per input pixel per axis.
    out_grid : DetGrid or None
        The output grid (None for a non-standard one).

    Returns
    -------
    header : astropy.io.fits.Header
        The WCS keywords.
    note : str
        Where they came from (the ``XSAWCS`` keyword).
    """
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    out = fits.Header()
    have_sky = False
    alts = [""] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for alt in alts:
        if f"CTYPE1{alt}" not in header:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                w = WCS(header, key=alt or " ", naxis=2)
            except Exception as exc:  # astropy raises many kinds here
                logger.warning("cannot read WCS %r of the input: %s", alt, exc)
                continue
        w.wcs.crpix = factor * (np.asarray(w.wcs.crpix) - 0.5) + 0.5
        if w.wcs.has_cd():
            w.wcs.cd = np.asarray(w.wcs.cd) / factor
        else:
            w.wcs.cdelt = np.asarray(w.wcs.cdelt) / factor
        have_sky = have_sky or w.has_celestial
        out.update(w.to_header(key=alt or None))
    if have_sky:
        return out, "input WCS scaled to the output grid"
    centre = projection_centre(header)
    if centre is None:
        return out, "none (no sky WCS or pointing in the input)"
    if out_grid is None:
        return out, "none (non-standard grid)"
    ra, dec, pa = centre
    for key in ("CDELT1", "CDELT2", "PC1_1", "PC1_2", "PC2_1", "PC2_2"):  # a scaled DET WCS
        out.remove(key, ignore_missing=True)
    out.update(sky_wcs_header(out_grid, ra=ra, dec=dec, pa=pa))
    out.update({k: v for k, v, _ in det_wcs_cards(out_grid, primary=False)})
    return out, "approximate: DET origin at pointing, rotated by PA_PNT"


def write_enhanced_fits(path: str | Path, result: Any, in_header: Any, *,
                        overwrite: bool = False) -> None:
    """Write an :class:`~xsa_enhance.models.inference.EnhancedImage` as FITS.

    Primary HDU: enhanced counts (float32) with the provenance keywords and the scaled WCS;
    extensions ``MASK`` (uint8) and ``RESTORED`` (uint8, pixels with restored flux); when
    ``result.uncertainty`` is set, ``UNCERTAINTY`` (float32, the 1-sigma uncertainty of the
    counts: same shape, units and WCS as the primary image, with the method, samples, seed
    and calibration in its header).

    Parameters
    ----------
    path : path-like
        Output FITS file.
    result : EnhancedImage
        The output of :func:`xsa_enhance.models.inference.enhance`.
    in_header : astropy.io.fits.Header
        Header of the input image (identification keywords and WCS are carried over).
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    InputFileError
        When the file cannot be written.
    """
    from astropy.io import fits

    a = result.attrs
    hdr = fits.Header()
    for key in _COPY_KEYS:
        if key in in_header:
            hdr[key] = in_header[key]
    wcs_hdr, wcs_note = scaled_wcs_header(in_header, int(a["factor"]), result.grid)
    hdr.update(wcs_hdr)
    hdr["BUNIT"] = ("count", "counts for EXPOSURE seconds")
    hdr["EXPOSURE"] = (float(result.exposure_s), "[s] target exposure of the model")
    hdr["INEXPOSE"] = (float(a["input_exposure_s"]), "[s] exposure of the input image")
    hdr["XSAMODEL"] = (str(a["model"]), "enhancement model")
    hdr["XSAKIND"] = (str(a["model_kind"]), "sr: super-resolution, dn: de-noising")
    hdr["XSAGRID"] = (str(a["grid"]), "output DET grid")
    hdr["XSAFACT"] = (int(a["factor"]), "output pixels per input pixel per axis")
    hdr["XSACLAMP"] = (str(a["clamp_mode"]), "clamp mode")
    if a.get("trained_clamp") is not None:
        hdr["XSATRCL"] = (str(a["trained_clamp"])[:40], "clamp mode the weights were trained for")
        hdr["XSAMISM"] = (bool(a.get("clamp_mismatch", False)),
                          "clamp mode differs from the trained one")
    hdr["XSACLVAL"] = (float(a["clamp_value"]), "[count/s/pix] input clamp value")
    if a.get("clamp_quantile") is not None:
        hdr["XSACLQ"] = (float(a["clamp_quantile"]), "clamp quantile")
    hdr["XSASTRCH"] = (str(a["stretch"]), "stretch")
    hdr["XSARESTO"] = (bool(a["restore"]), "bright-source flux above clamp restored")
    hdr["XSARESRT"] = (float(a["restored_rate"]), "[count/s] restored rate")
    hdr["XSARESPX"] = (int(a["restored_pixels"]), "input pixels above the clamp")
    hdr["XSAVERS"] = (str(a["software_version"]), "xsa-enhance version")
    hdr["XSAWCS"] = wcs_note[:68]
    hdr["XSASHA"] = str(a["weights_sha256"])
    hdr["COMMENT"] = a["caveats"]
    sigma = getattr(result, "uncertainty", None)
    hdr["XSAUNC"] = (sigma is not None, "UNCERTAINTY extension (1-sigma) present")
    primary = fits.PrimaryHDU(result.counts.astype(np.float32), header=hdr)
    mask = fits.ImageHDU(result.mask.astype(np.uint8), name="MASK")
    restored = fits.ImageHDU(result.restored.astype(np.uint8), name="RESTORED")
    hdus = [primary, mask, restored]
    if sigma is not None:
        hdus.append(uncertainty_hdu(sigma, a, wcs_hdr, exposure_s=float(result.exposure_s)))
    try:
        fits.HDUList(hdus).writeto(path, overwrite=overwrite)
    except OSError as exc:
        raise InputFileError(path, f"cannot write output: {exc}") from exc


def uncertainty_hdu(sigma: np.ndarray, attrs: Any, wcs_header: Any = None, *,
                    exposure_s: float) -> Any:
    """The ``UNCERTAINTY`` image extension: 1-sigma per pixel (float32, counts for
    ``exposure_s``), the image's WCS and the provenance of the estimate.

    Parameters
    ----------
    sigma : numpy.ndarray
        The uncertainty (``EnhancedImage.uncertainty`` or a stored product's array).
    attrs : mapping
        Provenance with the ``uncertainty_*`` keys of
        :func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`.
    wcs_header : mapping, optional
        WCS keywords of the primary image.
    exposure_s : float
        Exposure the counts (and sigma) correspond to.
    """
    from astropy.io import fits

    hdr = fits.Header()
    if wcs_header is not None:
        for k, v in dict(wcs_header).items():
            hdr[k] = v
    hdr["BUNIT"] = ("count", "1-sigma uncertainty of the counts per pixel")
    hdr["EXPOSURE"] = (float(exposure_s), "[s] exposure the counts correspond to")
    hdr["UNCMETH"] = (str(attrs.get("uncertainty_method", "")), "resampling method")
    hdr["UNCNSAMP"] = (int(attrs.get("uncertainty_n_samples") or 0), "resamples of the input")
    seed = attrs.get("uncertainty_seed")
    hdr["UNCSEED"] = (seed if isinstance(seed, int) else str(seed), "seed of the resampling")
    cal = str(attrs.get("uncertainty_calibration", ""))
    hdr["UNCCAL"] = (cal[:68], "calibration of sigma") if len(cal) <= 40 else cal[:68]
    key = attrs.get("uncertainty_calibration_key")
    if key:
        hdr["UNCCALK"] = str(key)[:68]
    if attrs.get("uncertainty_smooth_px") is not None:
        hdr["UNCSMOO"] = (float(attrs["uncertainty_smooth_px"]),
                          "[input px] bootstrap smoothing")
    hdr["COMMENT"] = ("1-sigma per output pixel: the input's Poisson noise run through the "
                      "network, calibrated on simulations; see docs/uncertainty.md. Does not "
                      "capture features the network invents for every resample.")
    return fits.ImageHDU(np.asarray(sigma, dtype=np.float32), header=hdr, name="UNCERTAINTY")
