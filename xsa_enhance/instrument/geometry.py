"""EPIC-pn focal-plane geometry: CCD layout and RAW <-> DET <-> sky conversions.

The pn camera is one wafer of 12 CCDs in 4 quadrants of 3 CCDs. Each CCD has 64 (RAWX) x 200
(RAWY) pixels of 150 micron = 4.12838 arcsec = 82.5676 detector units (DETX/DETY are in units
of 0.05 arcsec). The CCDs are laid out as 6 columns along DETX and 2 rows along DETY; the
read-out nodes sit at the outer edges of the array, so ``RAWY = 1`` is at the outer edge and the
rows ``RAWY <= 12`` (not transmitted in full-frame modes) form the straight top and bottom edges
of the valid area. The CCDs of the upper row have RAWX increasing with DETX and RAWY
increasing towards the array centre (decreasing DETY); the lower row is the same layout rotated
by 180 degrees.

The numbers (array centre, the small inter-CCD gaps) are chosen so that the detector mask of
:mod:`xsa_enhance.instrument.mask` reproduces the mask of a real full-frame exposure map; see
``docs/simulator.md``. The CCD numbering follows the quadrant convention (quadrant q holds CCDs
3q+1 .. 3q+3); the left-to-right order of CCDs inside the rows is approximate.

Sky coordinates follow the PPS event-list convention: X/Y in 0.05 arcsec pixels of a tangent
plane projection centred on the nominal pointing at reference pixel 25921 (keywords
``REFXCRVL``/``REFYCRVL``/``REFXCRPX``/``REFXCDLT``...). X grows towards the West (decreasing
RA), Y towards the North. This simulator uses a fixed attitude (no wobble, no boresight
misalignment): DET (0, 0) maps onto the pointing direction, and the DET axes are rotated on
the sky by the position angle ``PA_PNT``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from xsa_enhance.instrument.grid import DET_UNIT_ARCSEC

__all__ = [
    "CCD",
    "CCD_LAYOUT",
    "FOV_CENTRE_DET",
    "FOV_RADIUS_DET",
    "N_RAWX",
    "N_RAWY",
    "OPTICAL_AXIS_DET",
    "PIXEL_ARCSEC",
    "PIXEL_DET",
    "RAWY_MIN_TRANSMITTED",
    "SKY_PIXEL_DEG",
    "SKY_REFPIX",
    "SKY_XMAX",
    "ccd_by_number",
    "det_to_raw",
    "det_to_sky",
    "in_fov",
    "off_axis_arcmin",
    "radec_to_sky",
    "raw_to_det",
    "sky_to_det",
    "sky_to_radec",
    "sky_wcs_keywords",
]

logger = logging.getLogger(__name__)

#: Number of columns (RAWX) and rows (RAWY) of one pn CCD.
N_RAWX: int = 64
N_RAWY: int = 200
#: First row transmitted in (extended) full-frame mode; rows 1..12 are not transmitted.
RAWY_MIN_TRANSMITTED: int = 13
#: Pixel size of the pn CCDs (150 micron).
PIXEL_ARCSEC: float = 4.12838
PIXEL_DET: float = PIXEL_ARCSEC / DET_UNIT_ARCSEC  # 82.5676 detector units

#: Centre of the CCD array in DET coordinates (between CCD columns 3 and 4 and the two rows).
ARRAY_CENTRE_DET: tuple[float, float] = (-2220.0, -1127.0)
#: Distance between the left edges of neighbouring CCD columns along DETX (gap ~116 units).
CCD_PITCH_X: float = 5400.0
#: Gap between the two CCD rows along DETY (detector units).
CCD_GAP_Y: float = 0.0

#: Field-of-view circle (15 arcmin radius); events outside it are "corner" events.
FOV_CENTRE_DET: tuple[float, float] = (-2200.0, -1110.0)
FOV_RADIUS_DET: float = 17980.0
#: Optical axis (vignetting 1, sharpest PSF) in DET coordinates.
OPTICAL_AXIS_DET: tuple[float, float] = (880.0, -50.0)

#: Sky pixel reference (X/Y of the nominal pointing), size and maximum (DESIGN.md section 4).
SKY_REFPIX: float = 25921.0
SKY_PIXEL_DEG: float = 1.3888889e-5
SKY_XMAX: int = 51840


@dataclass(frozen=True)
class CCD:
    """One pn CCD and where it sits in DET coordinates.

    Parameters
    ----------
    ccdnr : int
        CCD number 1..12 (``CCDNR`` column).
    quadrant : int
        Quadrant 0..3.
    column : int
        Column of the array along DETX, 0 (left) .. 5.
    upper : bool
        True for the upper row (larger DETY).
    x0, y0 : float
        DET coordinates of the outer corner of pixel (RAWX=0.5, RAWY=0.5), i.e. where the
        raw pixel grid starts.
    sx, sy : int
        Direction (+1/-1) in which DETX grows with RAWX and DETY grows with RAWY.
    """

    ccdnr: int
    quadrant: int
    column: int
    upper: bool
    x0: float
    y0: float
    sx: int
    sy: int

    def bounds(self) -> tuple[float, float, float, float]:
        """DET bounds ``(xmin, xmax, ymin, ymax)`` of the whole CCD (all 64 x 200 pixels)."""
        x1 = self.x0 + self.sx * N_RAWX * PIXEL_DET
        y1 = self.y0 + self.sy * N_RAWY * PIXEL_DET
        return (min(self.x0, x1), max(self.x0, x1), min(self.y0, y1), max(self.y0, y1))


def _build_layout() -> tuple[CCD, ...]:
    cx, cy = ARRAY_CENTRE_DET
    width = N_RAWX * PIXEL_DET
    height = N_RAWY * PIXEL_DET
    left0 = cx - 2.5 * CCD_PITCH_X - width / 2.0
    ccds: list[CCD] = []
    # Upper row, left to right: CCDs 1..6 (quadrants 0 and 1).
    for col in range(6):
        left = left0 + col * CCD_PITCH_X
        nr = col + 1
        # RAWY=0.5 at the outer (top) edge, RAWY grows downwards.
        ccds.append(
            CCD(nr, (nr - 1) // 3, col, True, left, cy + CCD_GAP_Y / 2 + height, +1, -1)
        )
    # Lower row: the upper row rotated by 180 degrees (CCD k+6 opposite CCD k).
    for col in range(6):
        nr = 6 + (6 - col)  # column 0 -> CCD 12, column 5 -> CCD 7
        left = left0 + col * CCD_PITCH_X
        ccds.append(
            CCD(nr, (nr - 1) // 3, col, False, left + width, cy - CCD_GAP_Y / 2 - height, -1, +1)
        )
    ccds.sort(key=lambda c: c.ccdnr)
    return tuple(ccds)


#: The 12 CCDs, ordered by CCD number (index ``ccdnr - 1``).
CCD_LAYOUT: tuple[CCD, ...] = _build_layout()

_X0 = np.array([c.x0 for c in CCD_LAYOUT])
_Y0 = np.array([c.y0 for c in CCD_LAYOUT])
_SX = np.array([c.sx for c in CCD_LAYOUT], dtype=np.float64)
_SY = np.array([c.sy for c in CCD_LAYOUT], dtype=np.float64)
_COL_LEFT = np.array(sorted({c.bounds()[0] for c in CCD_LAYOUT}))
#: CCD index (ccdnr - 1) by [upper row?, column].
_CCD_INDEX = np.zeros((2, 6), dtype=np.int64)
for _c in CCD_LAYOUT:
    _CCD_INDEX[int(_c.upper), _c.column] = _c.ccdnr - 1


def ccd_by_number(ccdnr: int) -> CCD:
    """Return the :class:`CCD` with number ``ccdnr`` (1..12)."""
    if not 1 <= int(ccdnr) <= 12:
        raise ValueError(f"pn CCD numbers run from 1 to 12, got {ccdnr}")
    return CCD_LAYOUT[int(ccdnr) - 1]


def raw_to_det(
    ccdnr: np.ndarray | int, rawx: np.ndarray | float, rawy: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Convert raw CCD coordinates to DET coordinates.

    Parameters
    ----------
    ccdnr : int or array of int
        CCD numbers 1..12.
    rawx, rawy : float or array
        Raw pixel coordinates; pixel ``n`` spans ``[n - 0.5, n + 0.5)``, so integer values give
        pixel centres and fractional values positions inside a pixel.

    Returns
    -------
    detx, dety : ndarray of float64
        DET coordinates in 0.05 arcsec units.
    """
    idx = np.asarray(ccdnr, dtype=np.int64) - 1
    if np.any((idx < 0) | (idx > 11)):
        raise ValueError("CCDNR must be in 1..12")
    rx = np.asarray(rawx, dtype=np.float64)
    ry = np.asarray(rawy, dtype=np.float64)
    detx = _X0[idx] + _SX[idx] * (rx - 0.5) * PIXEL_DET
    dety = _Y0[idx] + _SY[idx] * (ry - 0.5) * PIXEL_DET
    return detx, dety


def det_to_raw(
    detx: np.ndarray | float, dety: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find the CCD and raw pixel of DET positions.

    Parameters
    ----------
    detx, dety : float or array
        DET coordinates.

    Returns
    -------
    ccdnr, rawx, rawy : ndarray of int64
        CCD number (0 where the position falls on no CCD, e.g. in a gap or outside the array)
        and the 1-based raw pixel (0 where ``ccdnr`` is 0).
    """
    x = np.atleast_1d(np.asarray(detx, dtype=np.float64))
    y = np.atleast_1d(np.asarray(dety, dtype=np.float64))
    x, y = np.broadcast_arrays(x, y)
    left0 = _COL_LEFT[0]
    col = np.floor((x - left0) / CCD_PITCH_X).astype(np.int64)
    upper = y >= ARRAY_CENTRE_DET[1]
    colc = np.clip(col, 0, 5)
    idx = _CCD_INDEX[upper.astype(np.int64), colc]
    fx = (x - _X0[idx]) * _SX[idx] / PIXEL_DET
    fy = (y - _Y0[idx]) * _SY[idx] / PIXEL_DET
    on = (col >= 0) & (col <= 5) & (fx >= 0) & (fx < N_RAWX) & (fy >= 0) & (fy < N_RAWY)
    ccdnr = np.where(on, idx + 1, 0).astype(np.int64)
    rawx = np.where(on, np.floor(np.where(on, fx, 0.0)).astype(np.int64) + 1, 0)
    rawy = np.where(on, np.floor(np.where(on, fy, 0.0)).astype(np.int64) + 1, 0)
    if np.ndim(detx) == 0 and np.ndim(dety) == 0:
        return ccdnr[0], rawx[0], rawy[0]
    return ccdnr, rawx, rawy


def in_fov(detx: np.ndarray | float, dety: np.ndarray | float) -> np.ndarray:
    """True where a DET position lies inside the 15 arcmin field-of-view circle."""
    dx = np.asarray(detx, dtype=np.float64) - FOV_CENTRE_DET[0]
    dy = np.asarray(dety, dtype=np.float64) - FOV_CENTRE_DET[1]
    return dx * dx + dy * dy <= FOV_RADIUS_DET * FOV_RADIUS_DET


def off_axis_arcmin(detx: np.ndarray | float, dety: np.ndarray | float) -> np.ndarray:
    """Off-axis angle (arcmin) of DET positions from the optical axis."""
    dx = np.asarray(detx, dtype=np.float64) - OPTICAL_AXIS_DET[0]
    dy = np.asarray(dety, dtype=np.float64) - OPTICAL_AXIS_DET[1]
    return np.hypot(dx, dy) * DET_UNIT_ARCSEC / 60.0


def det_to_sky(
    detx: np.ndarray | float, dety: np.ndarray | float, *, pa_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Convert DET coordinates to sky pixel coordinates X/Y (0.05 arcsec, float).

    Parameters
    ----------
    detx, dety : float or array
        DET coordinates.
    pa_deg : float
        Position angle ``PA_PNT`` of the pointing in degrees.

    Returns
    -------
    x, y : ndarray
        Sky pixel coordinates; the pointing direction is at ``(25921, 25921)``.
    """
    t = np.deg2rad(pa_deg)
    c, s = np.cos(t), np.sin(t)
    dx = np.asarray(detx, dtype=np.float64)
    dy = np.asarray(dety, dtype=np.float64)
    return SKY_REFPIX + c * dx - s * dy, SKY_REFPIX + s * dx + c * dy


def sky_to_det(
    x: np.ndarray | float, y: np.ndarray | float, *, pa_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`det_to_sky`."""
    t = np.deg2rad(pa_deg)
    c, s = np.cos(t), np.sin(t)
    dx = np.asarray(x, dtype=np.float64) - SKY_REFPIX
    dy = np.asarray(y, dtype=np.float64) - SKY_REFPIX
    return c * dx + s * dy, -s * dx + c * dy


def sky_to_radec(
    x: np.ndarray | float, y: np.ndarray | float, *, ra_pnt: float, dec_pnt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sky pixels X/Y to RA/Dec (degrees) with the gnomonic (TAN) projection of the REF* WCS.

    Parameters
    ----------
    x, y : float or array
        Sky pixel coordinates.
    ra_pnt, dec_pnt : float
        The projection centre (``REFXCRVL``, ``REFYCRVL``) in degrees.
    """
    xi = np.deg2rad((np.asarray(x, dtype=np.float64) - SKY_REFPIX) * -SKY_PIXEL_DEG)
    eta = np.deg2rad((np.asarray(y, dtype=np.float64) - SKY_REFPIX) * SKY_PIXEL_DEG)
    a0, d0 = np.deg2rad(ra_pnt), np.deg2rad(dec_pnt)
    denom = np.cos(d0) - eta * np.sin(d0)
    ra = a0 + np.arctan2(xi, denom)
    dec = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, denom))
    return np.rad2deg(ra) % 360.0, np.rad2deg(dec)


def radec_to_sky(
    ra: np.ndarray | float, dec: np.ndarray | float, *, ra_pnt: float, dec_pnt: float
) -> tuple[np.ndarray, np.ndarray]:
    """RA/Dec (degrees) to sky pixels X/Y; inverse of :func:`sky_to_radec`."""
    a = np.deg2rad(np.asarray(ra, dtype=np.float64))
    d = np.deg2rad(np.asarray(dec, dtype=np.float64))
    a0, d0 = np.deg2rad(ra_pnt), np.deg2rad(dec_pnt)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    x = SKY_REFPIX + np.rad2deg(xi) / -SKY_PIXEL_DEG
    y = SKY_REFPIX + np.rad2deg(eta) / SKY_PIXEL_DEG
    return x, y


def sky_wcs_keywords(*, ra_nom: float, dec_nom: float) -> dict[str, tuple[object, str]]:
    """The REF* sky WCS keywords of a PPS event list, with comments.

    Parameters
    ----------
    ra_nom, dec_nom : float
        Nominal pointing (projection centre) in degrees.

    Returns
    -------
    dict
        Keyword -> (value, comment).
    """
    return {
        "REFXCTYP": ("RA---TAN", "Projection type for X"),
        "REFXCRPX": (SKY_REFPIX, "Reference pixel for X"),
        "REFXCRVL": (float(ra_nom), "[deg] Reference value for X (RA)"),
        "REFXCDLT": (-SKY_PIXEL_DEG, "[deg] Pixel size for X"),
        "REFXLMIN": (1, "Minimum legal value for X"),
        "REFXLMAX": (SKY_XMAX, "Maximum legal value for X"),
        "REFXDMIN": (1, "Minimum data value for X"),
        "REFXDMAX": (SKY_XMAX, "Maximum data value for X"),
        "REFXCUNI": ("deg", "Unit of the X reference value"),
        "REFYCTYP": ("DEC--TAN", "Projection type for Y"),
        "REFYCRPX": (SKY_REFPIX, "Reference pixel for Y"),
        "REFYCRVL": (float(dec_nom), "[deg] Reference value for Y (Dec)"),
        "REFYCDLT": (SKY_PIXEL_DEG, "[deg] Pixel size for Y"),
        "REFYLMIN": (1, "Minimum legal value for Y"),
        "REFYLMAX": (SKY_XMAX, "Maximum legal value for Y"),
        "REFYDMIN": (1, "Minimum data value for Y"),
        "REFYDMAX": (SKY_XMAX, "Maximum data value for Y"),
        "REFYCUNI": ("deg", "Unit of the Y reference value"),
    }
