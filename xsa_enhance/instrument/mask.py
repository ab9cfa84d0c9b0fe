"""The EPIC-pn detector mask on a DET image grid.

A pixel of the mask is True when at least ``threshold`` of its area can record good events:
on a CCD, not in an edge column (RAWX 1 and 64) or the edge row next to the array centre
(RAWY 200), in a transmitted row (RAWY >= 13), and inside the 15 arcmin field-of-view circle.
Edge pixels do record events but these carry a non-zero ``FLAG`` and are removed by the
standard ``FLAG == 0`` screening, which is why they are not part of the mask.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from xsa_enhance.instrument.geometry import N_RAWX, N_RAWY, RAWY_MIN_TRANSMITTED, det_to_raw, in_fov
from xsa_enhance.instrument.grid import GRID_1X, DetGrid

__all__ = ["detector_mask", "good_pixel", "mask_coverage"]

logger = logging.getLogger(__name__)


def good_pixel(detx: np.ndarray, dety: np.ndarray) -> np.ndarray:
    """True where a DET position falls on a good, transmitted pixel inside the field of view.

    Parameters
    ----------
    detx, dety : array
        DET coordinates.

    Returns
    -------
    ndarray of bool
    """
    ccdnr, rawx, rawy = det_to_raw(detx, dety)
    ok = (
        (ccdnr > 0)
        & (rawx >= 2)
        & (rawx <= N_RAWX - 1)
        & (rawy >= RAWY_MIN_TRANSMITTED)
        & (rawy <= N_RAWY - 1)
    )
    return ok & in_fov(detx, dety)


@lru_cache(maxsize=8)
def _coverage(grid: DetGrid, oversample: int) -> np.ndarray:
    sub = (np.arange(oversample) + 0.5) / oversample
    xs = (grid.x_edge0 + grid.binsize * (np.arange(grid.nx)[:, None] + sub[None, :])).ravel()
    ys = (grid.y_edge0 + grid.binsize * (np.arange(grid.ny)[:, None] + sub[None, :])).ravel()
    xx, yy = np.meshgrid(xs, ys)
    ok = good_pixel(xx.ravel(), yy.ravel()).reshape(grid.ny, oversample, grid.nx, oversample)
    cov = ok.mean(axis=(1, 3))
    cov.setflags(write=False)
    return cov


def mask_coverage(grid: DetGrid = GRID_1X, *, oversample: int = 4) -> np.ndarray:
    """Fraction of each pixel's area covered by good detector pixels.

    Parameters
    ----------
    grid : DetGrid
        The image grid.
    oversample : int
        Sub-samples per pixel and axis used to integrate the area.

    Returns
    -------
    ndarray of float64, shape ``grid.shape``
    """
    return _coverage(grid, int(oversample)).copy()


def detector_mask(
    grid: DetGrid = GRID_1X, *, threshold: float = 0.5, oversample: int = 4
) -> np.ndarray:
    """The detector mask: pixels that can record good events.

    Parameters
    ----------
    grid : DetGrid
        Image grid (``GRID_1X`` or ``GRID_2X``, or any other DET grid).
    threshold : float
        Minimum fraction of a pixel's area that must be good.
    oversample : int
        Sub-samples per pixel and axis used to integrate the area.

    Returns
    -------
    ndarray of bool, shape ``grid.shape``
    """
    return _coverage(grid, int(oversample)) >= threshold
