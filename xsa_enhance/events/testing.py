"""Writers of small, hand-made PIEVLI and FBKTSR files, for tests and examples.

They write the layout of the PPS products (DESIGN.md section 4) with exactly the events and
intervals given, so that tests can predict every count. They are not a simulator (see
:mod:`xsa_enhance.simulate` for that).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xsa_enhance.formats.pps import (
    EVENT_COLUMN_FORMATS,
    MJDREF,
    write_event_file,
    write_lightcurve_file,
)

__all__ = ["EVENT_COLUMN_FORMATS", "write_event_list", "write_fbktsr", "event_header"]


def event_header(
    *,
    obsid: str = "0123700101",
    expidstr: str = "S003",
    instrume: str = "EPN",
    datamode: str = "IMAGING",
    submode: str = "PrimeFullWindow",
    filter: str = "Medium",
    ra_pnt: float = 150.0,
    dec_pnt: float = 2.0,
    pa_pnt: float = 60.0,
    tstart: float = 0.0,
    tstop: float = 0.0,
) -> dict[str, object]:
    """Header keywords of a PIEVLI file (primary and EVENTS)."""
    return {
        "TELESCOP": "XMM",
        "INSTRUME": instrume,
        "DATAMODE": datamode,
        "SUBMODE": submode,
        "FILTER": filter,
        "OBS_ID": obsid,
        "EXP_ID": obsid + expidstr[1:],
        "EXPIDSTR": expidstr,
        "RA_PNT": ra_pnt,
        "DEC_PNT": dec_pnt,
        "PA_PNT": pa_pnt,
        "RA_NOM": ra_pnt,
        "DEC_NOM": dec_pnt,
        "REFXCTYP": "RA---TAN",
        "REFYCTYP": "DEC--TAN",
        "REFXCRVL": ra_pnt,
        "REFYCRVL": dec_pnt,
        "REFXCRPX": 25921,
        "REFYCRPX": 25921,
        "REFXCDLT": -1.3888889e-5,
        "REFYCDLT": 1.3888889e-5,
        "DATE-OBS": "2010-01-01T00:00:00",
        "DATE-END": "2010-01-01T14:00:00",
        "TSTART": tstart,
        "TSTOP": tstop,
        "ONTIME": tstop - tstart,
        "TIMESYS": "TT",
        "MJDREF": MJDREF,
    }


def write_event_list(
    path: str | os.PathLike,
    events: Mapping[str, Sequence | np.ndarray],
    *,
    ccd_gtis: Mapping[int, Sequence] | Sequence | None = None,
    header: Mapping[str, object] | None = None,
    compress: bool | None = None,
) -> Path:
    """Write a PIEVLI-like event list.

    Parameters
    ----------
    path : str or path-like
        Output; gzip-compressed when ``compress`` is True or the name ends in ``.FTZ``/``.gz``.
    events : mapping
        Column name -> values. Known columns get their PPS formats (no units or limits);
        missing ones are not written (so tests can build files lacking a column).
    ccd_gtis : mapping of CCD number to (n, 2) intervals, or one (n, 2) list for CCDs 1-12
        The ``STDGTInn`` tables; ``None`` writes none.
    header : mapping, optional
        Keywords for the primary and EVENTS headers (default :func:`event_header`).
    compress : bool, optional
        Force gzip on or off.

    Returns
    -------
    Path
    """
    if ccd_gtis is not None and not isinstance(ccd_gtis, Mapping):
        ccd_gtis = {c: ccd_gtis for c in range(1, 13)}
    return write_event_file(path, events, header=event_header() if header is None else header,
                            gtis=ccd_gtis, gti_keywords=lambda ccd: {"CCDID": ccd},
                            describe_columns=False, compress=compress)


def write_fbktsr(
    path: str | os.PathLike,
    *,
    time: Sequence[float] | np.ndarray,
    rate: Sequence[float] | np.ndarray,
    timedel: float,
    flcutthr: float | None = 0.4,
    fracexp: Sequence[float] | np.ndarray | None = None,
    obsid: str = "0123700101",
) -> Path:
    """Write an FBKTSR-like light curve (extension ``RATE``: TIME, RATE, ERROR, FRACEXP).

    Parameters
    ----------
    path : str or path-like
        Output (gzip when it ends in ``.FTZ``/``.gz``).
    time : array
        Bin centres (s).
    rate : array
        Rates (counts/s); NaN for dead bins.
    timedel : float
        Bin width (s).
    flcutthr : float or None
        The ``FLCUTTHR`` keyword (omitted when None).
    fracexp : array, optional
        Fractional exposure per bin (default 1).
    obsid : str
        ``OBS_ID``.

    Returns
    -------
    Path
    """
    t = np.asarray(time, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float32)
    fe = np.ones_like(r) if fracexp is None else np.asarray(fracexp, dtype=np.float32)
    header: dict[str, object] = {
        "HDUCLAS1": "LIGHTCURVE",
        "TIMEDEL": float(timedel),
        "TSTART": float(t[0] - timedel / 2) if len(t) else 0.0,
        "TSTOP": float(t[-1] + timedel / 2) if len(t) else 0.0,
    }
    if flcutthr is not None:
        header["FLCUTTHR"] = float(flcutthr)
    return write_lightcurve_file(
        path,
        {"TIME": t, "RATE": r, "ERROR": np.sqrt(np.abs(np.nan_to_num(r))), "FRACEXP": fe},
        header=header, primary_header={"OBS_ID": obsid, "INSTRUME": "EPN"},
    )
