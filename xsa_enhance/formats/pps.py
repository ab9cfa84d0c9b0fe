"""The archive's PPS product files: names, PIEVLI and FBKTSR layouts, writers, a reader check.

The one description of the pipeline products the project reads and writes (DESIGN.md
section 4):

* file names ``P<obsid><inst><S|U|X><expno><product><subset><nnn>.<ext>``, e.g.
  ``P0123700101PNS003PIEVLI0000.FTZ`` (:data:`PPS_NAME_RE`, :func:`parse_pps_name`,
  :func:`pps_file_name`);
* the event list (``PIEVLI``, ``MIEVLI`` for MOS): ``EVENTS`` with the columns of
  :data:`EVENT_COLUMNS` and one ``STDGTInn`` table per CCD (:func:`write_event_file`);
* the flaring-background light curve ``FBKTSR``: a ``RATE`` table (:func:`write_lightcurve_file`);
* what a reader needs of them (:func:`structure_problem`).

The simulator, the stand-in archive, the test helpers, the archive's verifier and the events
reader all use this module.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.atomicio import write_bytes_atomic

__all__ = [
    "PPS_NAME_RE",
    "PpsName",
    "parse_pps_name",
    "pps_file_name",
    "INSTRUMENTS",
    "EVENT_PRODUCTS",
    "MJDREF",
    "EventColumn",
    "EVENT_COLUMNS",
    "EVENT_COLUMN_FORMATS",
    "REQUIRED_EVENT_COLUMNS",
    "LIGHTCURVE_COLUMNS",
    "gti_extension_name",
    "gti_header",
    "is_gti_extension",
    "structure_problem",
    "write_event_file",
    "write_lightcurve_file",
]

logger = logging.getLogger(__name__)

#: PPS file names, e.g. ``P0123700101PNS003PIEVLI0000.FTZ``.
PPS_NAME_RE = re.compile(
    r"^P(?P<obsid>\d{10})(?P<inst>[A-Z0-9]{2})(?P<expflag>[SUX])(?P<expno>\d{3})"
    r"(?P<name>[A-Z0-9]{6})(?P<subset>[0-9A-Z])(?P<source>[0-9A-F]{3})\.(?P<ext>[A-Z]{3})$"
)

#: Instruments with event lists: ``INSTRUME`` -> (file code, usual exposure, event product).
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "EPN": ("PN", "S003", "PIEVLI"),
    "EMOS1": ("M1", "S001", "MIEVLI"),
    "EMOS2": ("M2", "S002", "MIEVLI"),
}
#: Product codes of calibrated imaging event lists (pn, MOS).
EVENT_PRODUCTS: tuple[str, ...] = ("PIEVLI", "MIEVLI")
#: MJD of XMM mission time zero (1998-01-01T00:00:00 TT), the ``MJDREF`` keyword.
MJDREF: float = 50814.0


@dataclass(frozen=True)
class PpsName:
    """The fields of a PPS file name."""

    obsid: str
    inst: str
    expflag: str
    expno: str
    name: str
    subset: str
    source: str
    ext: str

    @property
    def exposure_id(self) -> str:
        """The exposure identifier, e.g. ``S003``."""
        return f"{self.expflag}{self.expno}"


def parse_pps_name(filename: str) -> PpsName | None:
    """Split a PPS file name into its fields, or return ``None`` if it is not one.

    Parameters
    ----------
    filename : str
        A bare file name (no folder).

    Returns
    -------
    PpsName or None
    """
    m = PPS_NAME_RE.match(filename)
    if m is None:
        return None
    return PpsName(**m.groupdict())


def pps_file_name(obsid: str, *, instrument: str = "EPN", product: str = "PIEVLI",
                  exposure_id: str | None = None, ext: str = "FTZ") -> str:
    """PPS file name of a product, e.g. ``P0123700101PNS003PIEVLI0000.FTZ``.

    Parameters
    ----------
    obsid : str
        10-digit observation id (not checked here).
    instrument : str
        ``EPN``, ``EMOS1`` or ``EMOS2`` (:data:`INSTRUMENTS`).
    product : str
        Six-character product code; an event-list code (``PIEVLI``/``MIEVLI``) is replaced by
        the instrument's.
    exposure_id : str, optional
        ``S003``-like exposure (default: the instrument's usual one).
    ext : str
        Extension (``FTZ``: gzipped FITS).

    Returns
    -------
    str
    """
    code, usual_expid, evli = INSTRUMENTS[instrument]
    if product in EVENT_PRODUCTS:
        product = evli
    return f"P{obsid}{code}{exposure_id or usual_expid}{product}0000.{ext}"


@dataclass(frozen=True)
class EventColumn:
    """One column of the ``EVENTS`` table.

    Attributes
    ----------
    name, format : str
        ``TTYPE`` and ``TFORM``.
    unit : str or None
        ``TUNIT``.
    null : int or None
        ``TNULL`` (sky coordinates outside the sky grid).
    limits : (int, int) or None
        ``TLMIN``/``TLMAX``.
    """

    name: str
    format: str
    unit: str | None = None
    null: int | None = None
    limits: tuple[int, int] | None = None


#: Sky X/Y grid size of the ``REF*`` sky WCS (0.05 arcsec pixels).
_SKY_XMAX = 51840
#: The 14 ``EVENTS`` columns of a PIEVLI, in file order.
EVENT_COLUMNS: tuple[EventColumn, ...] = (
    EventColumn("TIME", "D", "s"),
    EventColumn("RAWX", "I", limits=(1, 64)),
    EventColumn("RAWY", "I", limits=(1, 200)),
    EventColumn("DETX", "I", "0.05 arcsec", limits=(-18500, 14500)),
    EventColumn("DETY", "I", "0.05 arcsec", limits=(-18500, 16000)),
    EventColumn("X", "J", "0.05 arcsec", null=-99999999, limits=(1, _SKY_XMAX)),
    EventColumn("Y", "J", "0.05 arcsec", null=-99999999, limits=(1, _SKY_XMAX)),
    EventColumn("PHA", "I", "CHANNEL", limits=(0, 4095)),
    EventColumn("PI", "I", "CHANNEL", limits=(0, 32767)),
    EventColumn("FLAG", "J"),
    EventColumn("PATTERN", "B", limits=(0, 12)),
    EventColumn("PAT_ID", "I"),
    EventColumn("PAT_SEQ", "B"),
    EventColumn("CCDNR", "B", limits=(1, 12)),
)
#: FITS formats of the ``EVENTS`` columns.
EVENT_COLUMN_FORMATS: dict[str, str] = {c.name: c.format for c in EVENT_COLUMNS}
#: ``EVENTS`` columns a usable event list must have (the events stage reads them).
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = (
    "TIME", "RAWX", "RAWY", "DETX", "DETY", "PI", "FLAG", "PATTERN", "CCDNR",
)
#: Columns of the FBKTSR ``RATE`` table: name -> (format, unit).
LIGHTCURVE_COLUMNS: dict[str, tuple[str, str | None]] = {
    "TIME": ("D", "s"),
    "RATE": ("E", "count/s"),
    "ERROR": ("E", "count/s"),
    "FRACEXP": ("E", None),
}

_DTYPES = {"D": np.float64, "E": np.float32, "I": np.int16, "J": np.int32, "B": np.uint8}
_GTI_RE = re.compile(r"STDGTI\d\d")


def gti_extension_name(ccd: int) -> str:
    """Name of the GTI table of CCD ``ccd`` (1-12), e.g. ``STDGTI04``."""
    return f"STDGTI{ccd:02d}"


def is_gti_extension(name: str) -> bool:
    """Whether an extension name is a per-CCD GTI table (``STDGTInn``)."""
    return _GTI_RE.fullmatch(name.upper()) is not None


def structure_problem(hdul: Any, product: str, *,
                      columns: Iterable[str] | None = None) -> str | None:
    """What keeps an opened product file from being used, or ``None`` when nothing does.

    An event list (``PIEVLI``/``MIEVLI``) needs an ``EVENTS`` table with ``columns`` and at
    least one ``STDGTInn``; an ``FBKTSR`` needs a ``RATE`` table with ``TIME`` and ``RATE``.
    Other products are not checked.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The opened file (every HDU header is looked at).
    product : str
        Product code.
    columns : iterable of str, optional
        ``EVENTS`` columns needed (default :data:`REQUIRED_EVENT_COLUMNS`).

    Returns
    -------
    str or None
        One line naming the problem.
    """
    names = [h.name.upper() for h in hdul]
    if product in EVENT_PRODUCTS:
        if "EVENTS" not in names:
            return "no EVENTS extension (not an event list)"
        if not hasattr(hdul["EVENTS"], "columns"):
            return "EVENTS is not a binary table"
        have = {c.upper() for c in hdul["EVENTS"].columns.names}
        need = REQUIRED_EVENT_COLUMNS if columns is None else tuple(columns)
        missing = [c for c in need if c.upper() not in have]
        if missing:
            return f"EVENTS lacks columns (no column(s) {', '.join(missing)})"
        if not any(is_gti_extension(n) for n in names):
            return "no STDGTInn (CCD good time interval) extension"
    elif product == "FBKTSR":
        if "RATE" not in names:
            return "no RATE extension"
        if not hasattr(hdul["RATE"], "columns"):
            return "RATE is not a binary table"
        have = {c.upper() for c in hdul["RATE"].columns.names}
        if not {"TIME", "RATE"} <= have:
            return "RATE lacks TIME or RATE columns"
    return None


def _card_value(card: Any) -> Any:
    """The value of a header entry given as ``value`` or ``(value, comment)``."""
    return card[0] if isinstance(card, tuple) else card


def gti_header(ccd: int, header: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords of the ``STDGTInn`` table of CCD ``ccd`` in an event list with ``header``.

    Parameters
    ----------
    ccd : int
        CCD number, 1-12.
    header : mapping
        The event list's keywords; its ``TSTART``, ``TSTOP``, ``TIMESYS`` and ``MJDREF`` are
        repeated (values only).

    Returns
    -------
    dict
        ``CCDID`` (0-based), ``CCDNR``, ``HDUCLASn`` of a standard GTI, the time keywords.
    """
    out: dict[str, Any] = {
        "CCDID": (ccd - 1, "CCD number (0-based)"),
        "CCDNR": (ccd, "CCD number"),
        "HDUCLASS": "OGIP",
        "HDUCLAS1": "GTI",
        "HDUCLAS2": "STANDARD",
    }
    for k in ("TSTART", "TSTOP", "TIMESYS", "MJDREF"):
        if k in header:
            out[k] = _card_value(header[k])
    return out


def _write(hdus: list, path: Path, *, compress: bool | None, gzip_level: int) -> Path:
    """Write an HDU list, gzipped (``mtime`` 0) when asked or when the name ends in .FTZ/.gz."""
    from astropy.io import fits

    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf, checksum=False)
    data = buf.getvalue()
    if compress is None:
        compress = path.suffix.upper() in (".FTZ", ".GZ")
    if compress:
        data = gzip.compress(data, compresslevel=gzip_level, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)


def write_event_file(
    path: str | os.PathLike[str],
    events: Mapping[str, Sequence | np.ndarray],
    *,
    header: Mapping[str, Any],
    events_header: Mapping[str, Any] | None = None,
    gtis: Mapping[int, Sequence | np.ndarray] | None = None,
    gti_keywords: Callable[[int], Mapping[str, Any]] | None = None,
    describe_columns: bool = True,
    compress: bool | None = None,
    gzip_level: int = 1,
) -> Path:
    """Write an event list with the PIEVLI layout (atomically).

    Parameters
    ----------
    path : str or path-like
        Output; gzipped when ``compress`` is True, or by default when it ends in .FTZ/.gz.
    events : mapping
        ``EVENTS`` column name -> values, in file order. Columns of :data:`EVENT_COLUMNS` get
        their format (and, with ``describe_columns``, unit, ``TNULL`` and
        ``TLMIN``/``TLMAX``); others are written as ``D``. Columns left out are not written.
    header : mapping
        Keywords of the primary and ``EVENTS`` headers: ``value`` or ``(value, comment)``.
    events_header : mapping, optional
        Further ``EVENTS`` keywords (sky WCS, ``HDUCLASn``).
    gtis : mapping of CCD number to (n, 2) intervals, optional
        The ``STDGTInn`` tables (START, STOP in s); none when omitted.
    gti_keywords : callable, optional
        CCD number -> keywords of its GTI table (default :func:`gti_header` of ``header``).
    describe_columns : bool
        Write the units, null values and limits of the known columns (False: formats only,
        as in small hand-made files).
    compress : bool, optional
        Force gzip on or off.
    gzip_level : int
        gzip compression level.

    Returns
    -------
    Path
    """
    from astropy.io import fits

    known = {c.name: c for c in EVENT_COLUMNS}
    cols = []
    for name, values in events.items():
        spec = known.get(name.upper(), EventColumn(name.upper(), "D"))
        if not describe_columns:
            spec = EventColumn(spec.name, spec.format)
        cols.append(fits.Column(spec.name, spec.format, unit=spec.unit, null=spec.null,
                                array=np.asarray(values, dtype=_DTYPES[spec.format])))
    ev = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    for i, c in enumerate(cols, start=1):
        limits = known[c.name].limits if c.name in known and describe_columns else None
        if limits is not None:
            ev.header[f"TLMIN{i}"], ev.header[f"TLMAX{i}"] = limits
    primary = fits.PrimaryHDU()
    for k, v in header.items():
        primary.header[k] = v
        ev.header[k] = v
    for k, v in (events_header or {}).items():
        ev.header[k] = v
    hdus: list = [primary, ev]
    for ccd in sorted(gtis or {}):
        g = np.asarray(gtis[ccd], dtype=np.float64).reshape(-1, 2)  # type: ignore[index]
        gh = fits.BinTableHDU.from_columns(
            [fits.Column("START", "D", unit="s", array=g[:, 0]),
             fits.Column("STOP", "D", unit="s", array=g[:, 1])],
            name=gti_extension_name(ccd),
        )
        keywords = gti_header(ccd, header) if gti_keywords is None else gti_keywords(ccd)
        for k, v in keywords.items():
            gh.header[k] = v
        hdus.append(gh)
    return _write(hdus, Path(path), compress=compress, gzip_level=gzip_level)


def write_lightcurve_file(
    path: str | os.PathLike[str],
    columns: Mapping[str, Sequence | np.ndarray],
    *,
    header: Mapping[str, Any],
    primary_header: Mapping[str, Any],
    compress: bool | None = None,
    gzip_level: int = 1,
) -> Path:
    """Write a flaring-background light curve with the FBKTSR layout (atomically).

    Parameters
    ----------
    path : str or path-like
        Output; gzipped when ``compress`` is True, or by default when it ends in .FTZ/.gz.
    columns : mapping
        ``TIME`` (bin centres), ``RATE`` (NaN in dead bins), ``ERROR``, ``FRACEXP``
        (:data:`LIGHTCURVE_COLUMNS`).
    header : mapping
        Keywords of the ``RATE`` table (``TIMEDEL``, ``TSTART``, ``TSTOP``, ``FLCUTTHR``, ...):
        ``value`` or ``(value, comment)``.
    primary_header : mapping
        Keywords of the primary header.
    compress : bool, optional
        Force gzip on or off.
    gzip_level : int
        gzip compression level.

    Returns
    -------
    Path
    """
    from astropy.io import fits

    cols = []
    for name, values in columns.items():
        fmt, unit = LIGHTCURVE_COLUMNS[name]
        cols.append(fits.Column(name, fmt, unit=unit, array=np.asarray(values, dtype=_DTYPES[fmt])))
    lc = fits.BinTableHDU.from_columns(cols, name="RATE")
    for k, v in header.items():
        lc.header[k] = v
    primary = fits.PrimaryHDU()
    for k, v in primary_header.items():
        primary.header[k] = v
    return _write([primary, lc], Path(path), compress=compress, gzip_level=gzip_level)
