"""Image grids in EPIC-pn detector coordinates (DETX, DETY).

The standard grid is the one ``evselect xcolumn=DETX ycolumn=DETY imagebinning=binSize
ximagebinsize=80 yimagebinsize=80`` produces for a full-frame pn exposure: 403 (DETX) x 411
(DETY) pixels of 80 detector units (0.05 arcsec each), i.e. 4 arcsec pixels. Pixel 1 (FITS,
1-based) is centred at DETX = -18243.5, DETY = -17487.5. Numpy arrays are indexed
``[iy, ix]`` with shape ``(ny, nx) = (411, 403)``.

The 2x grid used for super-resolution targets covers the same area with pixels of 40 units:
806 x 822 pixels. The networks pad the 1x grid to 416 x 416 (2x: 832 x 832).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DET_UNIT_ARCSEC",
    "DetGrid",
    "GRID_1X",
    "GRID_2X",
    "grid_for_factor",
]

#: Size of one DETX/DETY (and sky X/Y) unit in arcseconds.
DET_UNIT_ARCSEC: float = 0.05


@dataclass(frozen=True)
class DetGrid:
    """A regular image grid in detector coordinates.

    Parameters
    ----------
    nx, ny : int
        Number of pixels along DETX and DETY.
    binsize : float
        Pixel size in detector units (0.05 arcsec).
    x_edge0, y_edge0 : float
        Lower edge of the first pixel along DETX and DETY, in detector units.
    name : str
        Short name used in provenance (``"1x"``, ``"2x"``).
    """

    nx: int
    ny: int
    binsize: float
    x_edge0: float
    y_edge0: float
    name: str

    @property
    def shape(self) -> tuple[int, int]:
        """Numpy shape ``(ny, nx)``."""
        return (self.ny, self.nx)

    @property
    def pixel_arcsec(self) -> float:
        """Pixel size in arcseconds."""
        return self.binsize * DET_UNIT_ARCSEC

    @property
    def x_edges(self) -> np.ndarray:
        """Pixel edges along DETX (``nx + 1`` values)."""
        return self.x_edge0 + self.binsize * np.arange(self.nx + 1, dtype=np.float64)

    @property
    def y_edges(self) -> np.ndarray:
        """Pixel edges along DETY (``ny + 1`` values)."""
        return self.y_edge0 + self.binsize * np.arange(self.ny + 1, dtype=np.float64)

    @property
    def x_centres(self) -> np.ndarray:
        """Pixel centres along DETX."""
        return self.x_edge0 + self.binsize * (np.arange(self.nx, dtype=np.float64) + 0.5)

    @property
    def y_centres(self) -> np.ndarray:
        """Pixel centres along DETY."""
        return self.y_edge0 + self.binsize * (np.arange(self.ny, dtype=np.float64) + 0.5)

    def pixel_index(self, detx: np.ndarray, dety: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zero-based pixel indices ``(ix, iy)`` of detector positions.

        Positions outside the grid get indices outside ``[0, nx)`` / ``[0, ny)``; callers
        decide whether to drop them. A position exactly on an edge belongs to the pixel above
        it (numpy ``histogram`` convention, except that nothing is special at the last edge).
        """
        ix = np.floor((np.asarray(detx, dtype=np.float64) - self.x_edge0) / self.binsize)
        iy = np.floor((np.asarray(dety, dtype=np.float64) - self.y_edge0) / self.binsize)
        return ix.astype(np.int64), iy.astype(np.int64)

    def det_wcs_keywords(self, *, alt: str = "") -> dict[str, object]:
        """FITS WCS keywords mapping image pixels to DETX/DETY (evselect's ``LTM``/``L`` style).

        Parameters
        ----------
        alt : str
            Alternate WCS letter (``""`` for the primary WCS, ``"L"`` for evselect's
            physical ``CTYPE1L`` convention).
        """
        return {
            f"CTYPE1{alt}": "DETX",
            f"CTYPE2{alt}": "DETY",
            f"CRPIX1{alt}": 1.0,
            f"CRPIX2{alt}": 1.0,
            f"CRVAL1{alt}": float(self.x_edge0 + 0.5 * self.binsize),
            f"CRVAL2{alt}": float(self.y_edge0 + 0.5 * self.binsize),
            f"CDELT1{alt}": float(self.binsize),
            f"CDELT2{alt}": float(self.binsize),
            f"CUNIT1{alt}": "",
            f"CUNIT2{alt}": "",
        }

    def scaled(self, factor: int) -> "DetGrid":
        """The grid covering the same area with pixels ``factor`` times smaller."""
        if factor < 1:
            raise ValueError(f"grid factor must be a positive integer, got {factor}")
        return DetGrid(
            nx=self.nx * factor,
            ny=self.ny * factor,
            binsize=self.binsize / factor,
            x_edge0=self.x_edge0,
            y_edge0=self.y_edge0,
            name=f"{factor}x" if self.name == "1x" else f"{self.name}/{factor}",
        )


#: The standard 403 x 411 grid of 4 arcsec pixels (pixel 1 centred at -18243.5, -17487.5).
GRID_1X: DetGrid = DetGrid(
    nx=403, ny=411, binsize=80.0, x_edge0=-18283.5, y_edge0=-17527.5, name="1x"
)

#: The 806 x 822 grid of 2 arcsec pixels used for super-resolution targets and outputs.
GRID_2X: DetGrid = GRID_1X.scaled(2)


def grid_for_factor(factor: int) -> DetGrid:
    """Return the standard grid for an upsampling factor (1 or 2).

    Parameters
    ----------
    factor : int
        1 for the standard grid, 2 for the super-resolution grid.

    Returns
    -------
    DetGrid
    """
    if factor == 1:
        return GRID_1X
    if factor == 2:
        return GRID_2X
    raise ValueError(f"no standard grid for factor {factor}; expected 1 or 2")
