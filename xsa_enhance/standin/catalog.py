"""The observations the local archive serves: metadata rows, expected outcomes, the database.

The plan is deterministic for a given ``(n_observations, seed)``: the same observation ids,
positions, dates and kinds every time, so generated files can be cached under the archive
root and tests can rely on the mix.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "KINDS",
    "DEFAULT_ORDER",
    "StandinExposure",
    "StandinObservation",
    "plan_observations",
    "build_database",
    "TABLE_COLUMNS",
    "INSTRUMENT_MODES",
]

logger = logging.getLogger(__name__)

#: Kinds of observation and the outcome a harvest of public, pn full-frame data should have.
KINDS: dict[str, str] = {
    "normal": "ok",
    "extended": "ok",
    "flares": "ok",
    "corrupt": "fail: corrupt PIEVLI served by the archive",
    "proprietary": "skip: proprietary (not public)",
    "short": "skip: pn exposure shorter than 20 ks",
    "timing": "skip: pn in timing mode",
    "mos_only": "skip: no EPIC-pn exposure",
}
#: Order in which kinds are assigned to the observations 0, 1, 2, ...; later ones are "normal".
DEFAULT_ORDER: tuple[str, ...] = (
    "normal", "extended", "flares", "corrupt", "proprietary", "short", "timing", "mos_only",
)

#: (instrument_mode_oid, instrument, mode, mode_friendly_name)
INSTRUMENT_MODES: tuple[tuple[int, str, str, str], ...] = (
    (1, "EPN", "PrimeFullWindow", "Full Frame"),
    (2, "EPN", "PrimeFullWindowExtended", "Extended Full Frame"),
    (3, "EPN", "PrimeLargeWindow", "Large Window"),
    (4, "EPN", "PrimeSmallWindow", "Small Window"),
    (5, "EPN", "FastTiming", "Timing"),
    (11, "EMOS1", "PrimeFullWindow", "Full Frame"),
    (12, "EMOS2", "PrimeFullWindow", "Full Frame"),
    (13, "EMOS1", "PrimePartialW3", "Large Window"),
)
_MODE_OID = {(inst, mode): oid for oid, inst, mode, _ in INSTRUMENT_MODES}
_MODE_FRIENDLY = {(inst, mode): fr for _, inst, mode, fr in INSTRUMENT_MODES}

#: Columns of the tables: name -> (SQLite type, VOTable datatype, unit, UCD, description).
_OBS_COLUMNS: list[tuple[str, str, str, str, str, str]] = [
    ("observation_id", "TEXT", "char", "", "meta.id;obs", "Observation identifier (10 digits)"),
    ("observation_oid", "INTEGER", "long", "", "meta.id", "Internal observation key"),
    ("ra", "REAL", "double", "deg", "pos.eq.ra;meta.main", "Right ascension of the pointing"),
    ("dec", "REAL", "double", "deg", "pos.eq.dec;meta.main", "Declination of the pointing"),
    ("duration", "REAL", "double", "s", "time.duration", "Observation duration"),
    ("start_utc", "TEXT", "char", "", "time.start", "Observation start (UTC)"),
    ("end_utc", "TEXT", "char", "", "time.end", "Observation end (UTC)"),
    ("position_angle", "REAL", "double", "deg", "pos.posAng", "Position angle"),
    ("revolution", "INTEGER", "int", "", "meta.id", "Satellite revolution"),
    ("target", "TEXT", "char", "", "meta.id;src", "Target name"),
    ("proprietary_end_date", "TEXT", "char", "", "time.end", "End of the proprietary period"),
    ("pps_version", "TEXT", "char", "", "meta.version", "Pipeline (PPS) version"),
    ("pps_proc_date", "TEXT", "char", "", "time.processing", "Pipeline processing date"),
    ("sas_version", "TEXT", "char", "", "meta.version", "SAS version of the PPS run"),
    ("observation_equatorial_spoint", "TEXT", "char", "", "pos.eq", "Pointing (ADQL POINT)"),
    ("observation_fov_scircle", "TEXT", "char", "", "pos.outline", "Field of view (ADQL CIRCLE)"),
]
_EXP_COLUMNS: list[tuple[str, str, str, str, str, str]] = [
    ("observation_id", "TEXT", "char", "", "meta.id;obs", "Observation identifier"),
    ("observation_oid", "INTEGER", "long", "", "meta.id", "Internal observation key"),
    ("exposure_id", "TEXT", "char", "", "meta.id", "Exposure identifier (e.g. S003)"),
    ("exposure_oid", "INTEGER", "long", "", "meta.id", "Internal exposure key"),
    ("instrument", "TEXT", "char", "", "meta.id;instr", "EPN, EMOS1, EMOS2, ..."),
    ("instrument_mode_oid", "INTEGER", "int", "", "meta.id", "Key into v_instrument_mode"),
    ("mode_friendly_name", "TEXT", "char", "", "instr.setup", "Instrument mode"),
    ("filter", "TEXT", "char", "", "instr.filter", "Filter"),
    ("duration", "REAL", "double", "s", "time.duration", "Exposure duration"),
    ("start_utc", "TEXT", "char", "", "time.start", "Exposure start (UTC)"),
    ("end_utc", "TEXT", "char", "", "time.end", "Exposure end (UTC)"),
    ("is_scientific", "TEXT", "boolean", "", "meta.code", "Scientific exposure"),
    ("epic_bkg_count_rate", "REAL", "double", "ct/s", "phot.count;bkg", "Background rate"),
]
_MODE_COLUMNS: list[tuple[str, str, str, str, str, str]] = [
    ("instrument_mode_oid", "INTEGER", "int", "", "meta.id", "Instrument mode key"),
    ("instrument", "TEXT", "char", "", "meta.id;instr", "Instrument"),
    ("mode", "TEXT", "char", "", "instr.setup", "Instrument mode (SAS name)"),
    ("mode_friendly_name", "TEXT", "char", "", "instr.setup", "Instrument mode (friendly)"),
]

#: Table name -> its columns (see above); v_all_observations has no ``target``.
TABLE_COLUMNS: dict[str, list[tuple[str, str, str, str, str, str]]] = {
    "v_public_observations": _OBS_COLUMNS,
    "v_all_observations": [c for c in _OBS_COLUMNS if c[0] != "target"],
    "v_exposure": _EXP_COLUMNS,
    "v_instrument_mode": _MODE_COLUMNS,
}

_TARGETS = ("Abell 1795", "NGC 4472", "Cas A", "M 87", "Coma cluster", "Lockman Hole",
            "RX J1347.5-1145", "NGC 253", "3C 273", "Perseus cluster", "CDFS", "M 31 Field")


@dataclass(frozen=True)
class StandinExposure:
    """One exposure of a local-archive observation (a row of ``xsa.v_exposure``)."""

    instrument: str
    exposure_id: str
    mode: str
    filter: str
    duration: float
    is_scientific: bool = True


@dataclass
class StandinObservation:
    """One observation of the local archive, its metadata and the expected harvest outcome.

    ``expected`` is ``"ok"``, ``"skip: <reason>"`` (the default selection - public pn full
    frame, scientific, >= 20 ks - leaves it out) or ``"fail: <reason>"`` (selected, but
    harvesting or processing it must fail).
    """

    obsid: str
    kind: str
    expected: str
    ra: float
    dec: float
    position_angle: float
    start_utc: str
    end_utc: str
    duration: float
    revolution: int
    target: str
    public: bool
    proprietary_end_date: str
    pps_version: str
    pps_proc_date: str
    sas_version: str
    exposures: list[StandinExposure]
    seed: int
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def pn_exposures(self) -> list[StandinExposure]:
        """The EPIC-pn exposures."""
        return [e for e in self.exposures if e.instrument == "EPN"]


def _fmt(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def plan_observations(
    n_observations: int, *, seed: int = 0, kinds: Sequence[str] | None = None
) -> list[StandinObservation]:
    """Plan the observations of a local archive (metadata only, no files).

    Parameters
    ----------
    n_observations : int
        Number of observations (>= 1). Kinds follow :data:`DEFAULT_ORDER`, then ``"normal"``.
    seed : int
        Seed of the positions, dates and simulated data.
    kinds : sequence of str, optional
        Explicit kind of each observation (overrides ``n_observations``); see :data:`KINDS`.

    Returns
    -------
    list of StandinObservation
    """
    if kinds is None:
        if n_observations < 1:
            raise ValueError("n_observations must be >= 1")
        kinds = [DEFAULT_ORDER[i] if i < len(DEFAULT_ORDER) else "normal"
                 for i in range(n_observations)]
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown observation kind {k!r} (known: {', '.join(KINDS)})")
    rng = np.random.default_rng(seed)
    base = _dt.datetime(2004, 3, 1, 6, 0, 0)
    proc_base = _dt.datetime(2019, 1, 10, 12, 0, 0)
    now = _dt.datetime(2026, 1, 1)
    out: list[StandinObservation] = []
    for i, kind in enumerate(kinds):
        obsid = f"09{seed % 100:02d}{(i + 1) % 10000:04d}01"
        ra = float(rng.uniform(0.0, 360.0))
        dec = float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.95))))
        pa = float(rng.uniform(0.0, 360.0))
        exp_ks = {"short": 12.0, "flares": 30.0}.get(kind, 25.0)
        start = base + _dt.timedelta(days=97 * i + int(rng.integers(0, 30)), hours=float(rng.uniform(0, 20)))
        duration = exp_ks * 1000.0 + 3000.0
        end = start + _dt.timedelta(seconds=duration)
        proc = proc_base + _dt.timedelta(days=53 * i)
        public = kind != "proprietary"
        if public:
            prop_end = start + _dt.timedelta(days=365)
        else:
            start = now + _dt.timedelta(days=-60 + i)
            end = start + _dt.timedelta(seconds=duration)
            proc = start + _dt.timedelta(days=5)
            prop_end = start + _dt.timedelta(days=365)
        filt = ("Medium", "Thin1", "Thick")[i % 3]
        mos = [StandinExposure("EMOS1", "S001", "PrimeFullWindow", filt, duration - 600),
               StandinExposure("EMOS2", "S002", "PrimeFullWindow", filt, duration - 600)]
        if kind == "mos_only":
            exposures = mos
        else:
            mode = {"extended": "PrimeFullWindowExtended", "timing": "FastTiming"}.get(
                kind, "PrimeFullWindow")
            exposures = [StandinExposure("EPN", "S003", mode, filt, exp_ks * 1000.0)] + mos
            if i == 0 and kind == "normal":
                # A second, short unscheduled pn exposure: its PIEVLI makes the archive
                # answer name=PIEVLI with a tar of two files, as for many real observations.
                exposures.append(StandinExposure("EPN", "U002", mode, filt, 5000.0))
        out.append(
            StandinObservation(
                obsid=obsid, kind=kind, expected=KINDS[kind], ra=ra, dec=dec,
                position_angle=pa, start_utc=_fmt(start), end_utc=_fmt(end),
                duration=duration, revolution=800 + 40 * i, target=_TARGETS[i % len(_TARGETS)],
                public=public, proprietary_end_date=_fmt(prop_end),
                pps_version=f"{17 + i % 4}.0", pps_proc_date=_fmt(proc),
                sas_version=f"{17 + i % 4}.0.0", exposures=exposures,
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return out


#: Radius of the pn field of view used for ``observation_fov_scircle``, degrees (15').
FOV_RADIUS_DEG = 0.25


def build_database(path: Path, observations: Sequence[StandinObservation]) -> None:
    """Write the SQLite database behind the TAP tables.

    Parameters
    ----------
    path : Path
        Database file, replaced if present (attached as schema ``xsa`` when queried).
    observations : sequence of StandinObservation
        The observations to describe.
    """
    # a private temporary name: several servers sharing one cache folder (three
    # `xsa-enhance archive serve` started together) each build their own and the last
    # atomic rename wins (the databases are identical); nothing is left behind
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _fill_database(tmp, observations)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _fill_database(tmp: Path, observations: Sequence[StandinObservation]) -> None:
    conn = sqlite3.connect(tmp)
    try:
        for table, cols in TABLE_COLUMNS.items():
            conn.execute(f"CREATE TABLE {table} ({', '.join(f'{c[0]} {c[1]}' for c in cols)})")
        conn.executemany(
            "INSERT INTO v_instrument_mode VALUES (?, ?, ?, ?)", list(INSTRUMENT_MODES))
        exp_oid = 1000
        for n, obs in enumerate(observations):
            oid = 100000 + n
            row = {
                "observation_id": obs.obsid, "observation_oid": oid, "ra": obs.ra,
                "dec": obs.dec, "duration": obs.duration, "start_utc": obs.start_utc,
                "end_utc": obs.end_utc, "position_angle": obs.position_angle,
                "revolution": obs.revolution, "target": obs.target,
                "proprietary_end_date": obs.proprietary_end_date,
                "pps_version": obs.pps_version, "pps_proc_date": obs.pps_proc_date,
                "sas_version": obs.sas_version,
                "observation_equatorial_spoint": f"POINT ICRS {obs.ra!r} {obs.dec!r}",
                "observation_fov_scircle": f"CIRCLE ICRS {obs.ra!r} {obs.dec!r} {FOV_RADIUS_DEG!r}",
            }
            for table in ("v_all_observations", "v_public_observations"):
                if table == "v_public_observations" and not obs.public:
                    continue
                cols = [c[0] for c in TABLE_COLUMNS[table]]
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [row[c] for c in cols],
                )
            start = _dt.datetime.strptime(obs.start_utc, "%Y-%m-%d %H:%M:%S")
            for e in obs.exposures:
                exp_oid += 1
                e_start = start + _dt.timedelta(seconds=300)
                e_end = e_start + _dt.timedelta(seconds=e.duration)
                conn.execute(
                    "INSERT INTO v_exposure VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [obs.obsid, oid, e.exposure_id, exp_oid, e.instrument,
                     _MODE_OID[(e.instrument, e.mode)], _MODE_FRIENDLY[(e.instrument, e.mode)],
                     e.filter, e.duration, _fmt(e_start), _fmt(e_end),
                     "true" if e.is_scientific else "false",
                     2.5 if obs.kind == "flares" else 0.4],
                )
        conn.commit()
    finally:
        conn.close()
