"""Cutting the clean exposure into slices of fixed clean time (DESIGN.md section 5).

For a clean exposure ``T`` and a slice length ``L``, there are ``floor(T / L)`` consecutive,
non-overlapping slices; slice ``i`` holds the clean time ``[i L, (i+1) L)`` counted from the
start of the first clean GTI. Each slice boundary is mapped back to a mission time ``B_i``,
and slice ``i`` is the clean GTIs clipped to ``[B_i, B_{i+1})``, so its exposure is exactly
``L`` (up to float rounding) and events are assigned by comparing their times with the
``B_i`` -- the very numbers that define the slice GTIs, so counts are conserved exactly.
With ``lengths_ks="all"`` every multiple of ``unit_ks`` (10 ks) up to ``T`` is used: 40 ks
of clean time gives 4 x 10, 2 x 20, 1 x 30 and 1 x 40 ks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from xsa_enhance.events.gti import gti_exposure, intersect_gtis, normalize_gtis
from xsa_enhance.events.types import Slice

__all__ = ["make_slices", "slice_lengths", "slice_boundaries"]

logger = logging.getLogger(__name__)

# tolerance (s) when deciding whether T holds n slices: GTI sums carry float rounding
_EPS_S = 1e-6


def slice_lengths(
    clean_exposure_s: float, *, lengths_ks: Sequence[float] | str = "all", unit_ks: float = 10.0
) -> list[float]:
    """The slice lengths (ks) that fit at least once in the clean exposure.

    Parameters
    ----------
    clean_exposure_s : float
        Clean exposure in seconds.
    lengths_ks : sequence of float or "all"
        Requested lengths, or every multiple of ``unit_ks``.
    unit_ks : float
        Slice unit for ``"all"``.

    Returns
    -------
    list of float
        Sorted lengths in ks with ``length * 1000 <= clean_exposure_s``.
    """
    if isinstance(lengths_ks, str):
        if lengths_ks != "all":
            raise ValueError(f"lengths_ks must be 'all' or numbers, got {lengths_ks!r}")
        k = int(math.floor((clean_exposure_s + _EPS_S) / (unit_ks * 1000.0)))
        return [unit_ks * (i + 1) for i in range(k)]
    return sorted(float(v) for v in lengths_ks if float(v) * 1000.0 <= clean_exposure_s + _EPS_S)


def slice_boundaries(clean_gtis: np.ndarray, length_s: float, n: int) -> np.ndarray:
    """Mission times ``B_0 .. B_n`` at which the clean time reaches ``i * length_s``.

    Parameters
    ----------
    clean_gtis : ndarray, shape (m, 2)
        Normalized clean GTIs.
    length_s : float
        Slice length in seconds.
    n : int
        Number of slices.

    Returns
    -------
    ndarray, shape (n + 1,)
        ``B_0`` is the first GTI start; ``B_n`` the last GTI stop when the slices use up all of
        the clean time.
    """
    starts, stops = clean_gtis[:, 0], clean_gtis[:, 1]
    cum_end = np.cumsum(stops - starts)
    cum_start = cum_end - (stops - starts)
    tau = length_s * np.arange(n + 1, dtype=np.float64)
    # the GTI holding clean time tau: first with cum_end > tau; past the end -> last stop
    j = np.searchsorted(cum_end, tau, side="right")
    inside = j < len(starts)
    jj = np.minimum(j, len(starts) - 1)
    b = np.where(inside, starts[jj] + (tau - cum_start[jj]), stops[-1])
    # rounding must never move a boundary past the end of its GTI
    b = np.where(inside, np.minimum(b, stops[jj]), b)
    b[0] = starts[0]
    if n * length_s >= cum_end[-1] - _EPS_S:
        b[-1] = stops[-1]
    return b


def make_slices(
    clean_gtis: np.ndarray, *, lengths_ks: Sequence[float] | str = "all", unit_ks: float = 10.0
) -> list[Slice]:
    """Cut the clean GTIs into consecutive slices of fixed clean time.

    Parameters
    ----------
    clean_gtis : ndarray, shape (m, 2)
        Clean GTIs (normalized here).
    lengths_ks : sequence of float or "all"
        Slice lengths in ks, or ``"all"`` for every multiple of ``unit_ks`` up to the clean
        exposure.
    unit_ks : float
        Slice unit for ``"all"`` (10 ks).

    Returns
    -------
    list of Slice
        By increasing length, then time; ``floor(T / L)`` slices per length ``L <= T``.
    """
    gtis = normalize_gtis(clean_gtis)
    total = gti_exposure(gtis)
    out: list[Slice] = []
    if len(gtis) == 0:
        return out
    for length_ks in slice_lengths(total, lengths_ks=lengths_ks, unit_ks=unit_ks):
        length_s = length_ks * 1000.0
        n = int(math.floor((total + _EPS_S) / length_s))
        bounds = slice_boundaries(gtis, length_s, n)
        for i in range(n):
            g = intersect_gtis(gtis, [[bounds[i], bounds[i + 1]]])
            out.append(Slice(length_ks=length_ks, n_slices=n, index=i, gtis=g))
    return out
