"""The world coordinate systems of an image on the EPIC-pn DET grid.

Every image this package writes (``xsa-enhance image``/``slice``, ``enhance``, ``export``)
carries the same two WCS, built here and nowhere else:

* the primary **sky WCS** (:func:`sky_wcs_header`): ``RA---TAN``/``DEC--TAN``, ICRS, a ``CD``
  matrix. It writes the instrument model of :mod:`xsa_enhance.instrument.geometry` as a TAN
  WCS: DET (0, 0) on the projection centre, the DET axes rotated on the sky by ``PA_PNT``
  (:func:`~xsa_enhance.instrument.geometry.det_to_sky`), 0.05" sky pixels projected about the
  centre (:func:`~xsa_enhance.instrument.geometry.sky_to_radec`). The projection centre is
  chosen by :func:`projection_centre`. See ``docs/events.md`` ("The image WCS") for its
  accuracy.
* the alternate WCS ``L`` (``WCSNAMEL='PHYSICAL'``) plus IRAF's ``LTV``/``LTM``
  (:func:`det_wcs_cards`): pixel -> DETX/DETY exactly as evselect writes it, so ds9's
  "physical" coordinates are DETX/DETY.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from xsa_enhance.instrument.geometry import SKY_PIXEL_DEG, det_to_sky
from xsa_enhance.instrument.grid import DetGrid

__all__ = ["sky_wcs_header", "sky_wcs", "projection_centre", "det_wcs_cards"]

logger = logging.getLogger(__name__)


def sky_wcs_header(grid: DetGrid, *, ra: float, dec: float, pa: float) -> dict[str, object]:
    """The sky TAN WCS keywords (ICRS) of an image on a DET grid.

    The linear part comes from :func:`xsa_enhance.instrument.geometry.det_to_sky`, so the
    DET -> sky convention lives in one place: DET (0, 0) sits on ``(ra, dec)`` and the DET
    axes are rotated by ``pa``; sky X grows to the West (decreasing RA), Y to the North.

    Parameters
    ----------
    grid : DetGrid
        The image grid (any binning, e.g. ``GRID_1X`` or ``GRID_2X``).
    ra, dec : float
        Projection centre in degrees (see :func:`projection_centre`).
    pa : float
        Position angle ``PA_PNT`` in degrees.

    Returns
    -------
    dict
        ``WCSAXES``, ``CTYPEi``, ``CUNITi``, ``CRPIXi``, ``CRVALi``, ``CDi_j``, ``RADESYS``
        (``'ICRS'``) and ``EQUINOX``.
    """
    x0, y0 = det_to_sky(0.0, 0.0, pa_deg=pa)
    x1, y1 = det_to_sky(1.0, 0.0, pa_deg=pa)
    x2, y2 = det_to_sky(0.0, 1.0, pa_deg=pa)
    # sky pixel -> intermediate world coords (deg): xi = -(X - ref) * s, eta = (Y - ref) * s
    s = SKY_PIXEL_DEG * grid.binsize  # per image pixel
    # image pixel p (1-based) is centred at DET edge0 + binsize * (p - 0.5)
    return {
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRPIX1": (0.0 - grid.x_edge0) / grid.binsize + 0.5,
        "CRPIX2": (0.0 - grid.y_edge0) / grid.binsize + 0.5,
        "CRVAL1": float(ra),
        "CRVAL2": float(dec),
        "CD1_1": -float(x1 - x0) * s,
        "CD1_2": -float(x2 - x0) * s,
        "CD2_1": float(y1 - y0) * s,
        "CD2_2": float(y2 - y0) * s,
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
    }


def sky_wcs(grid: DetGrid, *, ra: float, dec: float, pa: float) -> Any:
    """The sky WCS of :func:`sky_wcs_header` as an :class:`astropy.wcs.WCS`.

    Parameters
    ----------
    grid : DetGrid
        The image grid.
    ra, dec : float
        Projection centre in degrees.
    pa : float
        Position angle ``PA_PNT`` in degrees.

    Returns
    -------
    astropy.wcs.WCS
        A celestial (RA/Dec, ICRS) WCS of the image's 0-based pixels.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    return WCS(fits.Header(sky_wcs_header(grid, ra=ra, dec=dec, pa=pa)))


def projection_centre(keys: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """The projection centre and position angle of an image from its header keywords.

    The centre is the event list's sky-pixel reference ``REFXCRVL``/``REFYCRVL`` when given,
    else the pointing ``RA_PNT``/``DEC_PNT``; the angle is ``PA_PNT``. (The simulator writes
    the same values in both; the product store keeps only the pointing.)

    Parameters
    ----------
    keys : mapping
        Header keywords (a FITS header or a dict).

    Returns
    -------
    tuple of float or None
        ``(ra, dec, pa)`` in degrees, or None when one of them is missing or not finite.
    """
    try:
        ra = float(keys.get("REFXCRVL", keys.get("RA_PNT")))  # type: ignore[arg-type]
        dec = float(keys.get("REFYCRVL", keys.get("DEC_PNT")))  # type: ignore[arg-type]
        pa = float(keys.get("PA_PNT"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (ra, dec, pa)):
        return None
    return ra, dec, pa


def det_wcs_cards(grid: DetGrid, *, primary: bool) -> list[tuple[str, object, str]]:
    """The DET (physical) WCS of an image as ``(keyword, value, comment)`` cards.

    Parameters
    ----------
    grid : DetGrid
        The image grid.
    primary : bool
        Also make DETX/DETY the primary WCS (for an image without a sky WCS).

    Returns
    -------
    list of tuple
        The alternate WCS ``L`` (``WCSNAMEL='PHYSICAL'``) and evselect's ``LTV``/``LTM``
        keywords (``image = LTM * physical + LTV``), preceded by the primary DET WCS when
        ``primary``.
    """
    cards: list[tuple[str, object, str]] = []
    if primary:
        for k, v in grid.det_wcs_keywords(alt="").items():
            cards.append((k, v, "DET WCS (no sky pointing known)"))
    for k, v in grid.det_wcs_keywords(alt="L").items():
        cards.append((k, v, "physical WCS: pixel -> DETX/DETY"))
    cards.append(("WCSNAMEL", "PHYSICAL", "WCS L name"))
    cards.append(("WCSAXESL", 2, "No. of axes for WCS L"))
    ltm = 1.0 / grid.binsize
    cards.append(("LTV1", 1.0 - ltm * (grid.x_edge0 + 0.5 * grid.binsize), ""))
    cards.append(("LTV2", 1.0 - ltm * (grid.y_edge0 + 0.5 * grid.binsize), ""))
    cards.append(("LTM1_1", ltm, ""))
    cards.append(("LTM1_2", 0.0, ""))
    cards.append(("LTM2_1", 0.0, ""))
    cards.append(("LTM2_2", ltm, ""))
    return cards
