"""Real XMM-Newton validation images: the (20 ks, full) pairs, their mask and background.

The real-data validation set (``shared/data/xmm-real``, see its README) holds, per
observation, a 20 ks split (``20ks/``) and the full cleaned exposure (``full/``), both counts
images on the 1x DET grid (411 x 403, 4 arcsec pixels) with ``EXPOSURE`` in the primary header.
Every 20 ks split lies inside the full exposure, so ``full - 20ks`` is an *independent* deep
image of the same sky (:attr:`RealObservation.counts_deep`).

:func:`load_real_observations` reads and checks the pairs, :func:`derive_mask` derives the
detector mask of a real image, :func:`input_background_level` its background rate.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from xsa_enhance.errors import InputFileError

__all__ = [
    "RealObservation",
    "load_real_observations",
    "derive_mask",
    "input_background_level",
]

logger = logging.getLogger(__name__)

_FILE_20KS = "20ks"
_FILE_FULL = "full"


@dataclass
class RealObservation:
    """One real observation: a 20 ks split and the full exposure that contains it.

    Attributes
    ----------
    obsid : str
        Ten-digit observation id.
    counts_20ks : numpy.ndarray
        Counts of the 20 ks split (int64, 1x grid).
    exposure_20ks : float
        Its ``EXPOSURE`` in seconds.
    counts_full : numpy.ndarray
        Counts of the full exposure.
    exposure_full : float
        Its ``EXPOSURE``.
    path_20ks, path_full : pathlib.Path
        The files read.
    """

    obsid: str
    counts_20ks: np.ndarray
    exposure_20ks: float
    counts_full: np.ndarray
    exposure_full: float
    path_20ks: Path
    path_full: Path

    @property
    def counts_deep(self) -> np.ndarray:
        """``full - 20ks``: the independent deep counts image."""
        return self.counts_full - self.counts_20ks

    @property
    def exposure_deep(self) -> float:
        """Exposure of the deep image, ``EXPOSURE_full - EXPOSURE_20ks``."""
        return self.exposure_full - self.exposure_20ks


def _read_counts(path: Path) -> tuple[np.ndarray, float]:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            data = hdul[0].data
            exposure = hdul[0].header.get("EXPOSURE")
            if data is None:
                raise InputFileError(path, "the primary HDU holds no image")
            counts = np.array(data, dtype=np.float64)
    except InputFileError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError on bad files
        raise InputFileError(path, f"not a readable FITS image ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})"
                             ) from exc
    if counts.ndim != 2:
        raise InputFileError(path, f"expected a 2-D counts image, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or counts.min() < 0:
        raise InputFileError(path, "counts must be finite and non-negative")
    try:
        exp = float(exposure)
    except (TypeError, ValueError):
        raise InputFileError(path, f"missing or invalid EXPOSURE keyword ({exposure!r})") from None
    if not (math.isfinite(exp) and exp > 0):
        raise InputFileError(path, f"EXPOSURE must be a positive number of seconds, got {exp}")
    return counts.astype(np.int64), exp


def _one_file(folder: Path, obsid: str) -> Path:
    hits = sorted(p for p in folder.glob(f"{obsid}*") if p.name.endswith((".fits", ".fits.gz",
                                                                          ".fit", ".fts")))
    if not hits:
        raise InputFileError(folder / f"{obsid}*.fits[.gz]", "file not found")
    if len(hits) > 1:
        raise InputFileError(hits[1], f"more than one image of {obsid} in {folder} "
                                      f"({', '.join(h.name for h in hits)})")
    return hits[0]


def load_real_observations(directory: str | os.PathLike[str], *,
                           obsids: Sequence[str] | None = None) -> list[RealObservation]:
    """Read the (20 ks, full) pairs of a real-data folder.

    Parameters
    ----------
    directory : path-like
        Folder with ``20ks/`` and ``full/`` sub-folders of ``OBSID*.fits[.gz]`` counts images
        (the layout of ``shared/data/xmm-real``).
    obsids : sequence of str, optional
        Only these observations (default: every obsid found in ``20ks/``).

    Returns
    -------
    list of RealObservation
        Sorted by obsid.

    Raises
    ------
    InputFileError
        Missing folder or file, unreadable FITS, missing ``EXPOSURE``, shapes that differ, a
        20 ks split not contained in the full exposure.
    """
    root = Path(directory)
    d20, dfull = root / _FILE_20KS, root / _FILE_FULL
    for d in (root, d20, dfull):
        if not d.is_dir():
            raise InputFileError(d, "no such folder (expected DIR/20ks and DIR/full with "
                                    "OBSID*.fits[.gz] counts images)")
    found = sorted({p.name[:10] for p in d20.iterdir()
                    if p.name[:10].isdigit() and ".fit" in p.name})
    if obsids:
        wanted = [str(o) for o in obsids]
        missing = [o for o in wanted if o not in found]
        if missing:
            raise InputFileError(d20 / f"{missing[0]}*.fits[.gz]",
                                 f"file not found (obsids present: {', '.join(found) or 'none'})")
        found = sorted(wanted)
    if not found:
        raise InputFileError(d20, "no OBSID*.fits[.gz] counts images found")
    out = []
    for obsid in found:
        p20 = _one_file(d20, obsid)
        pfull = _one_file(dfull, obsid)
        c20, e20 = _read_counts(p20)
        cfull, efull = _read_counts(pfull)
        if c20.shape != cfull.shape:
            raise InputFileError(p20, f"shape {c20.shape} differs from {pfull.name} "
                                      f"{cfull.shape}")
        if efull <= e20:
            raise InputFileError(pfull, f"EXPOSURE {efull:.0f} s is not longer than the 20 ks "
                                        f"split's {e20:.0f} s")
        neg = int(np.count_nonzero(cfull < c20))
        if neg:
            raise InputFileError(p20, f"not contained in {pfull.name}: {neg} pixels have more "
                                      "counts than the full exposure")
        out.append(RealObservation(obsid, c20, e20, cfull, efull, p20, pfull))
        logger.debug("%s: 20 ks %s (%.0f s), full %s (%.0f s)", obsid, p20.name, e20,
                     pfull.name, efull)
    return out


def derive_mask(full_counts: np.ndarray, *, base: np.ndarray | None = None,
                run_px: int = 15, min_expected: float = 6.0) -> np.ndarray:
    """Detector mask of a real image: the instrument mask minus dead columns.

    Real images keep the out-of-field-of-view corner events and have no mask file. The models
    were trained on images multiplied by :func:`xsa_enhance.instrument.mask.detector_mask`
    (field of view, chip gaps), so that is the base. Dead columns are found in the full
    exposure: a pixel is dead when it lies in a vertical run of ``run_px`` pixels without a
    count while the local mean (a ``run_px`` x 9 box) predicts at least ``min_expected``
    counts in the run (chance probability ``exp(-min_expected)``, 0.25 %); empty pixels
    between dead segments of a column less than ``run_px`` apart are added.

    Parameters
    ----------
    full_counts : numpy.ndarray
        Counts of the deepest image available.
    base : numpy.ndarray, optional
        Base mask (default: the instrument mask for the standard grid, all pixels otherwise).
    run_px : int
        Length of the vertical run.
    min_expected : float
        Minimum expected counts in a run to call it dead.

    Returns
    -------
    numpy.ndarray of bool
    """
    c = np.asarray(full_counts, dtype=np.float64)
    if base is None:
        from xsa_enhance.instrument.grid import GRID_1X
        from xsa_enhance.instrument.mask import detector_mask

        base = detector_mask(GRID_1X) if c.shape == GRID_1X.shape else np.ones(c.shape, bool)
    b = np.asarray(base) > 0
    cb = np.where(b, c, 0.0)
    run = ndimage.convolve1d(cb, np.ones(run_px), axis=0, mode="constant")
    num = ndimage.uniform_filter(cb, size=(run_px, 9), mode="constant")
    den = ndimage.uniform_filter(b.astype(np.float64), size=(run_px, 9), mode="constant")
    local = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)
    centres = b & (run < 0.5) & (local * run_px >= min_expected)
    # every pixel of such a run is dead, and short interruptions of a column are filled
    # (closing only adds: scipy's erosion eats the image borders); only empty pixels qualify
    col = np.ones((run_px, 1), bool)
    dead = ndimage.binary_dilation(centres, structure=col)
    dead = (dead | ndimage.binary_closing(dead, structure=col)) & b & (cb < 0.5)
    return b & ~dead


def input_background_level(counts: np.ndarray, exposure_s: float, mask: np.ndarray,
                           *, sigma_px: float = 2.0) -> float:
    """Background rate per pixel of a counts image.

    :func:`xsa_enhance.training.baselines.background_level` (sigma-clipped median) of the
    mask-normalised Gaussian-smoothed rate: on a raw 20 ks image most pixels hold 0 or 1
    counts and the median is quantised (often exactly 0).
    """
    from xsa_enhance.training.baselines import background_level, gaussian_smoothing

    sm = gaussian_smoothing(counts, exposure_s, mask, factor=1, sigma_px=sigma_px)
    return background_level(sm, mask)
