"""HEALPix spatial index of the store catalogs that hold sky positions.

A catalog is *sky-indexed* when its schema has a right ascension / declination pair in
degrees (``ra``/``dec``, ``ra_pnt``/``dec_pnt``, ... see :func:`sky_columns`): today the
``observations`` catalog (pointings), and any later catalog with such columns (e.g. the
``sources`` catalog) without further code.

Layout, inside the catalog group (so a new catalog generation starts without an index and the
old index goes with the old generation)::

    catalogs/<name>.<gen>/sky_index/                    attributes: columns, depth, segments
    catalogs/<name>.<gen>/sky_index/<segment>/entries   (n, 4) int64, one row per catalog
                                                        row: HEALPix nested index at depth 29
                                                        (sorted), catalog row, bits of the
                                                        float64 RA and Dec
    catalogs/<name>.<gen>/sky_index/<segment>/fence     pixel of the first entry of each
                                                        chunk (1024 entries) of ``entries``

A *segment* indexes the consecutive catalog rows ``[start, stop)``; the segments of the
attribute ``segments`` (name, start, stop) cover ``[0, indexed)`` without gaps. Rows are only ever appended to a
catalog, so the index is extended after each commit by one segment for the new rows (written
*after* the rows are published, so a segment never describes rows that a later append could
overwrite); segments are merged like a binary counter (a segment is merged with the one
before it while it is at least half its size), which keeps ``O(log N)`` segments. The
segment list is replaced by one attribute write, so a reader sees the old or the new list;
groups left unreferenced by an interrupted update are deleted by the next one.

A cone query picks the HEALPix order whose pixels are about the size of the cone, lists the
pixels overlapping the cone (``astropy_healpix.HEALPix.cone_search_lonlat``, radius padded by
a tenth of a pixel against rounding), turns each into the range of depth-29 indices it
contains (nested scheme), reads only the chunks of each segment holding those ranges, and
applies the exact angular-distance cut to the candidates. Rows published but not yet indexed
(a store written before the index existed, or a commit interrupted before its index update)
are scanned. The result is therefore exactly that of the full scan (:func:`cone_rows` with
``use_index=False``), which applies the same cut to every row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import zarr
from astropy import units as u
from astropy.coordinates import angular_separation
from astropy.table import Table
from astropy_healpix import HEALPix

from xsa_enhance.store.catalog import CATALOG_SCHEMAS, LATE_COLUMNS, Catalog, Column

__all__ = [
    "INDEX_GROUP",
    "DEPTH",
    "sky_columns",
    "index_info",
    "update_index",
    "cone_rows",
    "near_rows",
    "read_rows",
    "cone_table",
    "separation_deg",
]

logger = logging.getLogger(__name__)

#: Name of the index group inside a catalog group.
INDEX_GROUP = "sky_index"
#: HEALPix depth (order) of the stored pixel indices: the finest astropy-healpix supports.
DEPTH = 29
#: Entries per chunk of the index arrays (one ``fence`` value per chunk; 32 KiB).
BLOCK = 1024
#: Entries per shard (file) of the index arrays.
SHARD = 65536
_FORMAT = 1
_RES0_DEG = float(np.degrees(np.sqrt(4 * np.pi / 12)))  # pixel size at order 0 (58.6 deg)


# ---------------------------------------------------------------------------------- schema
def _is_degrees(col: Column) -> bool:
    if col.dtype != "f8" or not col.unit:
        return False
    try:
        return u.Unit(col.unit) == u.deg
    except ValueError:
        return False


def _schema_sky(columns: Sequence[Column]) -> tuple[str, str] | None:
    """The (RA, Dec) pair of a schema: ``ra``/``dec`` (any case) first, else the first
    ``ra<suffix>``/``dec<suffix>`` pair (suffix not an error), both ``f8`` in degrees."""
    by_lower = {c.name.lower(): c for c in columns}
    candidates = [c for c in columns if c.name.lower().startswith("ra")
                  and "err" not in c.name.lower()]
    candidates.sort(key=lambda c: c.name.lower() != "ra")
    for col in candidates:
        dec = by_lower.get("dec" + col.name.lower()[2:])
        if dec is not None and _is_degrees(col) and _is_degrees(dec):
            return col.name, dec.name
    return None


def sky_columns(catalog: Catalog | str) -> tuple[str, str] | None:
    """The (right ascension, declination) columns of a catalog, or None.

    A catalog has sky positions when its schema holds two ``f8`` columns in degrees named
    ``ra<suffix>`` and ``dec<suffix>`` in any case (``ra``/``dec``, ``RA``/``DEC``,
    ``ra_pnt``/``dec_pnt``; not ``*err*``); ``ra``/``dec`` is preferred, else the first pair.

    Parameters
    ----------
    catalog : Catalog or str
        A catalog or a catalog name of :data:`~xsa_enhance.store.catalog.CATALOG_SCHEMAS`.

    Returns
    -------
    tuple of str or None
    """
    columns = CATALOG_SCHEMAS.get(catalog) if isinstance(catalog, str) else catalog.columns
    return _schema_sky(columns) if columns else None


def sky_catalogs() -> tuple[str, ...]:
    """Names of the catalogs with sky positions (see :func:`sky_columns`)."""
    return tuple(name for name in CATALOG_SCHEMAS if sky_columns(name) is not None)


# ---------------------------------------------------------------------------------- geometry
def separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Great-circle distance in degrees from (``ra0``, ``dec0``) (astropy's Vincenty formula)."""
    sep = angular_separation(np.radians(ra0), np.radians(dec0), np.radians(ra), np.radians(dec))
    return np.degrees(sep)


def _valid(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Positions that can match at all: finite, declination within [-90, 90]."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)


def _cut(ra0: float, dec0: float, radius: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Mask of the positions within ``radius`` degrees: the one cut both query paths apply."""
    keep = _valid(ra, dec)
    if keep.any():
        keep[keep] = separation_deg(ra0, dec0, ra[keep], dec[keep]) <= radius
    return keep


def _pixels(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """HEALPix nested indices at :data:`DEPTH`; -1 where the position is not valid."""
    pix = np.full(len(ra), -1, dtype=np.int64)
    ok = _valid(ra, dec)
    if ok.any():
        hp = HEALPix(nside=2**DEPTH, order="nested")
        pix[ok] = hp.lonlat_to_healpix(np.mod(ra[ok], 360.0) * u.deg, dec[ok] * u.deg)
    return pix


def _order_for(radius: float) -> int:
    """HEALPix order whose pixels are about as large as ``radius`` degrees (0 to DEPTH)."""
    if radius <= 0:
        return DEPTH
    return int(np.clip(np.floor(np.log2(_RES0_DEG / radius)), 0, DEPTH))


def _cone_ranges(ra: Sequence[float], dec: Sequence[float], radius: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Ranges ``[lo, hi)`` of depth-29 indices covering cones of ``radius`` degrees about
    the positions, merged and sorted."""
    order = _order_for(radius)
    hp = HEALPix(nside=2**order, order="nested")
    pad = 0.1 * _RES0_DEG / 2**order  # against rounding at pixel edges
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


# ---------------------------------------------------------------------------------- index state
def _index_group(catalog: Catalog) -> zarr.Group | None:
    try:
        node = catalog.group[INDEX_GROUP]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Group) else None


def _segments(catalog: Catalog, group: zarr.Group | None) -> list[dict[str, Any]] | None:
    """The usable segments of an index (contiguous from row 0, within the published rows)."""
    if group is None:
        return None
    attrs = dict(group.attrs)
    sky = sky_columns(catalog)
    if attrs.get("format") != _FORMAT or list(attrs.get("columns") or []) != list(sky or []) \
            or attrs.get("depth") != DEPTH:
        return None
    segments = [dict(s) for s in attrs.get("segments") or []]
    expect = 0
    for seg in segments:
        if int(seg["start"]) != expect or int(seg["stop"]) <= expect:
            return None
        expect = int(seg["stop"])
    if expect > catalog.nrows:
        return None
    return segments


def index_info(catalog: Catalog) -> dict[str, Any]:
    """What the spatial index of a catalog covers.

    Parameters
    ----------
    catalog : Catalog
        A catalog of the store.

    Returns
    -------
    dict
        ``columns`` (the sky columns or None), ``indexed`` (rows covered by the index; 0
        without one), ``rows`` (published rows), ``segments`` (number of segments) and
        ``usable`` (whether queries use it).
    """
    sky = sky_columns(catalog)
    segments = _segments(catalog, _index_group(catalog)) if sky else None
    indexed = int(segments[-1]["stop"]) if segments else 0
    return {"columns": sky, "indexed": indexed, "rows": catalog.nrows,
            "segments": len(segments or []), "usable": segments is not None}


# ---------------------------------------------------------------------------------- writing
def _write_segment(parent: zarr.Group, start: int, stop: int, pix: np.ndarray, row: np.ndarray,
                   ra: np.ndarray, dec: np.ndarray) -> dict[str, Any]:
    """Write one segment (entries already in pixel order); return its attribute entry.

    The segment group holds ``entries``, an ``(n, 4)`` int64 array with a row per entry --
    pixel, catalog row, and the bits of the float64 RA and Dec, so one read gives everything
    a query needs -- in chunks of :data:`BLOCK` entries (32 KiB) inside shards of
    :data:`SHARD` entries, and ``fence``, the pixel of the first entry of every chunk.
    """
    name = f"s{start:012d}_{stop:012d}"
    if name in parent:
        del parent[name]
    n = len(pix)
    packed = np.empty((n, 4), dtype=np.int64)
    packed[:, 0] = pix
    packed[:, 1] = row
    packed[:, 2] = np.ascontiguousarray(ra, dtype=np.float64).view(np.int64)
    packed[:, 3] = np.ascontiguousarray(dec, dtype=np.float64).view(np.int64)
    seg = parent.create_group(name, attributes={"start": int(start), "stop": int(stop)})
    entries = seg.create_array("entries", shape=(n, 4), chunks=(BLOCK, 4),
                               shards=(SHARD, 4), dtype=np.int64, fill_value=0,
                               dimension_names=["entry", "field"],
                               attributes={"fields": ["pix", "row", "ra_bits", "dec_bits"],
                                           "block": BLOCK})
    if n:
        entries[:] = packed
    fence = np.ascontiguousarray(pix[::BLOCK], dtype=np.int64)
    arr = seg.create_array("fence", shape=fence.shape, chunks=(max(len(fence), 1),),
                           dtype=np.int64, fill_value=0, dimension_names=["chunk"])
    if len(fence):
        arr[:] = fence
    return {"name": name, "start": int(start), "stop": int(stop)}


def _unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pix, row, ra, dec of packed segment entries."""
    return (packed[:, 0], packed[:, 1], np.ascontiguousarray(packed[:, 2]).view(np.float64),
            np.ascontiguousarray(packed[:, 3]).view(np.float64))


def _sorted_segment(pix: np.ndarray, row: np.ndarray, ra: np.ndarray, dec: np.ndarray
                    ) -> tuple[np.ndarray, ...]:
    order = np.argsort(pix, kind="stable")  # equal pixels keep ascending rows
    return pix[order], row[order], ra[order], dec[order]


def _read_segment(parent: zarr.Group, name: str) -> tuple[np.ndarray, ...]:
    return _unpack(np.asarray(parent[f"{name}/entries"][:]))


def update_index(catalog: Catalog, *, rebuild: bool = False) -> int:
    """Bring the spatial index of a catalog up to its published rows (driver only).

    Indexes the published rows the index does not cover yet (all of them for a catalog
    without an index), as one new segment, then merges segments (binary-counter policy).
    Called by the store after each commit; ``xsa-enhance catalog index`` calls it for older
    stores.

    Parameters
    ----------
    catalog : Catalog
        A catalog of a store opened for writing, with its current published row count.
    rebuild : bool
        Drop the index and index every row again.

    Returns
    -------
    int
        Rows newly indexed (0 for a catalog without sky columns).
    """
    sky = sky_columns(catalog)
    if sky is None:
        return 0
    group = _index_group(catalog)
    segments = _segments(catalog, group)
    if group is not None and (rebuild or segments is None):
        if not rebuild:
            logger.warning("catalog %s: spatial index unusable, rebuilding it", catalog.name)
        del catalog.group[INDEX_GROUP]
        group, segments = None, None
    if group is None:
        group = catalog.group.create_group(
            INDEX_GROUP,
            attributes={"format": _FORMAT, "columns": list(sky), "depth": DEPTH, "segments": []},
        )
        segments = []
    assert segments is not None
    _drop_unreferenced(group, segments)
    indexed = int(segments[-1]["stop"]) if segments else 0
    n = catalog.nrows
    if indexed >= n:
        return 0
    ra = np.asarray(catalog.group[sky[0]][indexed:n], dtype=np.float64)
    dec = np.asarray(catalog.group[sky[1]][indexed:n], dtype=np.float64)
    rows = np.arange(indexed, n, dtype=np.int64)
    parts = _sorted_segment(_pixels(ra, dec), rows, ra, dec)
    segments.append(_write_segment(group, indexed, n, *parts))
    merged_away: list[str] = []
    while len(segments) > 1 and 2 * _size(segments[-1]) >= _size(segments[-2]):
        a, b = segments[-2], segments[-1]
        pa, pb = _read_segment(group, a["name"]), _read_segment(group, b["name"])
        joined = _sorted_segment(*(np.concatenate([x, y]) for x, y in zip(pa, pb)))
        merged = _write_segment(group, a["start"], b["stop"], *joined)
        merged_away += [a["name"], b["name"]]
        segments[-2:] = [merged]
    attrs = dict(group.attrs)
    attrs["segments"] = segments
    group.attrs.put(attrs)  # the new segment list appears in one write
    _drop_unreferenced(group, segments)
    logger.info("catalog %s: indexed rows %d..%d (%d segments)", catalog.name, indexed, n,
                len(segments))
    return n - indexed


def _size(seg: dict[str, Any]) -> int:
    return int(seg["stop"]) - int(seg["start"])


def _drop_unreferenced(group: zarr.Group, segments: Sequence[dict[str, Any]]) -> None:
    live = {s["name"] for s in segments}
    for name in list(group.keys()):
        if name not in live:
            del group[name]


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
    pix, row, ra, dec = _unpack(np.asarray(arr.get_orthogonal_selection((take, slice(None)))))
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
        group = _index_group(catalog)
        segments = _segments(catalog, group)
        if segments is not None and group is not None:
            try:
                plans = []
                for seg in segments:
                    arr = group[f"{seg['name']}/entries"]
                    fence = np.asarray(group[f"{seg['name']}/fence"][:], dtype=np.int64)
                    block = int(arr.attrs.get("block", 0))
                    if not isinstance(arr, zarr.Array) or arr.shape != (_size(seg), 4) \
                            or block <= 0 or len(fence) != -(-_size(seg) // block):
                        raise ValueError(f"segment {seg['name']} does not match its entry")
                    plans.append((arr, _plan(fence, block, _size(seg), lo, hi)))
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
    ok = _valid(ra, dec)
    lo = hi = np.zeros(0, np.int64)
    if use_index and ok.any():
        lo, hi = _cone_ranges(ra[ok].tolist(), dec[ok].tolist(), float(radius))
    rows, cra, cdec = _candidates(catalog, lo, hi, use_index)
    keep = _valid(cra, cdec)
    order_rows = np.argsort(rows[keep], kind="stable")
    return rows[keep][order_rows], cra[keep][order_rows], cdec[keep][order_rows]


def read_rows(catalog: Catalog, rows: Iterable[int] | np.ndarray) -> Table:
    """Read some rows of a catalog (all columns) as an astropy Table.

    Like :meth:`Catalog.read` restricted to ``rows``: only the chunks holding them are read.

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
    if len(rows) and (rows.min() < 0 or rows.max() >= catalog.nrows):
        raise IndexError(f"catalog {catalog.name}: rows outside 0..{catalog.nrows - 1}")
    table = Table()
    late = LATE_COLUMNS.get(catalog.name, frozenset())
    for col in catalog.columns:
        try:
            arr = catalog.group[col.name]
        except KeyError:
            if col.name not in late:
                raise
            arr = None
        if arr is None:
            values = np.full(len(rows), col.fill_value,
                             dtype=str if col.dtype == "str" else col.dtype)
        elif len(rows) == 0:
            values = np.zeros(0, dtype="U1" if col.dtype == "str" else col.dtype)
        else:
            values = np.asarray(arr.get_coordinate_selection(rows))
            if values.dtype.kind == "T" or values.dtype == object:
                values = np.array(values.tolist(), dtype=str)
        table[col.name] = values
        if col.unit:
            table[col.name].unit = col.unit
        table[col.name].description = col.description
    table.meta["catalog"] = catalog.name
    return table


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
