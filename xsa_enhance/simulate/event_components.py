"""The event components of a simulated exposure, drawn at intrinsic detector positions.

Particle background (all CCDs), vignetted sky background, soft-proton flares, AGN, explicit
point sources and one extended source: :func:`draw_components` draws them in this order from
one random generator (so that the same seed gives the same events) and collects them as float
DET positions, times, PI and patterns in :class:`EventComponents`. The detector's response
(out-of-time events, read-out window, flags) is applied by
:mod:`xsa_enhance.simulate.detector_response`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from xsa_enhance.errors import ConfigError
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
from xsa_enhance.instrument.detector import PATTERN_MIX_PARTICLE, PATTERN_MIX_XRAY, sample_patterns
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X
from xsa_enhance.instrument.mask import mask_coverage
from xsa_enhance.instrument.psf import KingPSF
from xsa_enhance.instrument.spectra import (
    PARTICLE_SPECTRUM,
    SKY_SPECTRUM,
    SOFT_PROTON_SPECTRUM,
    SOURCE_SPECTRUM,
)
from xsa_enhance.instrument.vignetting import SOFT_PROTON_VIGNETTING_POWER, vignetting_det
from xsa_enhance.simulate.sources import AgnPopulation, ExtendedSource, draw_agn, draw_extended

__all__ = ["SourceMix", "EventComponents", "DrawnField", "draw_components", "fov_geometry"]

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def fov_geometry() -> tuple[float, float, float, float]:
    """Areas of the field of view.

    Returns
    -------
    (good_area, sp_eff, ccd_area, vign_area)
        Good area in the FOV (arcmin^2), mean soft-proton efficiency on good pixels, CCD area
        (arcmin^2) and vignetting-weighted good area (arcmin^2).
    """
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


class EventComponents:
    """Accumulates event components (float DET positions, times, PI, patterns, X-ray or not)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, detx: np.ndarray, dety: np.ndarray, time: np.ndarray, pi: np.ndarray,
            pattern: np.ndarray, is_xray: bool) -> None:
        """Add one component; ``is_xray`` marks photons (they can become out-of-time events)."""
        flag = np.full(detx.shape, is_xray, dtype=bool)
        self.parts.append((detx, dety, time, pi, pattern, flag))

    def concat(self) -> tuple[np.ndarray, ...]:
        """All components: (detx, dety, time, pi, pattern, is_xray)."""
        if not self.parts:
            e = np.empty(0)
            return e, e, e, e, np.empty(0, np.uint8), np.empty(0, bool)
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(6))


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
class DrawnField:
    """What :func:`draw_components` drew.

    Attributes
    ----------
    events : EventComponents
    flares : FlareModel
        The injected soft-proton flares (none when disabled).
    agn : AgnPopulation or None
    extended : ExtendedSource or None
    """

    events: EventComponents
    flares: FlareModel
    agn: AgnPopulation | None
    extended: ExtendedSource | None


def _photon_events(rng: np.random.Generator, detx: np.ndarray, dety: np.ndarray,
                   gtis: np.ndarray, psf: KingPSF, events: EventComponents) -> None:
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


def _particle_background(rng: np.random.Generator, events: EventComponents, *, rate: float,
                         gtis: np.ndarray, tstart: float, tstop: float, ontime: float) -> None:
    """Everywhere on the CCDs, slowly varying by a few per cent."""
    _, _, ccd_area, _ = fov_geometry()
    p_rate = particle_total_rate_density(rate) * ccd_area
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


def _sky_background(rng: np.random.Generator, events: EventComponents, *, rate: float,
                    gtis: np.ndarray, ontime: float) -> None:
    """Uniform over the FOV, vignetted."""
    fov_area = np.pi * (geo.FOV_RADIUS_DET * 0.05 / 60.0) ** 2
    n = int(rng.poisson(sky_total_rate_density(rate) * fov_area * ontime))
    x, y = _uniform_in_fov(rng, n)
    keep = rng.random(n) < vignetting_det(x, y)
    x, y = x[keep], y[keep]
    n = x.size
    events.add(x, y, _uniform_times(rng, n, gtis), SKY_SPECTRUM.sample(rng, n),
               sample_patterns(rng, n, PATTERN_MIX_XRAY), True)


def _soft_proton_flares(rng: np.random.Generator, events: EventComponents, model: FlareModel, *,
                        gtis: np.ndarray, tstart: float, tstop: float) -> None:
    """Events of the flares of ``model``, uniform over the FOV with the soft-proton vignetting."""
    if not model.flares:
        return
    _, sp_eff, _, _ = fov_geometry()
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


def _extended_source_events(rng: np.random.Generator, events: EventComponents, kind: str, *,
                            brightness_sigma: tuple[float, float], gtis: np.ndarray,
                            ontime: float, psf: KingPSF) -> ExtendedSource:
    """Photons of one extended source (``"random"`` or a kind), drawn from its rate image."""
    try:
        ext = draw_extended(rng, kind=None if kind == "random" else kind,
                            brightness_sigma=brightness_sigma)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    img = ext.rate_image(GRID_2X) * (ontime * _all_event_scale())
    total = float(img.sum())
    n = int(rng.poisson(total))
    flat = img.ravel() / total
    idx = rng.choice(flat.size, size=n, p=flat)
    iy, ix = np.divmod(idx, GRID_2X.nx)
    x = GRID_2X.x_edge0 + (ix + rng.random(n)) * GRID_2X.binsize
    y = GRID_2X.y_edge0 + (iy + rng.random(n)) * GRID_2X.binsize
    _photon_events(rng, x, y, gtis, psf, events)
    return ext


def draw_components(
    rng: np.random.Generator,
    sources: SourceMix,
    *,
    gtis: np.ndarray,
    tstart: float,
    tstop: float,
    ontime: float,
    flares: bool,
    flare_list: tuple[Flare, ...] | None,
    psf: KingPSF,
) -> DrawnField:
    """Draw every event component of one exposure, in a fixed order.

    Parameters
    ----------
    rng : numpy.random.Generator
        The exposure's generator (consumed in the simulator's fixed order).
    sources : SourceMix
        Field content and background rates.
    gtis : (n, 2) ndarray
        Good time intervals (s).
    tstart, tstop, ontime : float
        Exposure start and stop (mission time, s) and the sum of the GTIs.
    flares : bool
        Inject soft-proton flares (random unless ``flare_list`` is given).
    flare_list : tuple of Flare, optional
        Explicit flares.
    psf : KingPSF
        PSF of the source photons.

    Returns
    -------
    DrawnField
    """
    events = EventComponents()
    _particle_background(rng, events, rate=sources.particle_rate, gtis=gtis, tstart=tstart,
                         tstop=tstop, ontime=ontime)
    _sky_background(rng, events, rate=sources.sky_rate, gtis=gtis, ontime=ontime)
    if flares:
        model = FlareModel(tuple(flare_list)) if flare_list is not None else random_flares(
            rng, tstart=tstart, tstop=tstop
        )
    else:
        model = FlareModel(())
    _soft_proton_flares(rng, events, model, gtis=gtis, tstart=tstart, tstop=tstop)
    scale = _all_event_scale()
    agn: AgnPopulation | None = None
    if sources.agn:
        agn = draw_agn(rng, absorption=sources.absorption, s_min=sources.agn_s_min)
        counts = rng.poisson(agn.rate * ontime * scale)
        _photon_events(rng, np.repeat(agn.detx, counts), np.repeat(agn.dety, counts),
                       gtis, psf, events)
    if sources.point_sources:
        ps = np.asarray(sources.point_sources, dtype=np.float64).reshape(-1, 3)
        counts = rng.poisson(ps[:, 2] * ontime * scale)
        _photon_events(rng, np.repeat(ps[:, 0], counts), np.repeat(ps[:, 1], counts),
                       gtis, psf, events)
    ext: ExtendedSource | None = None
    if sources.extended is not None:
        ext = _extended_source_events(rng, events, sources.extended,
                                      brightness_sigma=sources.extended_brightness_sigma,
                                      gtis=gtis, ontime=ontime, psf=psf)
    return DrawnField(events=events, flares=model, agn=agn, extended=ext)
