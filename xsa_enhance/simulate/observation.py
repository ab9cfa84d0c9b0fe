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

import gzip
import io
import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from xsa_enhance._version import __version__
from xsa_enhance.errors import ConfigError, InputFileError, ObservationError
from xsa_enhance.instrument import geometry as geo
from xsa_enhance.instrument.background import (
    PARTICLE_RATE,
    SKY_RATE,
    Flare,
    FlareModel,
    particle_total_rate_density,
    random_flares,
    sky_total_rate_density,
)
from xsa_enhance.instrument.detector import (
    FLAG_CCD_BORDER,
    FLAG_NEXT_TO_BADPIX,
    FLAG_OUT_OF_FOV,
    PATTERN_MIX_PARTICLE,
    PATTERN_MIX_XRAY,
    mode_for_submode,
    pi_to_pha,
    sample_patterns,
)
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X
from xsa_enhance.instrument.mask import mask_coverage
from xsa_enhance.instrument.psf import PSF_HANDBOOK, KingPSF
from xsa_enhance.obsid import validate_obsid as _validate_obsid
from xsa_enhance.instrument.spectra import (
    PARTICLE_SPECTRUM,
    SKY_SPECTRUM,
    SOFT_PROTON_SPECTRUM,
    SOURCE_SPECTRUM,
)
from xsa_enhance.instrument.vignetting import SOFT_PROTON_VIGNETTING_POWER, vignetting_det
from xsa_enhance.simulate.sources import AgnPopulation, ExtendedSource, draw_agn, draw_extended

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

#: MJD of XMM mission time zero (1998-01-01T00:00:00 TT).
MJDREF: float = 50814.0
#: Time bin of the FBKTSR light curve (s) and its energy band (PI, eV).
FBK_TIMEDEL: float = 100.0
FBK_BAND_EV: tuple[float, float] = (10000.0, 12000.0)
#: Instruments that can be written: INSTRUME -> (file code, exposure number, product code).
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "EPN": ("PN", "S003", "PIEVLI"),
    "EMOS1": ("M1", "S001", "MIEVLI"),
    "EMOS2": ("M2", "S002", "MIEVLI"),
}
FILTERS: tuple[str, ...] = ("Thin1", "Thin2", "Medium", "Thick")

_GZIP_LEVEL = 1


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
        10-digit observation id.
    instrument : str
        ``EPN``, ``EMOS1`` or ``EMOS2``.
    product : str
        ``PIEVLI``/``MIEVLI`` (event list, chosen from the instrument when ``"EVLI"``-like) or
        ``FBKTSR``.
    """
    validate_obsid(obsid)
    code, expid, evli = INSTRUMENTS[instrument]
    if product in ("PIEVLI", "MIEVLI"):
        product = evli
    return f"P{obsid}{code}{expid}{product}0000.FTZ"


@dataclass(frozen=True)
class SourceMix:
    """What is in the simulated field.

    Parameters
    ----------
    agn : bool
        Draw AGN from the logN-logS.
    absorption : float, optional
        AGN absorption factor; log-uniform in [1, 100] when None.
    agn_s_min : float
        Faintest AGN flux drawn (erg/cm^2/s, before absorption).
    extended : str or None
        ``"random"``, one of the extended kinds (``cluster``, ``group``, ``snr``, ``spiral``,
        ``elliptical``) or None for no extended source.
    extended_brightness_sigma : (float, float)
        Central brightness range in sigma_B (20 ks) units.
    particle_rate, sky_rate : float
        Background rates (0.5-2 keV screened counts/s/arcmin^2).
    point_sources : tuple of (detx, dety, rate)
        Extra point sources (a target, calibration sources): DET position and on-axis
        screened 0.5-2 keV count rate (counts/s) before vignetting.
    """

    agn: bool = True
    absorption: float | None = None
    agn_s_min: float = 1e-16
    extended: str | None = "random"
    extended_brightness_sigma: tuple[float, float] = (5.0, 50.0)
    particle_rate: float = PARTICLE_RATE
    sky_rate: float = SKY_RATE
    point_sources: tuple[tuple[float, float, float], ...] = ()


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


# --------------------------------------------------------------------------------------------
# helpers


@lru_cache(maxsize=1)
def _fov_geometry() -> tuple[float, float, float, float]:
    """Good area in the FOV (arcmin^2), mean SP efficiency, CCD area, vignetted good area."""
    cov = mask_coverage(GRID_1X)
    pix = (GRID_1X.pixel_arcsec / 60.0) ** 2
    good_area = float(cov.sum() * pix)
    xx, yy = np.meshgrid(GRID_1X.x_centres, GRID_1X.y_centres)
    fov = geo.in_fov(xx, yy)
    eff = vignetting_det(xx, yy) ** SOFT_PROTON_VIGNETTING_POWER
    # fraction of soft protons (uniform over FOV, thinned) landing on good pixels
    sp_eff = float((eff * cov).sum() / fov.sum())
    ccd_area = 12 * geo.N_RAWX * geo.N_RAWY * (geo.PIXEL_ARCSEC / 60.0) ** 2
    vign_area = float((vignetting_det(xx, yy) * cov).sum() * pix)
    return good_area, sp_eff, ccd_area, vign_area


def expected_quiet_fbk_rate(
    *, particle_rate: float = PARTICLE_RATE, sky_rate: float = SKY_RATE
) -> float:
    """Expected quiescent FBKTSR rate (counts/s): 10-12 keV, PATTERN 0, FLAG 0 events of the
    particle and sky backgrounds (sources not included)."""
    good_area, _, _, vign_area = _fov_geometry()
    particle = (
        particle_total_rate_density(particle_rate)
        * good_area
        * PARTICLE_SPECTRUM.band_fraction(*FBK_BAND_EV)
        * float(PATTERN_MIX_PARTICLE[0])
    )
    sky = (
        sky_total_rate_density(sky_rate)
        * vign_area
        * SKY_SPECTRUM.band_fraction(*FBK_BAND_EV)
        * float(PATTERN_MIX_XRAY[0])
    )
    return particle + sky


def _mission_time(date_iso: str) -> float:
    t = Time(date_iso, format="isot", scale="utc")
    return float((t.tt.mjd - MJDREF) * 86400.0)


def _iso_from_mission(tsec: float) -> str:
    t = Time(MJDREF + tsec / 86400.0, format="mjd", scale="tt")
    return t.utc.isot[:19]


def _uniform_times(rng: np.random.Generator, n: int, gtis: np.ndarray) -> np.ndarray:
    lengths = gtis[:, 1] - gtis[:, 0]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    u = rng.random(n) * cum[-1]
    k = np.searchsorted(cum, u, side="right") - 1
    k = np.clip(k, 0, len(gtis) - 1)
    return gtis[k, 0] + (u - cum[k])


def _in_gtis(t: np.ndarray, gtis: np.ndarray) -> np.ndarray:
    ok = np.zeros(t.shape, dtype=bool)
    for a, b in gtis:
        ok |= (t >= a) & (t < b)
    return ok


def _uniform_in_fov(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    r = geo.FOV_RADIUS_DET * np.sqrt(rng.random(n))
    phi = rng.random(n) * 2 * np.pi
    return geo.FOV_CENTRE_DET[0] + r * np.cos(phi), geo.FOV_CENTRE_DET[1] + r * np.sin(phi)


def _uniform_on_ccds(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    ccd = rng.integers(1, 13, n)
    rawx = 0.5 + rng.random(n) * geo.N_RAWX
    rawy = 0.5 + rng.random(n) * geo.N_RAWY
    return geo.raw_to_det(ccd, rawx, rawy)


class _Events:
    """Accumulates event components (float DET positions, times, PI, patterns)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, detx, dety, time, pi, pattern, is_xray: bool) -> None:
        flag = np.full(detx.shape, is_xray, dtype=bool)
        self.parts.append((detx, dety, time, pi, pattern, flag))

    def concat(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            e = np.empty(0)
            return e, e, e, e, np.empty(0, np.uint8), np.empty(0, bool)
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(6))


def _photon_events(
    rng: np.random.Generator,
    detx: np.ndarray,
    dety: np.ndarray,
    gtis: np.ndarray,
    psf: KingPSF,
    events: _Events,
) -> None:
    """Source photons at intrinsic DET positions: vignetting, energies, PSF, times."""
    n = detx.size
    if n == 0:
        return
    theta = geo.off_axis_arcmin(detx, dety)
    keep = rng.random(n) < vignetting_det(detx, dety)
    detx, dety, theta = detx[keep], dety[keep], theta[keep]
    n = detx.size
    pi = SOURCE_SPECTRUM.sample(rng, n)
    dx, dy = psf.scatter(rng, n, energy_kev=pi / 1000.0, theta_arcmin=theta)
    detx = detx + dx / 0.05
    dety = dety + dy / 0.05
    inside = geo.in_fov(detx, dety)
    n = int(inside.sum())
    events.add(
        detx[inside], dety[inside], _uniform_times(rng, n, gtis), pi[inside],
        sample_patterns(rng, n, PATTERN_MIX_XRAY), True,
    )


def _all_event_scale() -> float:
    """All-energy, all-pattern photon events per screened 0.5-2 keV count."""
    return 1.0 / (SOURCE_SPECTRUM.band_fraction(500, 2000) * float(PATTERN_MIX_XRAY[:5].sum()))


def _write_ftz(hdul: fits.HDUList, path: Path) -> None:
    buf = io.BytesIO()
    hdul.writeto(buf, checksum=False)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(gzip.compress(buf.getvalue(), compresslevel=_GZIP_LEVEL, mtime=0))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------


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
    validate_obsid(obsid)
    if instrument not in INSTRUMENTS:
        raise ConfigError(f"unknown instrument {instrument!r}; expected one of {sorted(INSTRUMENTS)}")
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
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(out, f"cannot create output folder: {exc.strerror}") from None

    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(obsid)]))
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
    ontime = float((gtis[:, 1] - gtis[:, 0]).sum())
    livetime = ontime * mode.live_fraction

    events = _Events()
    good_area, sp_eff, ccd_area, _ = _fov_geometry()

    # Particle background: everywhere on the CCDs, slowly varying by a few per cent.
    p_rate = particle_total_rate_density(sources.particle_rate) * ccd_area
    n = int(rng.poisson(p_rate * ontime * 1.05))
    t = _uniform_times(rng, n, gtis)
    phase = rng.uniform(0, 2 * np.pi)
    period = rng.uniform(10e3, 40e3)
    # zero-mean modulation over the exposure, so the mean rate is exactly the nominal one
    tg = np.linspace(tstart, tstop, 2001)
    wg = _in_gtis(tg, gtis).astype(float)
    mod_mean = float((np.sin(2 * np.pi * (tg - tstart) / period + phase) * wg).sum() / wg.sum())
    mod = 0.05 * (np.sin(2 * np.pi * (t - tstart) / period + phase) - mod_mean)
    keep = rng.random(n) * 1.05 < 1.0 + mod
    t = t[keep]
    n = t.size
    x, y = _uniform_on_ccds(rng, n)
    events.add(x, y, t, PARTICLE_SPECTRUM.sample(rng, n),
               sample_patterns(rng, n, PATTERN_MIX_PARTICLE), False)

    # Sky background: uniform over the FOV, vignetted.
    fov_area = np.pi * (geo.FOV_RADIUS_DET * 0.05 / 60.0) ** 2
    n = int(rng.poisson(sky_total_rate_density(sources.sky_rate) * fov_area * ontime))
    x, y = _uniform_in_fov(rng, n)
    keep = rng.random(n) < vignetting_det(x, y)
    x, y = x[keep], y[keep]
    n = x.size
    events.add(x, y, _uniform_times(rng, n, gtis), SKY_SPECTRUM.sample(rng, n),
               sample_patterns(rng, n, PATTERN_MIX_XRAY), True)

    # Soft-proton flares.
    if flares:
        model = FlareModel(tuple(flare_list)) if flare_list is not None else random_flares(
            rng, tstart=tstart, tstop=tstop
        )
    else:
        model = FlareModel(())
    if model.flares:
        edges = np.arange(tstart, tstop + 10.0, 10.0)
        edges[-1] = min(edges[-1], tstop)
        mid = 0.5 * (edges[:-1] + edges[1:])
        dt = np.diff(edges)
        # events before spatial thinning so that the FBKTSR shows the requested peak rate
        lam = model.total_rate(mid) * dt / sp_eff
        counts = rng.poisson(lam)
        t = np.repeat(edges[:-1], counts) + rng.random(counts.sum()) * np.repeat(dt, counts)
        t = t[_in_gtis(t, gtis)]
        n = t.size
        x, y = _uniform_in_fov(rng, n)
        keep = rng.random(n) < vignetting_det(x, y) ** SOFT_PROTON_VIGNETTING_POWER
        x, y, t = x[keep], y[keep], t[keep]
        n = t.size
        events.add(x, y, t, SOFT_PROTON_SPECTRUM.sample(rng, n),
                   sample_patterns(rng, n, PATTERN_MIX_XRAY), True)

    # AGN.
    scale = _all_event_scale()
    agn: AgnPopulation | None = None
    if sources.agn:
        agn = draw_agn(rng, absorption=sources.absorption, s_min=sources.agn_s_min)
        counts = rng.poisson(agn.rate * ontime * scale)
        _photon_events(rng, np.repeat(agn.detx, counts), np.repeat(agn.dety, counts),
                       gtis, psf, events)

    # Explicit point sources.
    if sources.point_sources:
        ps = np.asarray(sources.point_sources, dtype=np.float64).reshape(-1, 3)
        counts = rng.poisson(ps[:, 2] * ontime * scale)
        _photon_events(rng, np.repeat(ps[:, 0], counts), np.repeat(ps[:, 1], counts),
                       gtis, psf, events)

    # Extended source.
    ext: ExtendedSource | None = None
    if sources.extended is not None:
        kind = None if sources.extended == "random" else sources.extended
        try:
            ext = draw_extended(rng, kind=kind,
                                brightness_sigma=sources.extended_brightness_sigma)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        img = ext.rate_image(GRID_2X) * (ontime * scale)
        total = float(img.sum())
        n = int(rng.poisson(total))
        flat = img.ravel() / total
        idx = rng.choice(flat.size, size=n, p=flat)
        iy, ix = np.divmod(idx, GRID_2X.nx)
        x = GRID_2X.x_edge0 + (ix + rng.random(n)) * GRID_2X.binsize
        y = GRID_2X.y_edge0 + (iy + rng.random(n)) * GRID_2X.binsize
        _photon_events(rng, x, y, gtis, psf, events)

    detx, dety, time, pi, pattern, is_xray = events.concat()

    # Out-of-time events: photons registered during read-out land at a random RAWY.
    ccdnr, rawx, rawy = geo.det_to_raw(detx, dety)
    oot_frac = mode.oot_fraction if out_of_time else 0.0
    oot = is_xray & (ccdnr > 0) & (rng.random(detx.size) < oot_frac)
    if oot.any():
        # DETX depends on RAWX only and DETY on RAWY only: keep the column, redraw the row.
        new_rawy = 0.5 + rng.random(int(oot.sum())) * geo.N_RAWY
        dety[oot] = geo.raw_to_det(ccdnr[oot], np.ones(new_rawy.size), new_rawy)[1]
        rawy[oot] = np.floor(new_rawy + 0.5).astype(np.int64)

    # Read-out window of the mode.
    ok = (ccdnr > 0) & np.isin(ccdnr, mode.ccds)
    ok &= (rawy >= mode.rawy_range[0]) & (rawy <= mode.rawy_range[1])
    ok &= (rawx >= mode.rawx_range[0]) & (rawx <= mode.rawx_range[1])
    order = np.argsort(time[ok], kind="stable")
    sel = np.nonzero(ok)[0][order]
    detx, dety, time, pi, pattern = detx[sel], dety[sel], time[sel], pi[sel], pattern[sel]
    ccdnr, rawx, rawy = ccdnr[sel], rawx[sel], rawy[sel]
    n_ev = int(time.size)

    flag = np.zeros(n_ev, dtype=np.int32)
    flag[(rawx == 1) | (rawx == geo.N_RAWX) | (rawy == geo.N_RAWY)] |= FLAG_CCD_BORDER
    flag[rng.random(n_ev) < 0.002] |= FLAG_NEXT_TO_BADPIX
    detx_i = np.rint(detx).astype(np.int16)
    dety_i = np.rint(dety).astype(np.int16)
    flag[~geo.in_fov(detx_i, dety_i)] |= FLAG_OUT_OF_FOV
    skyx, skyy = geo.det_to_sky(detx, dety, pa_deg=pa_pnt)
    skyx = np.rint(skyx).astype(np.int32)
    skyy = np.rint(skyy).astype(np.int32)
    bad_sky = (skyx < 1) | (skyx > geo.SKY_XMAX) | (skyy < 1) | (skyy > geo.SKY_XMAX)
    skyx[bad_sky] = -99999999
    skyy[bad_sky] = -99999999
    pi_i = np.rint(pi).astype(np.int16)
    pha = pi_to_pha(pi, ccdnr, rng)

    date_end = _iso_from_mission(tstop)
    code, expid, evli = INSTRUMENTS[instrument]
    exp_id = f"{obsid}{expid[1:]}"
    common = {
        "TELESCOP": ("XMM", "Telescope (mission) name"),
        "INSTRUME": (instrument, "Instrument name"),
        "OBS_MODE": ("POINTING", "Observation mode (pointing or slew)"),
        "OBS_ID": (obsid, "Observation identifier"),
        "EXP_ID": (exp_id, "Exposure identifier"),
        "EXPIDSTR": (expid, "Exposure identifier (Xnnn)"),
        "DATAMODE": (mode.datamode, "Instrument mode (IMAGING, TIMING, BURST, etc.)"),
        "SUBMODE": (mode.submode, "Guest Observer mode"),
        "FILTER": (filter, "Filter ID"),
        "FRMTIME": (int(round(mode.frame_time_s * 1000)), "[ms] Frame Time, nearest integer"),
        "OBJECT": (f"SIM {obsid}", "Name of observed object"),
        "RA_OBJ": (ra_pnt, "[deg] Right ascension of the target"),
        "DEC_OBJ": (dec_pnt, "[deg] Declination of the target"),
        "RA_PNT": (ra_pnt, "[deg] Mean pointing RA"),
        "DEC_PNT": (dec_pnt, "[deg] Mean pointing Dec"),
        "PA_PNT": (pa_pnt, "[deg] Mean position angle"),
        "RA_NOM": (ra_pnt, "[deg] Nominal pointing RA"),
        "DEC_NOM": (dec_pnt, "[deg] Nominal pointing Dec"),
        "DATE-OBS": (date_obs, "Start Time (UTC) of exposure"),
        "DATE-END": (date_end, "End Time (UTC) of exposure"),
        "TIMESYS": ("TT", "XMM time will be TT (Terrestial Time)"),
        "MJDREF": (MJDREF, "[d] 1998-01-01T00:00:00 (TT) expressed in MJD"),
        "TIMEZERO": (0, "Clock correction (if not zero)"),
        "TIMEUNIT": ("s", "All times in s unless specified otherwise"),
        "TIMEREF": ("LOCAL", "Reference location of photon arrival times"),
        "TASSIGN": ("SATELLITE", "Location of time assignment"),
        "CREATOR": (f"xsa-enhance simulate {__version__}", "Simulated data, not real"),
        "SIMULATD": (True, "Written by the xsa-enhance simulator"),
        "SIMSEED": (int(seed), "Simulator seed"),
    }
    timekw = {
        "TSTART": (tstart, "Date of first event"),
        "TSTOP": (tstop, "Date of last event"),
        "ONTIME": (ontime, "[s] Sum of GTIs"),
        "LIVETIME": (livetime, "[s] Ontime times live fraction"),
        "EXPOSURE": (livetime, "[s] Exposure (live time)"),
    }

    primary = fits.PrimaryHDU()
    for k, v in {**common, **timekw}.items():
        primary.header[k] = v
    sky_kw = geo.sky_wcs_keywords(ra_nom=ra_pnt, dec_nom=dec_pnt)
    cols = [
        fits.Column("TIME", "D", unit="s", array=time),
        fits.Column("RAWX", "I", array=rawx.astype(np.int16)),
        fits.Column("RAWY", "I", array=rawy.astype(np.int16)),
        fits.Column("DETX", "I", unit="0.05 arcsec", array=detx_i),
        fits.Column("DETY", "I", unit="0.05 arcsec", array=dety_i),
        fits.Column("X", "J", unit="0.05 arcsec", null=-99999999, array=skyx),
        fits.Column("Y", "J", unit="0.05 arcsec", null=-99999999, array=skyy),
        fits.Column("PHA", "I", unit="CHANNEL", array=pha),
        fits.Column("PI", "I", unit="CHANNEL", array=pi_i),
        fits.Column("FLAG", "J", array=flag),
        fits.Column("PATTERN", "B", array=pattern.astype(np.uint8)),
        fits.Column("PAT_ID", "I", array=np.zeros(n_ev, np.int16)),
        fits.Column("PAT_SEQ", "B", array=np.zeros(n_ev, np.uint8)),
        fits.Column("CCDNR", "B", array=ccdnr.astype(np.uint8)),
    ]
    ev = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    h = ev.header
    limits = {
        "RAWX": (1, 64), "RAWY": (1, 200), "DETX": (-18500, 14500), "DETY": (-18500, 16000),
        "X": (1, geo.SKY_XMAX), "Y": (1, geo.SKY_XMAX), "PHA": (0, 4095), "PI": (0, 32767),
        "PATTERN": (0, 12), "CCDNR": (1, 12),
    }
    for i, c in enumerate(cols, start=1):
        if c.name in limits:
            h[f"TLMIN{i}"] = limits[c.name][0]
            h[f"TLMAX{i}"] = limits[c.name][1]
    for k, v in {**common, **timekw}.items():
        h[k] = v
    for k, v in sky_kw.items():
        h[k] = v
    h["HDUCLASS"] = ("OGIP", "format conforms to OGIP/GSFC conventions")
    h["HDUCLAS1"] = ("EVENTS", "Extension contains events")

    hdus: list[fits.hdu.base.ExtensionHDU] = [ev]
    for ccd in range(1, 13):
        g = fits.BinTableHDU.from_columns(
            [fits.Column("START", "D", unit="s", array=gtis[:, 0]),
             fits.Column("STOP", "D", unit="s", array=gtis[:, 1])],
            name=f"STDGTI{ccd:02d}",
        )
        g.header["CCDID"] = (ccd - 1, "CCD number (0-based)")
        g.header["CCDNR"] = (ccd, "CCD number")
        g.header["HDUCLASS"] = "OGIP"
        g.header["HDUCLAS1"] = "GTI"
        g.header["HDUCLAS2"] = "STANDARD"
        g.header["TSTART"] = tstart
        g.header["TSTOP"] = tstop
        g.header["TIMESYS"] = "TT"
        g.header["MJDREF"] = MJDREF
        hdus.append(g)
    pievli = out / product_name(obsid, instrument=instrument, product=evli)
    _write_ftz(fits.HDUList([primary, *hdus]), pievli)

    q = expected_quiet_fbk_rate(particle_rate=sources.particle_rate, sky_rate=sources.sky_rate)
    fbktsr_path: Path | None = None
    flcutthr: float | None = None
    if with_fbktsr and mode.datamode != "TIMING":
        edges = np.arange(tstart, tstop + FBK_TIMEDEL * 0.5, FBK_TIMEDEL)
        if edges[-1] < tstop:
            edges = np.append(edges, edges[-1] + FBK_TIMEDEL)
        sel_fbk = (pi >= FBK_BAND_EV[0]) & (pi < FBK_BAND_EV[1]) & (pattern == 0) & (flag == 0)
        counts, _ = np.histogram(time[sel_fbk], bins=edges)
        frac = np.zeros(counts.size)
        for a, b in gtis:
            frac += np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
        frac /= FBK_TIMEDEL
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(frac > 0, counts / (FBK_TIMEDEL * frac), np.nan)
            err = np.where(frac > 0, np.sqrt(np.maximum(counts, 1)) / (FBK_TIMEDEL * frac), np.nan)
        flcutthr = float(round(q * 1.15 + 3.0 * np.sqrt(q / FBK_TIMEDEL), 3))
        lc = fits.BinTableHDU.from_columns(
            [fits.Column("TIME", "D", unit="s", array=0.5 * (edges[:-1] + edges[1:])),
             fits.Column("RATE", "E", unit="count/s", array=rate.astype(np.float32)),
             fits.Column("ERROR", "E", unit="count/s", array=err.astype(np.float32)),
             fits.Column("FRACEXP", "E", array=frac.astype(np.float32))],
            name="RATE",
        )
        lh = lc.header
        for k, v in {**common, **timekw}.items():
            lh[k] = v
        lh["TIMEDEL"] = (FBK_TIMEDEL, "[s] Length of the time bins")
        lh["TIMEPIXR"] = (0.5, "Bin time refers to the bin centre")
        lh["HDUCLASS"] = "OGIP"
        lh["HDUCLAS1"] = ("LIGHTCURVE", "Extension contains a light curve")
        lh["HDUCLAS2"] = "TOTAL"
        lh["HDUCLAS3"] = "RATE"
        lh["FLCUTTHR"] = (flcutthr, "[count/s] Optimised flare cut threshold")
        lh["CHANMIN"] = (int(FBK_BAND_EV[0]), "[eV] Lower PI of the light curve band")
        lh["CHANMAX"] = (int(FBK_BAND_EV[1]), "[eV] Upper PI of the light curve band")
        lh["PATTERN"] = ("==0", "Event patterns used")
        prim = fits.PrimaryHDU()
        for k, v in {**common, **timekw}.items():
            prim.header[k] = v
        fbktsr_path = out / product_name(obsid, instrument=instrument, product="FBKTSR")
        _write_ftz(fits.HDUList([prim, lc]), fbktsr_path)

    if agn is not None and len(agn):
        sx, sy = geo.det_to_sky(agn.detx, agn.dety, pa_deg=pa_pnt)
        a_ra, a_dec = geo.sky_to_radec(sx, sy, ra_pnt=ra_pnt, dec_pnt=dec_pnt)
    else:
        a_ra = a_dec = np.empty(0)
    logger.info("simulated %s: %d events, %d flares -> %s", obsid, n_ev, len(model.flares), pievli)
    return SimulatedObservation(
        obsid=obsid,
        pievli=pievli,
        fbktsr=fbktsr_path,
        ra_pnt=ra_pnt,
        dec_pnt=dec_pnt,
        pa_pnt=pa_pnt,
        date_obs=date_obs,
        date_end=date_end,
        tstart=tstart,
        tstop=tstop,
        ontime=ontime,
        livetime=livetime,
        submode=mode.submode,
        datamode=mode.datamode,
        instrument=instrument,
        filter=filter,
        n_events=n_ev,
        gtis=tuple((float(a), float(b)) for a, b in gtis),
        flares=model.flares,
        flcutthr=flcutthr,
        quiet_fbk_rate=q,
        agn_detx=agn.detx if agn is not None else np.empty(0),
        agn_dety=agn.dety if agn is not None else np.empty(0),
        agn_rate=agn.rate if agn is not None else np.empty(0),
        agn_ra=a_ra,
        agn_dec=a_dec,
        absorption=agn.absorption if agn is not None else None,
        extended_kind=ext.kind if ext is not None else None,
        extended_params=dict(ext.params) if ext is not None else {},
        seed=int(seed),
    )
