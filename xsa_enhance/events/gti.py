"""Good time intervals (GTIs): set operations, flare screening and the clean exposure.

GTIs are ``(n, 2)`` float64 arrays of ``[start, stop)`` intervals in mission time (s), sorted
and disjoint after :func:`normalize_gtis`. An event at time ``t`` is inside when
``start <= t < stop``.

Flares (DESIGN.md section 5):

- with the pipeline's FBKTSR light curve: good where ``RATE <= FLCUTTHR`` (each bin spans
  ``TIME +- TIMEDEL/2``; NaN and non-positive ``FRACEXP`` bins are bad), runs of good bins
  shorter than ``flare_min_gti_s`` (50 s) dropped (SAS ``tabgtigen expression=RATE<=FLCUTTHR
  mingtisize=50``);
- without it: the light curve of ``PATTERN == 0 && 10 < PI < 12 keV`` events in 100 s bins
  starting at the first CCD GTI start; each bin's rate is its counts divided by the time the
  bin overlaps the CCD GTIs, good where rate <= 0.4 counts/s (configurable), same 50 s rule.

The clean GTIs are the flare GTIs intersected with the CCD GTIs.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np

from xsa_enhance.errors import InputFileError

__all__ = [
    "normalize_gtis",
    "intersect_gtis",
    "union_gtis",
    "gti_exposure",
    "in_gtis",
    "gtis_from_good_bins",
    "lightcurve_from_events",
    "read_fbktsr",
    "flare_gtis",
]

logger = logging.getLogger(__name__)


def _as_gtis(gtis: np.ndarray | list) -> np.ndarray:
    arr = np.asarray(gtis, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"GTIs must have shape (n, 2), got {arr.shape}")
    return arr


def normalize_gtis(gtis: np.ndarray | list) -> np.ndarray:
    """Sort GTIs, drop empty ones and merge overlapping or touching intervals.

    Parameters
    ----------
    gtis : array-like, shape (n, 2)
        ``[start, stop)`` intervals.

    Returns
    -------
    ndarray, shape (m, 2)
    """
    arr = _as_gtis(gtis)
    arr = arr[arr[:, 1] > arr[:, 0]]
    if len(arr) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    # merge: an interval starts a new group when it begins after every earlier stop
    run_max = np.maximum.accumulate(arr[:, 1])
    new = np.ones(len(arr), dtype=bool)
    new[1:] = arr[1:, 0] > run_max[:-1]
    starts = arr[new, 0]
    group_end = np.flatnonzero(new)[1:] - 1
    stops = np.append(run_max[group_end], run_max[-1])
    return np.column_stack([starts, stops])


def intersect_gtis(a: np.ndarray | list, b: np.ndarray | list) -> np.ndarray:
    """Intersection of two GTI sets.

    Parameters
    ----------
    a, b : array-like, shape (n, 2)

    Returns
    -------
    ndarray, shape (m, 2)
        Sorted, disjoint intervals covered by both.
    """
    a = normalize_gtis(a)
    b = normalize_gtis(b)
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i, 0], b[j, 0])
        hi = min(a[i, 1], b[j, 1])
        if hi > lo:
            out.append((lo, hi))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def union_gtis(a: np.ndarray | list, b: np.ndarray | list) -> np.ndarray:
    """Union of two GTI sets (sorted, merged)."""
    return normalize_gtis(np.concatenate([_as_gtis(a), _as_gtis(b)]))


def gti_exposure(gtis: np.ndarray) -> float:
    """Total length of GTIs in seconds."""
    gtis = _as_gtis(gtis)
    return float(np.sum(gtis[:, 1] - gtis[:, 0])) if len(gtis) else 0.0


def in_gtis(times: np.ndarray, gtis: np.ndarray) -> np.ndarray:
    """Boolean mask of times inside sorted, disjoint GTIs (``start <= t < stop``).

    Parameters
    ----------
    times : ndarray
        Event times (any order).
    gtis : ndarray, shape (n, 2)
        Normalized GTIs.

    Returns
    -------
    ndarray of bool
    """
    gtis = _as_gtis(gtis)
    if len(gtis) == 0:
        return np.zeros(len(times), dtype=bool)
    edges = gtis.ravel()
    # inside when the count of edges <= t is odd (after a start, before its stop)
    return (np.searchsorted(edges, times, side="right") & 1).astype(bool)


def gtis_from_good_bins(
    lo: np.ndarray, hi: np.ndarray, good: np.ndarray, *, min_gti_s: float = 0.0
) -> np.ndarray:
    """Merge runs of consecutive good bins into GTIs and drop the short ones.

    Parameters
    ----------
    lo, hi : ndarray
        Bin edges (``hi[i] == lo[i+1]`` for adjacent bins; a gap ends a run).
    good : ndarray of bool
        Which bins are good.
    min_gti_s : float
        Minimum GTI length kept.

    Returns
    -------
    ndarray, shape (m, 2)
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    good = np.asarray(good, dtype=bool)
    if not good.any():
        return np.zeros((0, 2), dtype=np.float64)
    gl, gh = lo[good], hi[good]
    # a good bin continues the previous good bin's run if it starts where that one ended
    idx = np.flatnonzero(good)
    cont = np.zeros(len(idx), dtype=bool)
    cont[1:] = (idx[1:] == idx[:-1] + 1) & np.isclose(gl[1:], gh[:-1], rtol=0, atol=1e-6)
    starts = gl[~cont]
    run_last = np.append(np.flatnonzero(~cont)[1:] - 1, len(idx) - 1)
    stops = gh[run_last]
    out = np.column_stack([starts, stops])
    return out[(out[:, 1] - out[:, 0]) >= min_gti_s - 1e-9]


def lightcurve_from_events(
    times: np.ndarray, selected: np.ndarray, ccd_gtis: np.ndarray, *, bin_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Light curve of selected events, normalised by the time each bin overlaps the GTIs.

    Parameters
    ----------
    times : ndarray
        Event times.
    selected : ndarray of bool
        Events counted.
    ccd_gtis : ndarray
        Normalized GTIs; bins start at ``ccd_gtis[0, 0]``.
    bin_s : float
        Bin width in seconds.

    Returns
    -------
    lo, hi, counts, live : ndarray
        Bin edges, counts, and seconds of each bin inside the GTIs.
    """
    if len(ccd_gtis) == 0:
        empty = np.zeros(0)
        return empty, empty, empty.astype(np.int64), empty
    t0, t1 = float(ccd_gtis[0, 0]), float(ccd_gtis[-1, 1])
    nbins = max(1, int(np.ceil((t1 - t0) / bin_s - 1e-9)))
    lo = t0 + bin_s * np.arange(nbins, dtype=np.float64)
    hi = np.minimum(lo + bin_s, t1)
    t = times[selected & in_gtis(times, ccd_gtis)]
    k = np.floor((t - t0) / bin_s).astype(np.int64)
    k = np.clip(k, 0, nbins - 1)
    counts = np.bincount(k, minlength=nbins)
    # live time per bin: integral of the GTI indicator over [lo, hi)
    edges = np.concatenate([lo, hi[-1:]])
    cum = _gti_cumulative(ccd_gtis, edges)
    live = np.diff(cum)
    return lo, hi, counts, live


def _gti_cumulative(gtis: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Seconds of GTI before each time ``t`` (monotonic function)."""
    starts, stops = gtis[:, 0], gtis[:, 1]
    cum = np.concatenate([[0.0], np.cumsum(stops - starts)])
    j = np.searchsorted(starts, t, side="right") - 1  # last GTI starting at or before t
    out = np.where(j >= 0, cum[np.maximum(j, 0)], 0.0)
    inside = np.where(j >= 0, np.minimum(t, stops[np.maximum(j, 0)]) - starts[np.maximum(j, 0)], 0.0)
    return out + np.where(j >= 0, inside, 0.0)


def read_fbktsr(path: str | os.PathLike) -> dict[str, np.ndarray | float | None]:
    """Read a pn FBKTSR flaring-background light curve.

    Parameters
    ----------
    path : str or path-like
        ``P<obsid>PN<expo>FBKTSR0000.FTZ``.

    Returns
    -------
    dict
        ``time``, ``rate`` (in the file's precision), ``fracexp`` (arrays; all ones when
        absent), ``timedel``
        ``flcutthr`` (float or None) and ``obsid`` (the ``OBS_ID`` keyword or None).

    Raises
    ------
    InputFileError
        Unreadable file, no ``RATE`` extension or columns, bad ``TIMEDEL``.
    """
    from astropy.io import fits

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such file")
    try:
        with fits.open(p, memmap=False) as hdul:
            hdu = None
            for h in hdul[1:]:
                if h.name.upper() == "RATE" or str(h.header.get("HDUCLAS1", "")).upper() == "LIGHTCURVE":
                    hdu = h
                    break
            if hdu is None or not isinstance(hdu, fits.BinTableHDU):
                raise InputFileError(p, "not a light curve: no RATE extension")
            names = {n.upper(): n for n in hdu.columns.names}
            for col in ("TIME", "RATE"):
                if col not in names:
                    raise InputFileError(p, f"RATE extension has no {col} column")
            data = hdu.data
            time = np.asarray(data[names["TIME"]], dtype=np.float64)
            rate = np.asarray(data[names["RATE"]])
            rate = rate.astype(rate.dtype.newbyteorder("="))
            fracexp = (
                np.asarray(data[names["FRACEXP"]], dtype=np.float64)
                if "FRACEXP" in names
                else np.ones_like(rate)
            )
            hdr = hdu.header
            timedel = hdr.get("TIMEDEL")
            if timedel is None and len(time) > 1:
                timedel = float(np.median(np.diff(time)))
            flcut = hdr.get("FLCUTTHR", hdul[0].header.get("FLCUTTHR"))
            obsid = hdr.get("OBS_ID", hdul[0].header.get("OBS_ID"))
    except InputFileError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, TypeError, KeyError, IndexError) as exc:
        raise InputFileError(p, f"cannot read light curve ({type(exc).__name__}: {exc})") from None
    if len(time) == 0:
        raise InputFileError(p, "the light curve is empty")
    if timedel is None or not np.isfinite(float(timedel)) or float(timedel) <= 0:
        raise InputFileError(p, f"invalid TIMEDEL {timedel!r}")
    if not np.all(np.isfinite(time)) or np.any(np.diff(time) <= 0):
        raise InputFileError(p, "TIME column is not finite and strictly increasing")
    return {
        "time": time,
        "rate": rate,
        "fracexp": fracexp,
        "timedel": float(timedel),
        "flcutthr": None if flcut is None else float(flcut),
        "obsid": None if obsid is None else str(obsid).strip(),
    }


def flare_gtis(events, fbktsr_path: str | os.PathLike | None, *, config) -> np.ndarray:
    """Clean GTIs: flare-free intervals intersected with the CCD GTIs.

    Parameters
    ----------
    events : EventList
        The event list (its ``gtis`` are the CCD GTIs; ``TIME``, ``PATTERN`` and ``PI``
        are needed when ``fbktsr_path`` is None).
    fbktsr_path : str, path-like or None
        The FBKTSR light curve; ``None`` builds the light curve from the events.
    config : EventsConfig
        Thresholds, bin size and minimum GTI length.

    Returns
    -------
    ndarray, shape (n, 2)
        Clean GTIs (float64). ``gti_exposure`` of it is the clean exposure.
    """
    gtis, _source = _flare_gtis_with_source(events, fbktsr_path, config=config)
    return gtis


def _flare_gtis_with_source(events, fbktsr_path, *, config) -> tuple[np.ndarray, str]:
    ccd = normalize_gtis(events.gtis)
    if fbktsr_path is not None:
        lc = read_fbktsr(fbktsr_path)
        if lc["obsid"] and events.meta.obsid and lc["obsid"] != events.meta.obsid:
            raise InputFileError(
                fbktsr_path,
                f"light curve of observation {lc['obsid']}, but the events are of {events.meta.obsid}",
            )
        thr = config.fbktsr_threshold
        if thr is None:
            thr = lc["flcutthr"]
            if thr is None or not np.isfinite(thr) or thr <= 0:
                logger.warning(
                    "%s has no usable FLCUTTHR; using flare_threshold=%g counts/s",
                    fbktsr_path,
                    config.flare_threshold,
                )
                thr = config.flare_threshold
        half = lc["timedel"] / 2.0
        lo, hi = lc["time"] - half, lc["time"] + half
        rate = lc["rate"]
        # compare in the column's precision: a float32 RATE of 0.4 equals a FLCUTTHR of 0.4
        thr_c = rate.dtype.type(thr) if rate.dtype.kind == "f" else thr
        with np.errstate(invalid="ignore"):
            good = np.isfinite(rate) & (rate <= thr_c) & (lc["fracexp"] > 0)
        flares_ok = gtis_from_good_bins(lo, hi, good, min_gti_s=config.flare_min_gti_s)
        source = "FBKTSR"
        logger.debug("FBKTSR %s: threshold %g, %d good intervals", fbktsr_path, thr, len(flares_ok))
    else:
        missing = [c for c in ("TIME", "PATTERN", "PI") if c not in events.columns] + [
            c for c in config.lightcurve_selection.columns if c not in events.columns
        ]
        if missing:
            raise InputFileError(events.path, f"columns {sorted(set(missing))} needed for the flare light curve")
        times = events.columns["TIME"]
        sel = config.lightcurve_selection.evaluate(events.columns)
        lo, hi, counts, live = lightcurve_from_events(times, sel, ccd, bin_s=config.lightcurve_bin_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(live > 0, counts / np.where(live > 0, live, 1.0), np.inf)
        good = (live > 0) & (rate <= config.flare_threshold)
        flares_ok = gtis_from_good_bins(lo, hi, good, min_gti_s=config.flare_min_gti_s)
        source = "events"
    return intersect_gtis(flares_ok, ccd), source
