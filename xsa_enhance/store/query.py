"""Catalog queries (astropy Tables) and table exports.

``query_catalog`` filters one catalog of a product store; the ``slices`` and ``products``
catalogs are joined with the pointing of their observation so that cone searches work on
all of them.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.time import Time

from xsa_enhance.errors import ConfigError
from xsa_enhance.store.catalog import CATALOG_NAMES
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["EXPORT_FORMATS", "query_catalog", "write_table", "format_table"]

logger = logging.getLogger(__name__)

#: Output formats of :func:`write_table` / ``xsa-enhance catalog query --format``.
EXPORT_FORMATS: tuple[str, ...] = ("table", "csv", "json", "votable", "fits", "parquet")

_TIME_COLUMN = {
    "observations": "created",
    "slices": "created",
    "products": "created",
    "sources": "created",
    "runs": "finished",
}


def _parse_time(value: str) -> Time:
    try:
        return Time(str(value).rstrip("Z"), format="isot", scale="utc") if "T" in str(
            value
        ) else Time(str(value), scale="utc")
    except ValueError as exc:
        raise ConfigError(f"cannot read --since {value!r} as a date (use YYYY-MM-DD[THH:MM:SS])") from exc


def query_catalog(
    store: ProductStore | str | Path,
    *,
    catalog: str = "products",
    cone: tuple[float, float, float] | None = None,
    obsid: str | Sequence[str] | None = None,
    exposure_ks: float | None = None,
    model: str | None = None,
    clamp: str | None = None,
    since: str | None = None,
    status: str | None = None,
    min_signif: float | None = None,
    min_rate: float | None = None,
) -> Table:
    """Select rows of one catalog.

    Parameters
    ----------
    store : ProductStore or str or pathlib.Path
        The product store (opened read-only when a path is given).
    catalog : {"products", "slices", "observations", "sources", "runs"}
        Which catalog to query.
    cone : (ra, dec, radius), optional
        Keep rows whose observation pointing (for ``sources``: the source position) lies
        within ``radius`` degrees of (``ra``, ``dec``) (ICRS, degrees).
    obsid : str or sequence of str, optional
        Keep these observations only.
    exposure_ks : float, optional
        Keep slices / products of this nominal slice exposure (ks).
    model : str, optional
        Keep products of this model (``products`` only).
    clamp : str, optional
        Keep products of this clamp mode (``products`` only).
    since : str, optional
        Keep rows committed at or after this UTC date/time (ISO 8601).
    status : str, optional
        Keep rows with this status (``observations`` and ``runs``).
    min_signif, min_rate : float, optional
        Keep sources with at least this significance / count rate (``sources`` only).

    Returns
    -------
    astropy.table.Table
        The matching rows with units and descriptions, sorted by the catalog's key (the
        runs log by time); ``ra_pnt``/``dec_pnt`` columns are joined in for ``slices`` and
        ``products``.

    Raises
    ------
    ConfigError
        For a filter that does not apply to the catalog or an unreadable date.
    """
    if catalog not in CATALOG_NAMES:
        raise ConfigError(f"unknown catalog {catalog!r}; choose one of {', '.join(CATALOG_NAMES)}")
    if not isinstance(store, ProductStore):
        store = ProductStore(store, mode="r")
    if (model is not None or clamp is not None) and catalog not in ("products", "sources"):
        raise ConfigError("--model and --clamp filter the products and sources catalogs only")
    if exposure_ks is not None and catalog not in ("slices", "products", "sources"):
        raise ConfigError("--exposure filters the slices, products and sources catalogs only")
    if (min_signif is not None or min_rate is not None) and catalog != "sources":
        raise ConfigError("--min-signif and --min-rate filter the sources catalog only")
    if status is not None and catalog not in ("observations", "runs"):
        raise ConfigError("--status filters the observations and runs catalogs only")
    table = store.catalog(catalog).read()
    keep = np.ones(len(table), dtype=bool)

    if catalog in ("slices", "products") or cone is not None:
        if catalog in ("slices", "products"):
            obs = store.catalog("observations").read()
            pointing = {str(o): (float(r), float(d)) for o, r, d in zip(obs["obsid"], obs["ra_pnt"], obs["dec_pnt"])}
            table["ra_pnt"] = np.array([pointing.get(str(o), (np.nan, np.nan))[0] for o in table["obsid"]], dtype=float) * u.deg
            table["dec_pnt"] = np.array([pointing.get(str(o), (np.nan, np.nan))[1] for o in table["obsid"]], dtype=float) * u.deg
            table["ra_pnt"].description = "pointing right ascension of the observation"
            table["dec_pnt"].description = "pointing declination of the observation"
    if cone is not None:
        if catalog == "runs":
            raise ConfigError("--cone does not apply to the runs catalog")
        ra0, dec0, radius = (float(v) for v in cone)
        if not (0 <= radius <= 180 and -90 <= dec0 <= 90):
            raise ConfigError(f"bad cone {cone}: need 0 <= radius <= 180 and -90 <= dec <= 90")
        if len(table):
            pos = ("ra", "dec") if catalog == "sources" else ("ra_pnt", "dec_pnt")
            ra = np.asarray(table[pos[0]], dtype=float)
            dec = np.asarray(table[pos[1]], dtype=float)
            finite = np.isfinite(ra) & np.isfinite(dec)
            sep = np.full(len(table), np.inf)
            if finite.any():
                centre = SkyCoord(ra0 * u.deg, dec0 * u.deg)
                sep[finite] = centre.separation(SkyCoord(ra[finite] * u.deg, dec[finite] * u.deg)).deg
            keep &= sep <= radius
    if obsid is not None:
        wanted = {obsid} if isinstance(obsid, str) else {str(o) for o in obsid}
        keep &= np.isin(np.asarray(table["obsid"], dtype=str), list(wanted))
    if exposure_ks is not None:
        col = "length_ks"
        keep &= np.isclose(np.asarray(table[col], dtype=float), float(exposure_ks))
    if model is not None:
        keep &= np.asarray(table["model"], dtype=str) == model
    if clamp is not None:
        keep &= np.asarray(table["clamp_mode"], dtype=str) == clamp
    if status is not None:
        keep &= np.asarray(table["status"], dtype=str) == status
    if min_signif is not None:
        keep &= np.nan_to_num(np.asarray(table["signif"], dtype=float), nan=-np.inf) >= min_signif
    if min_rate is not None:
        keep &= np.nan_to_num(np.asarray(table["rate"], dtype=float), nan=-np.inf) >= min_rate
    if since is not None:
        t0 = _parse_time(since)
        col = _TIME_COLUMN[catalog]
        if len(table):
            times = Time([str(v).rstrip("Z") for v in table[col]], format="isot", scale="utc")
            keep &= (times >= t0)
    out = table[keep]
    # a stable order whatever the order of the commits: by key (the runs log by time)
    from xsa_enhance.store.catalog import CATALOG_KEYS

    order = list(CATALOG_KEYS[catalog]) or ["finished", "obsid"]
    if len(out):
        out.sort(order)
    out.meta["catalog"] = catalog
    out.meta["store"] = store.url
    logger.debug("query %s: %d of %d rows", catalog, len(out), len(table))
    return out


def _plain(table: Table) -> Table:
    """A copy whose text columns are plain fixed-width unicode (for FITS/VOTable)."""
    out = table.copy(copy_data=True)
    for name in out.colnames:
        if out[name].dtype.kind in "OT":
            out[name] = np.asarray(out[name], dtype=str)
    # astropy writers reject non-scalar meta values in some formats
    out.meta = {k: v for k, v in out.meta.items() if isinstance(v, (str, int, float))}
    return out


def format_table(table: Table, fmt: str) -> str | bytes:
    """Serialise a table in one of :data:`EXPORT_FORMATS` (text or bytes).

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    fmt : str
        ``table`` (aligned text), ``csv``, ``json`` (list of records), ``votable``,
        ``fits`` or ``parquet``.
    """
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    table = _plain(table)
    if fmt == "table":
        if len(table) == 0:
            return "(no rows) columns: " + ", ".join(table.colnames) + "\n"
        return "\n".join(table.pformat(max_lines=-1, max_width=-1)) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        table.write(buf, format="ascii.csv")
        return buf.getvalue()
    if fmt == "json":
        records = []
        for row in table:
            rec = {}
            for name in table.colnames:
                value = row[name]
                value = value.item() if hasattr(value, "item") else value
                if isinstance(value, float) and not np.isfinite(value):
                    value = None
                rec[name] = value
            records.append(rec)
        return json.dumps(records, indent=1) + "\n"
    if fmt == "votable":
        buf = io.BytesIO()
        table.write(buf, format="votable")
        return buf.getvalue()
    if fmt == "fits":
        buf = io.BytesIO()
        table.write(buf, format="fits")
        return buf.getvalue()
    # parquet
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: np.asarray(table[name]) for name in table.colnames}
    arrow = pa.table(columns)
    meta = {
        f"unit.{name}": str(table[name].unit) for name in table.colnames if table[name].unit
    }
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **meta})
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return buf.getvalue()


def write_table(table: Table, out: str | Path | IO, fmt: str) -> None:
    """Write a table to a path or an open stream in one of :data:`EXPORT_FORMATS`.

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    out : str or pathlib.Path or file-like
        Destination; binary formats need a binary stream.
    fmt : str
        Output format.
    """
    data = format_table(table, fmt)
    if isinstance(out, (str, Path)):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(out, mode) as fh:
            fh.write(data)
        return
    if isinstance(data, bytes):
        target = getattr(out, "buffer", out)
        target.write(data)
    else:
        out.write(data)
