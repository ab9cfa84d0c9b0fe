"""HEALPix spatial index of the store catalogs that hold sky positions: schema and writing.

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
attribute ``segments`` (name, start, stop) cover ``[0, indexed)`` without gaps. Rows are
only ever appended to a catalog, so the index is extended after each commit by one segment
for the new rows (written *after* the rows are published, so a segment never describes rows
that a later append could overwrite); segments are merged like a binary counter (a segment is
merged with the one before it while it is at least half its size), which keeps ``O(log N)``
segments. The segment list is replaced by one attribute write, so a reader sees the old or the
new list; groups left unreferenced by an interrupted update are deleted by the next one.

The queries that read the index are in :mod:`xsa_enhance.store.spatial`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from astropy import units as u
from astropy_healpix import HEALPix

from xsa_enhance.store.catalog import CATALOG_SCHEMAS, Catalog, Column

__all__ = [
    "INDEX_GROUP",
    "DEPTH",
    "BLOCK",
    "RES0_DEG",
    "sky_columns",
    "sky_catalogs",
    "valid_positions",
    "index_group",
    "usable_segments",
    "segment_size",
    "unpack_entries",
    "index_info",
    "update_index",
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
#: HEALPix pixel size at order 0 in degrees (58.6).
RES0_DEG = float(np.degrees(np.sqrt(4 * np.pi / 12)))


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


# ---------------------------------------------------------------------------------- pixels
def valid_positions(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Positions that can match at all: finite, declination within [-90, 90]."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)


def _pixels(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """HEALPix nested indices at :data:`DEPTH`; -1 where the position is not valid."""
    pix = np.full(len(ra), -1, dtype=np.int64)
    ok = valid_positions(ra, dec)
    if ok.any():
        hp = HEALPix(nside=2**DEPTH, order="nested")
        pix[ok] = hp.lonlat_to_healpix(np.mod(ra[ok], 360.0) * u.deg, dec[ok] * u.deg)
    return pix


# ---------------------------------------------------------------------------------- index state
def index_group(catalog: Catalog) -> zarr.Group | None:
    """The index group of a catalog, or None when it has none."""
    try:
        node = catalog.group[INDEX_GROUP]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Group) else None


def usable_segments(catalog: Catalog, group: zarr.Group | None) -> list[dict[str, Any]] | None:
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
    segments = usable_segments(catalog, index_group(catalog)) if sky else None
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


def unpack_entries(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pix, row, ra, dec of packed segment entries."""
    return (packed[:, 0], packed[:, 1], np.ascontiguousarray(packed[:, 2]).view(np.float64),
            np.ascontiguousarray(packed[:, 3]).view(np.float64))


def _sorted_segment(pix: np.ndarray, row: np.ndarray, ra: np.ndarray, dec: np.ndarray
                    ) -> tuple[np.ndarray, ...]:
    order = np.argsort(pix, kind="stable")  # equal pixels keep ascending rows
    return pix[order], row[order], ra[order], dec[order]


def _read_segment(parent: zarr.Group, name: str) -> tuple[np.ndarray, ...]:
    return unpack_entries(np.asarray(parent[f"{name}/entries"][:]))


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
    group = index_group(catalog)
    segments = usable_segments(catalog, group)
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
    while len(segments) > 1 and 2 * segment_size(segments[-1]) >= segment_size(segments[-2]):
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


def segment_size(seg: dict[str, Any]) -> int:
    """Catalog rows a segment (an entry of the ``segments`` attribute) indexes."""
    return int(seg["stop"]) - int(seg["start"])


def _drop_unreferenced(group: zarr.Group, segments: Sequence[dict[str, Any]]) -> None:
    live = {s["name"] for s in segments}
    for name in list(group.keys()):
        if name not in live:
            del group[name]
