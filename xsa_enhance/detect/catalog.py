"""Rows of the product store's ``sources`` catalog from detection tables (pipeline use)."""

from __future__ import annotations

from typing import Any

import numpy as np

from xsa_enhance.detect.find import config_for_mode, detect_sources

__all__ = ["pointing_wcs", "detect_rows"]


def pointing_wcs(ra_pnt: Any, dec_pnt: Any, pa_pnt: Any, shape: tuple[int, int]) -> Any:
    """The sky WCS of a standard 1x DET image about the pointing (as ``xsa-enhance export``
    writes it, :func:`xsa_enhance.formats.skywcs.sky_wcs`), or None without a pointing."""
    from xsa_enhance.formats.skywcs import projection_centre, sky_wcs
    from xsa_enhance.instrument.grid import GRID_1X

    centre = projection_centre({"RA_PNT": ra_pnt, "DEC_PNT": dec_pnt, "PA_PNT": pa_pnt})
    if tuple(shape) != GRID_1X.shape or centre is None:
        return None
    return sky_wcs(GRID_1X, ra=centre[0], dec=centre[1], pa=centre[2])


def detect_rows(counts: np.ndarray, exposure_s: float, mask: np.ndarray, *,
                base: dict[str, Any], attrs: dict[str, Any], output: Any = None,
                kind: str = "input", factor: int = 1) -> list[dict[str, Any]]:
    """Detect sources on a slice (``output`` None) or on an enhanced product of it.

    Parameters
    ----------
    counts, exposure_s, mask
        The slice image (1x grid).
    base : dict
        ``obsid``, ``expidstr``, ``slice_id``, ``length_ks``, ``model``, ``clamp_mode``.
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
    list of dict
        ``sources`` catalog rows without ``run_id`` / ``created``.
    """
    wcs = pointing_wcs(attrs.get("ra_pnt"), attrs.get("dec_pnt"), attrs.get("pa_pnt"),
                       np.shape(counts))
    m = np.asarray(mask) > 0
    if output is None:
        tab = detect_sources(counts, exposure_s, m, config=config_for_mode("input"), wcs=wcs)
    else:
        tab = detect_sources(counts, exposure_s, m, config=config_for_mode(kind),
                             detection_image=output.counts,
                             detection_exposure_s=float(output.exposure_s),
                             detection_factor=int(factor), background_free=kind == "sr",
                             restored=output.restored,
                             uncertainty=getattr(output, "uncertainty", None), wcs=wcs)
    rows = []
    for r in tab:
        rows.append({
            **base, "kind": kind, "source_id": int(r["ID"]), "x": float(r["X"]),
            "y": float(r["Y"]), "ra": float(r["RA"]), "dec": float(r["DEC"]),
            "rate": float(r["RATE"]), "rate_err": float(r["RATE_ERR"]),
            "signif": float(r["SIGNIF"]), "det_signif": float(r["DET_SIGNIF"]),
            "extent": float(r["EXTENT"]), "pointlike": bool(r["POINTLIKE"]),
            "flags": int(r["FLAGS"]),
        })
    return rows
