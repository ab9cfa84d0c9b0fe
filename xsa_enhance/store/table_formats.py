"""Table formats of the catalog exports: units, descriptions and UCDs kept.

FITS tables carry ``TUNITn``, ``TCOMMn`` and ``TUCDn`` (plus astropy's own metadata),
VOTables ``unit``, ``ucd`` and ``DESCRIPTION``, Parquet astropy's table metadata, ECSV its
YAML header. Observation ids stay 10-character strings; times are ISO 8601 UTC strings that
:class:`astropy.time.Time` parses (VOTable ``xtype="timestamp"``, UCD ``time.epoch``).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from astropy.table import Table

from xsa_enhance.errors import ConfigError

__all__ = ["EXPORT_FORMATS", "BINARY_FORMATS", "COLUMN_UCDS", "TIME_COLUMNS", "annotate",
           "format_table", "write_table"]

logger = logging.getLogger(__name__)

#: Output formats of :func:`write_table` / ``xsa-enhance catalog query --format``.
EXPORT_FORMATS: tuple[str, ...] = ("table", "csv", "ecsv", "json", "votable", "fits", "parquet")

#: Formats written as bytes (refused on a terminal by the CLI).
BINARY_FORMATS: tuple[str, ...] = ("fits", "parquet")

#: Columns holding times (ISO 8601 strings, UTC; ``date_obs`` is the exposure start).
TIME_COLUMNS: tuple[str, ...] = ("date_obs", "harvest_time", "pps_proc_date", "created",
                                 "started", "finished")

#: UCDs (IVOA UCD1+) of the catalog columns, written into VOTable and FITS exports.
COLUMN_UCDS: dict[str, str] = {
    "obsid": "meta.id;obs",
    "expidstr": "meta.id;instr.setup",
    "slice_id": "meta.id;meta.dataset",
    "ra_pnt": "pos.eq.ra;instr.pointing",
    "dec_pnt": "pos.eq.dec;instr.pointing",
    "pa_pnt": "pos.posAng;instr.pointing",
    "filter": "instr.filter",
    "submode": "instr.setup",
    "date_obs": "time.start;obs.exposure",
    "ontime": "time.duration;obs.exposure",
    "clean_exposure": "time.duration;obs.exposure",
    "flare_fraction": "arith.ratio;time.duration",
    "n_slices": "meta.number",
    "pps_version": "meta.version;meta.software",
    "pps_proc_date": "time.processing",
    "harvest_status": "meta.code.status",
    "harvest_time": "time.processing",
    "status": "meta.code.status",
    "reason": "meta.note",
    "store_path": "meta.ref.uri",
    "run_id": "meta.id;meta.software",
    "created": "time.processing",
    "length_ks": "time.duration;obs.exposure",
    "index": "meta.number",
    "start": "time.start;obs.exposure",
    "stop": "time.end;obs.exposure",
    "exposure": "time.duration;obs.exposure",
    "counts": "phot.count",
    "band": "em.energy;instr.bandpass",
    "model": "meta.id;meta.software",
    "kind": "meta.code.class",
    "weights_sha256": "meta.checksum",
    "clamp_mode": "meta.code",
    "clamp_value": "phot.count;arith.rate;stat.max",
    "trained_clamp": "meta.code",
    "clamp_mismatch": "meta.code.qual",
    "stretch": "meta.code",
    "grid": "instr.pixel",
    "input_counts": "phot.count",
    "output_counts": "phot.count",
    "output_exposure": "time.duration;obs.exposure",
    "input_exposure": "time.duration;obs.exposure",
    "input_rate": "phot.count;arith.rate",
    "output_rate": "phot.count;arith.rate",
    "output_background": "meta.code",
    "restored_rate": "phot.count;arith.rate",
    "uncertainty_samples": "meta.number",
    "flux_fraction_below_3sigma": "arith.ratio;phot.count",
    "median_significance": "stat.snr;stat.median",
    "software_version": "meta.version;meta.software",
    "stage": "meta.code",
    "n_products": "meta.number",
    "started": "time.start;meta.software",
    "finished": "time.end;meta.software",
    "duration": "time.duration;meta.software",
}

def annotate(table: Table) -> None:
    """Put the UCDs of :data:`COLUMN_UCDS` on the columns of ``table`` (in place; the VOTable
    and FITS exports write them).

    Parameters
    ----------
    table : astropy.table.Table
        A catalog table.
    """
    for name in table.colnames:
        ucd = COLUMN_UCDS.get(name)
        if ucd:
            table[name].meta["ucd"] = ucd


def _plain(table: Table) -> Table:
    """A copy whose text columns are plain fixed-width unicode (for FITS/VOTable)."""
    out = table.copy(copy_data=True)
    for name in out.colnames:
        if out[name].dtype.kind in "OT":
            col = out[name]
            out[name] = np.asarray(col, dtype=str) if len(col) else np.zeros(0, dtype="U1")
            out[name].info.description = col.info.description
            out[name].info.meta = dict(col.info.meta or {})
        if out[name].dtype.kind == "U" and out[name].dtype.itemsize == 0:
            out[name] = out[name].astype("U1")
    annotate(out)
    # astropy writers reject non-scalar meta values in some formats
    out.meta = {k: v for k, v in out.meta.items() if isinstance(v, (str, int, float))}
    return out


def _fits_bytes(table: Table) -> bytes:
    """FITS binary table with TUNITn (astropy), TCOMMn (descriptions) and TUCDn (UCDs)."""
    from astropy.io import fits

    buf = io.BytesIO()
    table.write(buf, format="fits")
    buf.seek(0)
    with fits.open(buf) as hdul:
        hdu = hdul[1]
        hdr = hdu.header
        for i, name in enumerate(table.colnames, start=1):
            desc = str(table[name].info.description or "")
            if desc:
                hdr[f"TCOMM{i}"] = desc  # long ones continue (CONTINUE cards)
            ucd = table[name].meta.get("ucd")
            if ucd:
                hdr[f"TUCD{i}"] = str(ucd)
        hdr["EXTNAME"] = str(table.meta.get("catalog", "CATALOG")).upper()
        out = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(data=hdu.data, header=hdr)]).writeto(out)
    return out.getvalue()


def format_table(table: Table, fmt: str) -> str | bytes:
    """Serialise a table in one of :data:`EXPORT_FORMATS` (text or bytes).

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    fmt : str
        ``table`` (aligned text), ``csv`` (plain CSV: read the obsids back as text,
        e.g. ``pandas.read_csv(f, dtype={"obsid": str})``), ``ecsv`` (CSV with an ECSV
        header: astropy reads types, units and descriptions back), ``json`` (list of
        records), ``votable``, ``fits`` or ``parquet`` (these three keep units and
        descriptions, read back by astropy without warnings).
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
    if fmt == "ecsv":
        buf = io.StringIO()
        table.write(buf, format="ascii.ecsv", delimiter=",")
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
        from astropy.io.votable import from_table, writeto

        vot = from_table(table)
        for field in vot.get_first_table().fields:
            if field.name in TIME_COLUMNS:
                field.xtype = "timestamp"
        buf = io.BytesIO()
        writeto(vot, buf)
        return buf.getvalue()
    if fmt == "fits":
        return _fits_bytes(table)
    # parquet through astropy: units, descriptions and meta in its table metadata
    with tempfile.TemporaryDirectory(prefix="xsa-parquet-") as tmp:
        path = Path(tmp) / "table.parquet"
        table.write(path, format="parquet")
        return path.read_bytes()


def write_table(table: Table, out: str | Path | IO[Any], fmt: str) -> None:
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
