"""Event-level simulation of an XMM-Newton observation, written as PPS-like products.

:func:`simulate_observation` draws the events of one exposure (particle background, sky
background, soft-proton flares, AGN and optionally one extended source), puts them through
the instrument model (vignetting, King PSF, CCD layout, out-of-time events, patterns, flags)
and writes

* ``P<obsid>PNS003PIEVLI0000.FTZ``: gzipped FITS with ``EVENTS`` (the 14 PPS columns with
  their formats, TLMIN/TLMAX and TNULL) and ``STDGTI01..12``;
* ``P<obsid>PNS003FBKTSR0000.FTZ``: the flaring-background light curve (``RATE`` extension,
  10-12 keV ``PATTERN == 0`` events in 100 s bins, with ``FLCUTTHR``).

MOS exposures (``EMOS1``/``EMOS2``: ``P<obsid>M1S001MIEVLI0000.FTZ``) and other pn modes
(small window, timing) can be written too so that the processing pipeline can be shown to
reject them. See ``docs/simulator.md`` for the model and its known differences from real data.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.time import Time

from xsa_enhance.errors import ConfigError, InputFileError, ObservationError
from xsa_enhance.formats.pps import INSTRUMENTS, MJDREF, pps_file_name
from xsa_enhance.instrument import geometry as geo
from xsa_enhance.instrument.background import Flare
from xsa_enhance.instrument.detector import ReadoutMode, mode_for_submode
from xsa_enhance.instrument.psf import PSF_HANDBOOK, KingPSF
from xsa_enhance.obsid import validate_obsid as _validate_obsid
from xsa_enhance.simulate.detector_response import detect_events
from xsa_enhance.simulate.event_components import DrawnField, SourceMix, draw_components
from xsa_enhance.simulate.pps_files import (
    FBK_BAND_EV,
    FBK_TIMEDEL,
    ExposureInfo,
    expected_quiet_fbk_rate,
    exposure_header,
    write_fbktsr,
    write_pievli,
)

__all__ = [
    "FBK_BAND_EV",
    "FBK_TIMEDEL",
    "INSTRUMENTS",
    "MJDREF",
    "SourceMix",
    "SimulatedObservation",
    "expected_quiet_fbk_rate",
    "product_name",
    "simulate_observation",
    "validate_obsid",
]

logger = logging.getLogger(__name__)

FILTERS: tuple[str, ...] = ("Thin1", "Thin2", "Medium", "Thick")


def validate_obsid(obsid: str) -> str:
    """Check that ``obsid`` is a 10-digit XMM observation identifier and return it.

    The check is :func:`xsa_enhance.obsid.validate_obsid` (the package's one validator), without
    its blank stripping: the id goes into file names as given.

    Raises
    ------
    ConfigError
        When it is not (it is used in file names, so nothing else is accepted).
    """
    try:
        text = _validate_obsid(obsid, source="simulator")
    except ObservationError:
        text = None
    if text is None or text != obsid:
        raise ConfigError(f"invalid observation id {obsid!r}: expected exactly 10 digits")
    return obsid


def product_name(obsid: str, *, instrument: str = "EPN", product: str = "PIEVLI") -> str:
    """PPS file name of an event list or light curve, e.g. ``P0123700101PNS003PIEVLI0000.FTZ``.

    Parameters
    ----------
    obsid : str
        10-digit observation id (validated).
    instrument : str
        ``EPN``, ``EMOS1`` or ``EMOS2``.
    product : str
        ``PIEVLI``/``MIEVLI`` (the instrument's event list) or ``FBKTSR``.
    """
    return pps_file_name(validate_obsid(obsid), instrument=instrument, product=product)


@dataclass(frozen=True)
class SimulatedObservation:
    """What :func:`simulate_observation` wrote, and the truth behind it.

    Attributes
    ----------
    obsid : str
    pievli : Path
        The event list.
    fbktsr : Path or None
        The flaring-background light curve (None when disabled or for timing mode).
    ra_pnt, dec_pnt, pa_pnt : float
        Pointing (degrees).
    date_obs, date_end : str
        UTC ISO times of the exposure start and end.
    tstart, tstop, ontime, livetime : float
        Mission times (s) and exposure.
    submode, datamode, instrument, filter : str
    n_events : int
        Number of rows in EVENTS.
    gtis : tuple of (float, float)
        The good time intervals (identical for all CCDs).
    flares : tuple of Flare
        Injected soft-proton flares (empty when disabled).
    flcutthr : float or None
        The FLCUTTHR written into the FBKTSR file.
    quiet_fbk_rate : float
        Expected quiescent 10-12 keV PATTERN==0 rate (counts/s).
    agn_detx, agn_dety, agn_rate : ndarray
        Injected point sources (DET position, on-axis screened 0.5-2 keV counts/s).
    agn_ra, agn_dec : ndarray
        Their sky positions.
    absorption : float or None
        AGN absorption factor.
    extended_kind : str or None
        The injected extended source, if any; ``extended_params`` its parameters.
    seed : int
    """

    obsid: str
    pievli: Path
    fbktsr: Path | None
    ra_pnt: float
    dec_pnt: float
    pa_pnt: float
    date_obs: str
    date_end: str
    tstart: float
    tstop: float
    ontime: float
    livetime: float
    submode: str
    datamode: str
    instrument: str
    filter: str
    n_events: int
    gtis: tuple[tuple[float, float], ...]
    flares: tuple[Flare, ...]
    flcutthr: float | None
    quiet_fbk_rate: float
    agn_detx: np.ndarray = field(repr=False)
    agn_dety: np.ndarray = field(repr=False)
    agn_rate: np.ndarray = field(repr=False)
    agn_ra: np.ndarray = field(repr=False)
    agn_dec: np.ndarray = field(repr=False)
    absorption: float | None
    extended_kind: str | None
    extended_params: dict = field(repr=False)
    seed: int

    @property
    def flare_intervals(self) -> tuple[tuple[float, float], ...]:
        """Where each injected flare exceeds ~4 % of its peak (start, stop)."""
        return tuple(f.interval for f in self.flares)


def _mission_time(date_iso: str) -> float:
    t = Time(date_iso, format="isot", scale="utc")
    return float((t.tt.mjd - MJDREF) * 86400.0)


def _iso_from_mission(tsec: float) -> str:
    t = Time(MJDREF + tsec / 86400.0, format="mjd", scale="tt")
    return t.utc.isot[:19]


def _check_options(*, obsid: str, instrument: str, filter: str, submode: str,  # noqa: A002
                   exposure_ks: float, dec: float | None) -> ReadoutMode:
    """Refuse bad options (:class:`ConfigError`); return the read-out mode of ``submode``."""
    validate_obsid(obsid)
    if instrument not in INSTRUMENTS:
        raise ConfigError(
            f"unknown instrument {instrument!r}; expected one of {sorted(INSTRUMENTS)}")
    if filter not in FILTERS:
        raise ConfigError(f"unknown filter {filter!r}; expected one of {FILTERS}")
    try:
        mode = mode_for_submode(submode)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not (exposure_ks > 0 and np.isfinite(exposure_ks)):
        raise ConfigError(f"exposure must be a positive number of ks, got {exposure_ks}")
    if exposure_ks > 200:
        raise ConfigError(f"exposure {exposure_ks} ks is longer than an XMM revolution allows")
    if dec is not None and not -90.0 <= dec <= 90.0:
        raise ConfigError(f"declination {dec} outside [-90, 90]")
    return mode


def _pointing_and_times(rng: np.random.Generator, *, ra: float | None, dec: float | None,
                        pa: float | None, date_obs: str | None, exposure_ks: float,
                        data_gap: bool) -> tuple[tuple[float, float, float], str, np.ndarray]:
    """Pointing (random where not given), UTC start and GTIs (one hole with ``data_gap``)."""
    ra_pnt = float(rng.uniform(0, 360)) if ra is None else float(ra) % 360.0
    dec_pnt = float(np.rad2deg(np.arcsin(rng.uniform(-1, 1)))) if dec is None else float(dec)
    pa_pnt = float(rng.uniform(0, 360)) if pa is None else float(pa) % 360.0
    if date_obs is None:
        start = 94694400.0 + rng.uniform(0, 22 * 365.25 * 86400)  # 2001 .. 2023
        date_obs = _iso_from_mission(float(np.floor(start)))
    try:
        tstart = float(np.floor(_mission_time(date_obs)))
    except ValueError:
        raise ConfigError(f"invalid date_obs {date_obs!r}: expected YYYY-MM-DDThh:mm:ss") from None
    length = exposure_ks * 1000.0
    tstop = tstart + length
    if data_gap:
        g0 = tstart + length * float(rng.uniform(0.3, 0.6))
        g1 = g0 + float(rng.uniform(300.0, 1500.0))
        gtis = np.array([[tstart, g0], [g1, tstop]])
    else:
        gtis = np.array([[tstart, tstop]])
    return (ra_pnt, dec_pnt, pa_pnt), date_obs, gtis


def _truth(info: ExposureInfo, field_: DrawnField, *, pievli: Path, fbktsr: Path | None,
           gtis: np.ndarray, n_events: int, flcutthr: float | None,
           quiet_rate: float) -> SimulatedObservation:
    """The :class:`SimulatedObservation` of what was written and drawn."""
    agn, ext = field_.agn, field_.extended
    if agn is not None and len(agn):
        sx, sy = geo.det_to_sky(agn.detx, agn.dety, pa_deg=info.pa_pnt)
        a_ra, a_dec = geo.sky_to_radec(sx, sy, ra_pnt=info.ra_pnt, dec_pnt=info.dec_pnt)
    else:
        a_ra = a_dec = np.empty(0)
    return SimulatedObservation(
        obsid=info.obsid,
        pievli=pievli,
        fbktsr=fbktsr,
        ra_pnt=info.ra_pnt,
        dec_pnt=info.dec_pnt,
        pa_pnt=info.pa_pnt,
        date_obs=info.date_obs,
        date_end=info.date_end,
        tstart=info.tstart,
        tstop=info.tstop,
        ontime=info.ontime,
        livetime=info.livetime,
        submode=info.mode.submode,
        datamode=info.mode.datamode,
        instrument=info.instrument,
        filter=info.filter,
        n_events=n_events,
        gtis=tuple((float(a), float(b)) for a, b in gtis),
        flares=field_.flares.flares,
        flcutthr=flcutthr,
        quiet_fbk_rate=quiet_rate,
        agn_detx=agn.detx if agn is not None else np.empty(0),
        agn_dety=agn.dety if agn is not None else np.empty(0),
        agn_rate=agn.rate if agn is not None else np.empty(0),
        agn_ra=a_ra,
        agn_dec=a_dec,
        absorption=agn.absorption if agn is not None else None,
        extended_kind=ext.kind if ext is not None else None,
        extended_params=dict(ext.params) if ext is not None else {},
        seed=int(info.seed),
    )


def simulate_observation(
    out_dir: str | os.PathLike,
    *,
    obsid: str,
    exposure_ks: float,
    seed: int,
    flares: bool = True,
    with_fbktsr: bool = True,
    submode: str = "PrimeFullWindow",
    instrument: str = "EPN",
    filter: str = "Medium",  # noqa: A002 - the FITS keyword name
    ra: float | None = None,
    dec: float | None = None,
    pa: float | None = None,
    date_obs: str | None = None,
    sources: SourceMix = SourceMix(),
    psf: KingPSF = PSF_HANDBOOK,
    data_gap: bool = False,
    flare_list: tuple[Flare, ...] | None = None,
    out_of_time: bool = True,
) -> SimulatedObservation:
    """Simulate one exposure and write its PIEVLI (and FBKTSR) files into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder to write into (created if needed).
    obsid : str
        10-digit observation id (validated; used in the file names and ``OBS_ID``).
    exposure_ks : float
        Exposure length in ks (TSTOP - TSTART).
    seed : int
        Random seed; the same (seed, obsid, options) give identical files.
    flares : bool
        Inject soft-proton flares (random unless ``flare_list`` is given).
    with_fbktsr : bool
        Write the FBKTSR light curve (never for timing mode).
    submode : str
        pn ``SUBMODE`` (``PrimeFullWindow``, ``PrimeFullWindowExtended``,
        ``PrimeLargeWindow``, ``PrimeSmallWindow``, ``FastTiming``).
    instrument : str
        ``EPN`` (default) or ``EMOS1``/``EMOS2`` (written with pn-like content, for rejection
        tests only).
    filter : str
        ``FILTER`` keyword.
    ra, dec, pa : float, optional
        Pointing and position angle (degrees); random when None.
    date_obs : str, optional
        UTC start (ISO ``YYYY-MM-DDThh:mm:ss``); random in 2001-2022 when None.
    sources : SourceMix
        Field content and background rates.
    psf : KingPSF
        PSF model.
    data_gap : bool
        Insert a telemetry gap (a hole in the GTIs and NaN bins in FBKTSR).
    flare_list : tuple of Flare, optional
        Explicit flares (times relative to TSTART are *not* applied: give mission times).
    out_of_time : bool
        Simulate out-of-time events (the mode's fraction of photons smeared along RAWY).

    Returns
    -------
    SimulatedObservation
    """
    mode = _check_options(obsid=obsid, instrument=instrument, filter=filter, submode=submode,
                          exposure_ks=exposure_ks, dec=dec)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(out, f"cannot create output folder: {exc.strerror}") from None

    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(obsid)]))
    (ra_pnt, dec_pnt, pa_pnt), date_obs, gtis = _pointing_and_times(
        rng, ra=ra, dec=dec, pa=pa, date_obs=date_obs, exposure_ks=exposure_ks, data_gap=data_gap)
    tstart, tstop = float(gtis[0, 0]), float(gtis[-1, 1])
    ontime = float((gtis[:, 1] - gtis[:, 0]).sum())
    drawn = draw_components(rng, sources, gtis=gtis, tstart=tstart, tstop=tstop, ontime=ontime,
                            flares=flares, flare_list=flare_list, psf=psf)
    detected = detect_events(rng, drawn.events, mode, out_of_time=out_of_time, pa_deg=pa_pnt)

    info = ExposureInfo(
        obsid=obsid, instrument=instrument, filter=filter, mode=mode, ra_pnt=ra_pnt,
        dec_pnt=dec_pnt, pa_pnt=pa_pnt, date_obs=date_obs, date_end=_iso_from_mission(tstop),
        tstart=tstart, tstop=tstop, ontime=ontime, livetime=ontime * mode.live_fraction,
        seed=int(seed),
    )
    _, expid, evli = INSTRUMENTS[instrument]
    header = exposure_header(info, expid=expid)
    pievli = write_pievli(out, info, detected, gtis, header=header, product=evli)
    q = expected_quiet_fbk_rate(particle_rate=sources.particle_rate, sky_rate=sources.sky_rate)
    fbktsr: Path | None = None
    flcutthr: float | None = None
    if with_fbktsr and mode.datamode != "TIMING":
        fbktsr, flcutthr = write_fbktsr(out, info, detected, gtis, header=header, quiet_rate=q)
    logger.info("simulated %s: %d events, %d flares -> %s", obsid, detected.n_events,
                len(drawn.flares.flares), pievli)
    return _truth(info, drawn, pievli=pievli, fbktsr=fbktsr, gtis=gtis,
                  n_events=detected.n_events, flcutthr=flcutthr, quiet_rate=q)
