"""Source detection on the stored slices and their enhanced products, as the pipeline runs it."""

from __future__ import annotations

from typing import Any

import numpy as np

from xsa_enhance.detect.find import config_for_mode, detect_sources

__all__ = ["pointing_wcs", "detect_slice_sources"]


def pointing_wcs(ra_pnt: Any, dec_pnt: Any, pa_pnt: Any, shape: tuple[int, int]) -> Any:
    """The sky WCS of a standard 1x DET image about the pointing (as ``xsa-enhance export``
    writes it, :func:`xsa_enhance.formats.skywcs.sky_wcs`), or None without a pointing."""
    from xsa_enhance.formats.skywcs import projection_centre, sky_wcs
    from xsa_enhance.instrument.grid import GRID_1X

    centre = projection_centre({"RA_PNT": ra_pnt, "DEC_PNT": dec_pnt, "PA_PNT": pa_pnt})
    if tuple(shape) != GRID_1X.shape or centre is None:
        return None
    return sky_wcs(GRID_1X, ra=centre[0], dec=centre[1], pa=centre[2])


def detect_slice_sources(counts: np.ndarray, exposure_s: float, mask: np.ndarray, *,
                         attrs: dict[str, Any], output: Any = None, kind: str = "input",
                         factor: int = 1) -> Any:
    """Detect sources on a stored slice (``output`` None) or on an enhanced product of it.

    The defaults of the detection mode (:func:`config_for_mode`) and the sky WCS of the
    slice's pointing, as the pipeline uses them.

    Parameters
    ----------
    counts, exposure_s, mask
        The slice image (1x grid).
    attrs : dict
        Slice attributes (``ra_pnt``, ``dec_pnt``, ``pa_pnt`` for RA/DEC).
    output : EnhancedImage, optional
        The model output (``counts``, ``exposure_s``, ``restored``, ``uncertainty``).
    kind : str
        ``input``, ``dn`` or ``sr``.
    factor : int
        Output grid factor.

    Returns
    -------
    astropy.table.Table
        The source table of :func:`~xsa_enhance.detect.find.detect_sources`.
    """
    wcs = pointing_wcs(attrs.get("ra_pnt"), attrs.get("dec_pnt"), attrs.get("pa_pnt"),
                       np.shape(counts))
    m = np.asarray(mask) > 0
    if output is None:
        return detect_sources(counts, exposure_s, m, config=config_for_mode("input"), wcs=wcs)
    return detect_sources(counts, exposure_s, m, config=config_for_mode(kind),
                          detection_image=output.counts,
                          detection_exposure_s=float(output.exposure_s),
                          detection_factor=int(factor), background_free=kind == "sr",
                          restored=output.restored,
                          uncertainty=getattr(output, "uncertainty", None), wcs=wcs)
