"""Vignetting of the pn telescope (XMM mirror module 3) in the 0.5-2 keV band.

The factor is the effective area relative to the optical axis. In 0.5-2 keV it hardly depends
on energy; the tabulated values (DESIGN.md section 6) agree with the band average of
``XRT3_XAREAEF_0012.CCF`` to about 1 % (checked in the tests). Between the tabulated angles the
factor is interpolated linearly; beyond 15 arcmin it continues with the slope of the last
interval (the corners of the CCD array reach ~20 arcmin but collect no focused photons).
Soft protons are funnelled by the mirrors too but less strongly vignetted; their factor is
modelled as ``vignetting ** SOFT_PROTON_VIGNETTING_POWER``.
"""

from __future__ import annotations

import logging

import numpy as np

from xsa_enhance.instrument.geometry import off_axis_arcmin
from xsa_enhance.instrument.grid import GRID_1X, DetGrid

__all__ = [
    "SOFT_PROTON_VIGNETTING_POWER",
    "VIGNETTING_TABLE",
    "vignetting",
    "vignetting_det",
    "vignetting_map",
]

logger = logging.getLogger(__name__)

#: Off-axis angle (arcmin) and vignetting factor in 0.5-2 keV.
VIGNETTING_TABLE: tuple[tuple[float, float], ...] = (
    (0.0, 1.000),
    (2.0, 0.953),
    (5.0, 0.810),
    (8.0, 0.633),
    (10.0, 0.526),
    (12.0, 0.435),
    (14.0, 0.358),
    (15.0, 0.329),
)

#: Soft-proton vignetting is modelled as the photon vignetting to this power (flatter).
SOFT_PROTON_VIGNETTING_POWER: float = 0.5

_THETA = np.array([t for t, _ in VIGNETTING_TABLE])
_VIGN = np.array([v for _, v in VIGNETTING_TABLE])
_SLOPE_END = (_VIGN[-1] - _VIGN[-2]) / (_THETA[-1] - _THETA[-2])


def vignetting(theta_arcmin: np.ndarray | float) -> np.ndarray:
    """Vignetting factor at off-axis angles ``theta`` (arcmin) in 0.5-2 keV.

    Parameters
    ----------
    theta_arcmin : float or array
        Off-axis angle from the optical axis.

    Returns
    -------
    ndarray
        Factor in ``(0, 1]``; at least 0.05 far out.
    """
    t = np.asarray(theta_arcmin, dtype=np.float64)
    v = np.interp(t, _THETA, _VIGN)
    beyond = t > _THETA[-1]
    v = np.where(beyond, _VIGN[-1] + _SLOPE_END * (t - _THETA[-1]), v)
    return np.maximum(v, 0.05)


def vignetting_det(detx: np.ndarray | float, dety: np.ndarray | float) -> np.ndarray:
    """Vignetting factor at DET positions."""
    return vignetting(off_axis_arcmin(detx, dety))


def vignetting_map(grid: DetGrid = GRID_1X) -> np.ndarray:
    """Vignetting factor at the pixel centres of a DET grid, shape ``grid.shape``."""
    xx, yy = np.meshgrid(grid.x_centres, grid.y_centres)
    return vignetting_det(xx, yy)
