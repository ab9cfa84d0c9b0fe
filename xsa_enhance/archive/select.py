"""Selection of EPIC-pn observations through the XSA TAP service (astroquery)."""

from __future__ import annotations

import datetime as _dt
import http.client
import logging
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import requests

from xsa_enhance.archive.client import XsaClient
from xsa_enhance.archive.config import ArchiveConfig, validate_obsid
from xsa_enhance.archive.retry import call_with_retries
from xsa_enhance.errors import ConfigError, ObservationError, XsaError

__all__ = [
    "Selection",
    "ObservationRecord",
    "ArchiveQueryError",
    "build_query",
    "select_observations",
    "FULL_FRAME_MODES",
]

logger = logging.getLogger(__name__)

#: pn modes the models are made for.
FULL_FRAME_MODES = ("PrimeFullWindow", "PrimeFullWindowExtended")


class ArchiveQueryError(XsaError):
    """The TAP service could not be queried or refused the query."""


def _utc_text(value: object, what: str) -> str:
    if isinstance(value, _dt.datetime):
        t = value
    elif isinstance(value, _dt.date):
        t = _dt.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip().replace("T", " ").rstrip("Z")
        t = None
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                t = _dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if t is None:
            raise ConfigError(f"{what}: {value!r} is not a date (YYYY-MM-DD[ HH:MM:SS])")
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return t.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Selection:
    """Which observations to harvest.

    Parameters
    ----------
    min_duration_ks : float
        Minimum pn exposure duration, ks (the clean exposure is decided later, from the
        events; 20 ks is the models' input).
    cone : (float, float, float), optional
        ``(ra, dec, radius)`` in degrees: pointings inside this circle.
    since : str or datetime, optional
        Only observations whose PPS were processed after this UTC time (``pps_proc_date``),
        for scheduled incremental runs.
    obsids : sequence of str, optional
        Restrict to these observation ids.
    start, end : str or datetime, optional
        Observation start time range (UTC), ``start <= start_utc < end``.
    include_proprietary : bool
        Also select proprietary observations (needs credentials to download them).
    modes : sequence of str
        Accepted pn modes.
    """

    min_duration_ks: float = 20.0
    cone: tuple[float, float, float] | None = None
    since: str | _dt.datetime | None = None
    obsids: Sequence[str] | None = None
    start: str | _dt.datetime | None = None
    end: str | _dt.datetime | None = None
    include_proprietary: bool = False
    modes: Sequence[str] = FULL_FRAME_MODES

    def __post_init__(self) -> None:
        if not (self.min_duration_ks >= 0 and math.isfinite(self.min_duration_ks)):
            raise ConfigError("min_duration_ks must be a finite number >= 0")
        if self.cone is not None:
            try:
                ra, dec, r = (float(v) for v in self.cone)
            except (TypeError, ValueError):
                raise ConfigError("cone must be (ra, dec, radius) in degrees") from None
            if not (0 <= ra < 360 and -90 <= dec <= 90 and 0 < r <= 180):
                raise ConfigError(f"cone ({ra}, {dec}, {r}) is out of range "
                                  "(0<=ra<360, -90<=dec<=90, 0<radius<=180 degrees)")
            object.__setattr__(self, "cone", (ra, dec, r))
        if self.obsids is not None:
            object.__setattr__(self, "obsids", tuple(validate_obsid(o) for o in self.obsids))
        for m in self.modes:
            if not str(m).replace("_", "").isalnum():
                raise ConfigError(f"invalid instrument mode {m!r}")


@dataclass(frozen=True)
class ObservationRecord:
    """One selected observation and its pn exposure, as the archive describes them."""

    obsid: str
    ra: float
    dec: float
    position_angle: float
    duration: float
    start_utc: str
    pps_version: str
    pps_proc_date: str
    proprietary_end_date: str
    target: str | None
    submode: str
    filter: str
    exposure_id: str


def build_query(selection: Selection) -> str:
    """The ADQL query of a selection (one row per qualifying pn exposure).

    Parameters
    ----------
    selection : Selection

    Returns
    -------
    str
    """
    table = "xsa.v_all_observations" if selection.include_proprietary else "xsa.v_public_observations"
    target = "" if selection.include_proprietary else ", o.target"
    modes = ", ".join(f"'{m}'" for m in selection.modes)
    where = [
        "e.instrument = 'EPN'",
        "e.is_scientific = 'true'",
        f"m.mode IN ({modes})",
        f"e.duration >= {float(selection.min_duration_ks) * 1000.0!r}",
    ]
    if selection.cone is not None:
        ra, dec, r = selection.cone
        where.append(f"1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', {ra!r}, {dec!r}, {r!r}))")
    if selection.since is not None:
        where.append(f"o.pps_proc_date > '{_utc_text(selection.since, 'since')}'")
    if selection.start is not None:
        where.append(f"o.start_utc >= '{_utc_text(selection.start, 'start')}'")
    if selection.end is not None:
        where.append(f"o.start_utc < '{_utc_text(selection.end, 'end')}'")
    if selection.obsids:
        where.append("o.observation_id IN (" + ", ".join(f"'{o}'" for o in selection.obsids) + ")")
    return (
        "SELECT o.observation_id, o.ra, o.dec, o.position_angle, o.start_utc, o.pps_version, "
        f"o.pps_proc_date, o.proprietary_end_date{target}, e.exposure_id, e.duration, "
        "e.filter, m.mode "
        f"FROM {table} AS o "
        "JOIN xsa.v_exposure AS e ON e.observation_id = o.observation_id "
        "JOIN xsa.v_instrument_mode AS m ON m.instrument_mode_oid = e.instrument_mode_oid "
        "WHERE " + " AND ".join(where) + " "
        "ORDER BY o.observation_id, e.duration DESC"
    )


_TRANSIENT = (requests.ConnectionError, requests.Timeout, socket.timeout, TimeoutError,
              ConnectionError, http.client.HTTPException)


def _is_transient_tap(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        text = str(exc)
        return any(f"Error {s}" in text for s in (500, 502, 503, 504, 429))
    return isinstance(exc, _TRANSIENT)


def _value(row, name: str):
    v = row[name]
    if np.ma.is_masked(v):
        return None
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def select_observations(
    selection: Selection | None = None,
    *,
    config: ArchiveConfig | None = None,
    rejected: dict[str, str] | None = None,
) -> list[ObservationRecord]:
    """Select pn observations through the archive's TAP service.

    Keeps EPIC-pn exposures in the full-frame modes, scientific, public (unless
    ``include_proprietary``) and at least ``min_duration_ks`` long, plus the optional cone,
    time range, processing-date and obsid filters; for each observation the longest such
    exposure.

    Parameters
    ----------
    selection : Selection, optional
        The criteria (defaults: public, pn full frame, >= 20 ks).
    config : ArchiveConfig, optional
        Endpoints, timeout and retries (default: the real XSA).
    rejected : dict, optional
        Filled with ``{the id as given: reason}`` for rows of the TAP reply whose
        ``observation_id`` is not a valid XMM-Newton observation id (ten digits). Such rows are
        never returned (the id would end up in paths and URLs); each is also logged as a
        warning.

    Returns
    -------
    list of ObservationRecord
        Sorted by obsid; every ``obsid`` is ten digits.

    Raises
    ------
    ArchiveQueryError
        When the service stays unreachable after the retries or rejects the query.
    """
    selection = selection or Selection()
    config = config or ArchiveConfig()
    query = build_query(selection)
    client = XsaClient(config)
    logger.info("TAP %s: %s", config.tap_url, query)

    def give_up(exc: BaseException, attempts: int, exhausted: bool) -> ArchiveQueryError:
        if not exhausted:
            msg = " ".join(str(exc).split())
            return ArchiveQueryError(f"TAP query to {config.tap_url} failed: {msg}")
        return ArchiveQueryError(
            f"TAP service {config.tap_url} unreachable after {attempts} attempts: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")

    def announce(exc: BaseException, attempt: int, wait: float) -> None:
        logger.warning("TAP query failed (%s); retrying in %.1f s", type(exc).__name__, wait)

    table, _ = call_with_retries(lambda: client.query_xsa_tap(query), config=config,
                                 transient=_is_transient_tap, give_up=give_up, announce=announce)
    cols = set(table.colnames)
    records: dict[str, ObservationRecord] = {}
    for row in table:
        raw_id = _value(row, "observation_id")
        try:
            obsid = validate_obsid(raw_id if isinstance(raw_id, str) else str(raw_id),
                                   source=f"TAP reply of {config.tap_url}")
        except ObservationError as exc:
            logger.warning("observation %s: %s; row skipped", exc.obsid, exc.reason)
            if rejected is not None:
                rejected[str(raw_id)] = exc.reason
            continue
        if obsid in records:
            continue  # rows are ordered by duration, longest first
        records[obsid] = ObservationRecord(
            obsid=obsid,
            ra=float(_value(row, "ra")),
            dec=float(_value(row, "dec")),
            position_angle=float(_value(row, "position_angle") or 0.0),
            duration=float(_value(row, "duration")),
            start_utc=str(_value(row, "start_utc")),
            pps_version=str(_value(row, "pps_version")),
            pps_proc_date=str(_value(row, "pps_proc_date")),
            proprietary_end_date=str(_value(row, "proprietary_end_date")),
            target=str(_value(row, "target")) if "target" in cols and _value(row, "target") is not None else None,
            submode=str(_value(row, "mode")),
            filter=str(_value(row, "filter")),
            exposure_id=str(_value(row, "exposure_id")),
        )
    logger.info("selected %d observations", len(records))
    return [records[k] for k in sorted(records)]
