"""Cone queries and cross-match candidates on the store catalogs that hold sky positions.

The index they read is written by :mod:`xsa_enhance.store.sky_index` (whose public names are
re-exported here). A cone query picks the HEALPix order whose pixels are about the size of the
cone, lists the pixels overlapping the cone (``astropy_healpix.HEALPix.cone_search_lonlat``,
radius padded by a tenth of a pixel against rounding), turns each into the range of depth-29
indices it contains (nested scheme), reads only the chunks of each segment holding those
ranges, and applies the exact angular-distance cut to the candidates. Rows published but not yet indexed
(a store written before the index existed, or a commit interrupted before its index update)
are scanned. The result is therefore exactly that of the full scan (:func:`cone_rows` with
``use_index=False``), which applies the same cut to every row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import zarr
from astropy import units as u
from astropy.coordinates import angular_separation
from astropy.table import Table
from astropy_healpix import HEALPix

from xsa_enhance.store.catalog import Catalog
from xsa_enhance.store.sky_index import (
    DEPTH,
    INDEX_GROUP,
    RES0_DEG,
    _schema_sky,  # noqa: F401 - tests check the schema rule through this module
    index_group,
    index_info,
    segment_size,
    sky_catalogs,
    sky_columns,
    unpack_entries,
    update_index,
    usable_segments,
    valid_positions,
)

__all__ = [
    "INDEX_GROUP",
    "DEPTH",
    "sky_columns",
    "sky_catalogs",
    "index_info",
    "update_index",
    "cone_rows",
    "near_rows",
    "read_rows",
    "cone_table",
    "separation_deg",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- geometry
def separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Great-circle distance in degrees from (``ra0``, ``dec0``) (astropy's Vincenty formula)."""
    sep = angular_separation(np.radians(ra0), np.radians(dec0), np.radians(ra), np.radians(dec))
    return np.degrees(sep)


def _cut(ra0: float, dec0: float, radius: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Mask of the positions within ``radius`` degrees: the one cut both query paths apply."""
    keep = valid_positions(ra, dec)
    if keep.any():
        keep[keep] = separation_deg(ra0, dec0, ra[keep], dec[keep]) <= radius
    return keep


def _order_for(radius: float) -> int:
    """HEALPix order whose pixels are about as large as ``radius`` degrees (0 to DEPTH)."""
    if radius <= 0:
        return DEPTH
    return int(np.clip(np.floor(np.log2(RES0_DEG / radius)), 0, DEPTH))


def _cone_ranges(ra: Sequence[float], dec: Sequence[float], radius: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Ranges ``[lo, hi)`` of depth-29 indices covering cones of ``radius`` degrees about
    the positions, merged and sorted."""
    order = _order_for(radius)
    hp = HEALPix(nside=2**order, order="nested")
    pad = 0.1 * RES0_DEG / 2**order  # against rounding at pixel edges
    if radius + pad >= 180.0:
        pixels = np.arange(hp.npix, dtype=np.int64)
    else:
        pixels = np.concatenate([
            np.asarray(hp.cone_search_lonlat(r % 360.0 * u.deg, d * u.deg,
                                             (radius + pad) * u.deg), dtype=np.int64)
            for r, d in sorted(set(zip(ra, dec)))
        ] or [np.zeros(0, np.int64)])
    return _merge_ranges(pixels, order)


def _merge_ranges(pixels: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.unique(pixels)
    shift = 2 * (DEPTH - order)
    lo = pixels << shift
    hi = (pixels + 1) << shift
    if len(lo) > 1:
        start = np.ones(len(lo), dtype=bool)
        start[1:] = lo[1:] != hi[:-1]
        ends = np.r_[np.nonzero(start)[0][1:] - 1, len(lo) - 1]
        lo, hi = lo[start], hi[ends]
    return lo, hi


# ---------------------------------------------------------------------------------- reading
def _plan(fence: np.ndarray, block: int, n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Entries of a segment to read for the pixel ranges: the chunks that can hold them.

    ``fence`` is the pixel of the first entry of each chunk of ``block`` entries. The result
    (ascending positions, whole chunks) is a subsequence of the sorted segment that holds every
    entry of every range, so one ``searchsorted`` on what is read finds them all.
    """
    if n == 0 or len(lo) == 0:
        return np.zeros(0, np.int64)
    first = np.maximum(np.searchsorted(fence, lo, "left") - 1, 0)
    last = np.searchsorted(fence, hi, "left") - 1  # chunks whose first entry is below hi
    use = last >= first
    if not use.any():
        return np.zeros(0, np.int64)
    first, last = first[use], last[use]
    order = np.argsort(first, kind="stable")
    first, last = first[order], last[order]
    reach = np.maximum.accumulate(last)
    new_run = np.ones(len(first), dtype=bool)
    new_run[1:] = first[1:] > reach[:-1] + 1
    run_first = first[new_run]
    run_last = reach[np.r_[np.nonzero(new_run)[0][1:] - 1, len(first) - 1]]
    return np.concatenate([np.arange(c0 * block, min((c1 + 1) * block, n), dtype=np.int64)
                           for c0, c1 in zip(run_first.tolist(), run_last.tolist())])


def _read_planned(arr: zarr.Array, take: np.ndarray, lo: np.ndarray, hi: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, RA, Dec of the entries among ``take`` whose pixel lies in one of the ranges."""
    if len(take) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    pix, row, ra, dec = unpack_entries(np.asarray(arr.get_orthogonal_selection((take, slice(None)))))
    depth = np.zeros(len(pix) + 1, dtype=np.int64)
    np.add.at(depth, np.searchsorted(pix, lo, "left"), 1)
    np.add.at(depth, np.searchsorted(pix, hi, "left"), -1)
    mask = np.cumsum(depth[:-1]) > 0
    return row[mask], ra[mask], dec[mask]


#: The index is read only while it reads fewer bytes than the scan of the two position
#: columns (an index entry is 32 bytes, a position 16).
_SCAN_RATIO = 2


def _candidates(catalog: Catalog, lo: np.ndarray, hi: np.ndarray, use_index: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (with RA, Dec) that may lie in the pixel ranges: index entries + unindexed tail.

    Without a usable index (or with ``use_index=False``, or when the ranges cover so much of
    the index that scanning the position columns reads less) every published row.
    """
    sky = sky_columns(catalog)
    if sky is None:
        raise ValueError(f"catalog {catalog.name} has no sky position columns")
    n = catalog.nrows
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    indexed = 0
    if use_index:
        group = index_group(catalog)
        segments = usable_segments(catalog, group)
        if segments is not None and group is not None:
            try:
                plans = []
                for seg in segments:
                    arr = group[f"{seg['name']}/entries"]
                    fence = np.asarray(group[f"{seg['name']}/fence"][:], dtype=np.int64)
                    block = int(arr.attrs.get("block", 0))
                    if not isinstance(arr, zarr.Array) or arr.shape != (segment_size(seg), 4) \
                            or block <= 0 or len(fence) != -(-segment_size(seg) // block):
                        raise ValueError(f"segment {seg['name']} does not match its entry")
                    plans.append((arr, _plan(fence, block, segment_size(seg), lo, hi)))
                if sum(len(take) for _, take in plans) * _SCAN_RATIO < n:
                    parts = [_read_planned(arr, take, lo, hi) for arr, take in plans]
                    indexed = int(segments[-1]["stop"]) if segments else 0
                else:
                    logger.debug("catalog %s: the ranges cover most of the index; scanning",
                                 catalog.name)
            except (KeyError, ValueError, OSError) as exc:  # a merge removed it meanwhile
                logger.warning("catalog %s: spatial index unreadable (%s); scanning",
                               catalog.name, exc)
                parts, indexed = [], 0
    if indexed < n:
        ra = np.asarray(catalog.column(sky[0])[indexed:n] if indexed == 0
                        else catalog.group[sky[0]][indexed:n], dtype=np.float64)
        dec = np.asarray(catalog.column(sky[1])[indexed:n] if indexed == 0
                         else catalog.group[sky[1]][indexed:n], dtype=np.float64)
        parts.append((np.arange(indexed, n, dtype=np.int64), ra, dec))
        if indexed:
            logger.debug("catalog %s: scanning %d unindexed rows", catalog.name, n - indexed)
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    rows, ra, dec = (np.concatenate(x) for x in zip(*parts))
    return rows, ra, dec


def _check_cone(ra: float, dec: float, radius: float) -> None:
    if not (np.isfinite(ra) and np.isfinite(dec) and np.isfinite(radius)):
        raise ValueError(f"bad cone ({ra}, {dec}, {radius}): not finite")
    if not (0 <= radius <= 180 and -90 <= dec <= 90):
        raise ValueError(f"bad cone ({ra}, {dec}, {radius}): need 0 <= radius <= 180 "
                         "and -90 <= dec <= 90")


def cone_rows(catalog: Catalog, ra: float, dec: float, radius: float, *,
              use_index: bool = True) -> np.ndarray:
    """Rows of a catalog whose sky position lies within ``radius`` degrees of (ra, dec).

    Parameters
    ----------
    catalog : Catalog
        A catalog with sky columns (:func:`sky_columns`).
    ra, dec : float
        Cone centre (ICRS, degrees).
    radius : float
        Cone radius in degrees (0 to 180).
    use_index : bool
        Use the spatial index where there is one (default); False scans every row.

    Returns
    -------
    numpy.ndarray
        Row numbers, ascending (identical with and without the index).

    Raises
    ------
    ValueError
        For a catalog without sky columns or an impossible cone.
    """
    ra, dec, radius = float(ra), float(dec), float(radius)
    _check_cone(ra, dec, radius)
    if use_index:
        lo, hi = _cone_ranges([ra], [dec], radius)
    else:
        lo = hi = np.zeros(0, np.int64)
    rows, cra, cdec = _candidates(catalog, lo, hi, use_index)
    return np.sort(rows[_cut(ra, dec, radius, cra, cdec)])


def near_rows(catalog: Catalog, ra: np.ndarray, dec: np.ndarray, radius: float, *,
              use_index: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate rows near any of many positions (for cross-matching).

    Returns every row within ``radius`` degrees of at least one position, and possibly a
    few more (those in the HEALPix pixels overlapping the cones): the caller applies the
    exact cut per pair.

    Parameters
    ----------
    catalog : Catalog
        A catalog with sky columns.
    ra, dec : numpy.ndarray
        Positions (ICRS, degrees); invalid ones are ignored.
    radius : float
        Match radius in degrees.
    use_index : bool
        Use the spatial index where there is one.

    Returns
    -------
    rows, ra, dec : numpy.ndarray
        Candidate rows (ascending) with their positions.
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    ok = valid_positions(ra, dec)
    lo = hi = np.zeros(0, np.int64)
    if use_index and ok.any():
        lo, hi = _cone_ranges(ra[ok].tolist(), dec[ok].tolist(), float(radius))
    rows, cra, cdec = _candidates(catalog, lo, hi, use_index)
    keep = valid_positions(cra, cdec)
    order_rows = np.argsort(rows[keep], kind="stable")
    return rows[keep][order_rows], cra[keep][order_rows], cdec[keep][order_rows]


def read_rows(catalog: Catalog, rows: Iterable[int] | np.ndarray) -> Table:
    """Read some rows of a catalog (all columns) as an astropy Table.

    :meth:`Catalog.read` restricted to ``rows``: only the chunks holding them are read.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    rows : array of int
        Published row numbers, in the order wanted.

    Returns
    -------
    astropy.table.Table
    """
    rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
    return catalog.read(rows)


def cone_table(catalog: Catalog, ra: float, dec: float, radius: float, *,
               use_index: bool = True) -> Table:
    """The rows of :func:`cone_rows` as an astropy Table (in row order).

    Parameters
    ----------
    catalog : Catalog
        A catalog with sky columns.
    ra, dec, radius : float
        Cone centre and radius (ICRS, degrees).
    use_index : bool
        Use the spatial index where there is one.

    Returns
    -------
    astropy.table.Table
    """
    return read_rows(catalog, cone_rows(catalog, ra, dec, radius, use_index=use_index))
