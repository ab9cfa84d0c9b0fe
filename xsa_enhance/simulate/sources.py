"""Source populations: AGN from the Moretti et al. (2003) logN-logS and procedural extended sources.

AGN
    ``N(>S) = Ns (2e-15)^a1 / (S^a1 + S0^(a1 - a2) S^a2)`` per deg^2 with a1 = 1.82,
    a2 = 0.60, S0 = 1.48e-14, Ns = 6150 (S in erg/cm^2/s, 0.5-2 keV; Moretti et al. 2003,
    ApJ 588, 696). The number of sources in a field is Poisson distributed about the expected
    value (the paper's ``+- sqrt(N)`` scatter), fluxes are divided by a field-wide Galactic
    absorption factor drawn log-uniformly in [1, 100] (Sweere et al. 2022), and converted to
    screened pn 0.5-2 keV count rates with :data:`COUNTS_PER_FLUX` (7 counts/s per
    1e-11 erg/cm^2/s).

Extended sources
    The paper projected IllustrisTNG haloes; here the sources are procedural: elliptical
    beta-model clusters and groups (optionally with a cool core, substructure, X-ray cavities
    and a shock or cold front), supernova-remnant shells, spiral galaxies and elliptical
    galaxies. Each model is a surface-brightness function of DET offsets in arcsec; its
    central box (5 % of the image side; or half its peak if that is larger) is scaled to
    5-50 sigma_B (the background noise of a
    20 ks 4" pixel at the boresight), with a random zoom in [1, 2] and an offset of sigma 5 % of
    the image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xsa_enhance.instrument.background import sigma_b
from xsa_enhance.instrument.grid import GRID_1X, DetGrid

__all__ = [
    "AGN_LOGNLOGS",
    "COUNTS_PER_FLUX",
    "EXTENDED_KINDS",
    "AgnPopulation",
    "ExtendedSource",
    "MorettiLogNLogS",
    "draw_agn",
    "draw_extended",
]

logger = logging.getLogger(__name__)

#: Screened pn 0.5-2 keV counts/s per erg/cm^2/s (7 counts/s per 1e-11).
COUNTS_PER_FLUX: float = 7.0e11

#: Kinds of procedural extended sources.
EXTENDED_KINDS: tuple[str, ...] = ("cluster", "group", "snr", "spiral", "elliptical")


@dataclass(frozen=True)
class MorettiLogNLogS:
    """The soft-band AGN number counts of Moretti et al. (2003).

    Parameters
    ----------
    alpha1, alpha2, s0, ns : float
        Parameters of ``N(>S)`` (S in erg/cm^2/s, N per deg^2).
    """

    alpha1: float = 1.82
    alpha2: float = 0.60
    s0: float = 1.48e-14
    ns: float = 6150.0

    def n_above(self, s: np.ndarray | float) -> np.ndarray:
        """Cumulative number of sources per deg^2 brighter than ``s``."""
        s = np.asarray(s, dtype=np.float64)
        a1, a2 = self.alpha1, self.alpha2
        return self.ns * (2e-15) ** a1 / (s**a1 + self.s0 ** (a1 - a2) * s**a2)

    def sample_fluxes(
        self, rng: np.random.Generator, n: int, *, s_min: float, s_max: float
    ) -> np.ndarray:
        """Draw ``n`` fluxes in ``[s_min, s_max]`` by inverting ``N(>S)`` numerically."""
        grid = np.geomspace(s_min, s_max, 2048)
        cum = self.n_above(grid)
        frac = (cum[0] - cum) / (cum[0] - cum[-1])  # increasing 0..1
        u = rng.random(n)
        return np.exp(np.interp(u, frac, np.log(grid)))


#: The default logN-logS.
AGN_LOGNLOGS: MorettiLogNLogS = MorettiLogNLogS()


@dataclass(frozen=True)
class AgnPopulation:
    """Point sources in a field.

    Attributes
    ----------
    detx, dety : ndarray
        Positions (DET units).
    flux : ndarray
        Observed 0.5-2 keV flux after absorption (erg/cm^2/s).
    rate : ndarray
        On-axis screened 0.5-2 keV count rate (counts/s), before vignetting.
    absorption : float
        The field's absorption factor (fluxes were divided by it).
    expected_number : float
        Expected number of sources (before absorption) in the field above ``s_min``.
    """

    detx: np.ndarray
    dety: np.ndarray
    flux: np.ndarray
    rate: np.ndarray
    absorption: float
    expected_number: float

    def __len__(self) -> int:
        return int(self.rate.size)


def draw_agn(
    rng: np.random.Generator,
    *,
    grid: DetGrid = GRID_1X,
    s_min: float = 1e-16,
    s_max: float = 1e-11,
    absorption: float | None = None,
    lognlogs: MorettiLogNLogS = AGN_LOGNLOGS,
    counts_per_flux: float = COUNTS_PER_FLUX,
) -> AgnPopulation:
    """Draw the AGN of one field, uniformly over the area of ``grid``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    grid : DetGrid
        The area over which sources are placed (default: the whole 1x image).
    s_min, s_max : float
        Flux range (before absorption), erg/cm^2/s.
    absorption : float, optional
        Absorption factor; drawn log-uniformly in [1, 100] when None.
    lognlogs : MorettiLogNLogS
        Number counts.
    counts_per_flux : float
        Conversion of flux to screened count rate.
    """
    if absorption is None:
        absorption = float(np.exp(rng.uniform(0.0, np.log(100.0))))
    if absorption <= 0:
        raise ValueError(f"absorption factor must be positive, got {absorption}")
    width_deg = grid.nx * grid.pixel_arcsec / 3600.0
    height_deg = grid.ny * grid.pixel_arcsec / 3600.0
    area = width_deg * height_deg
    expected = float((lognlogs.n_above(s_min) - lognlogs.n_above(s_max)) * area)
    n = int(rng.poisson(expected))
    flux = lognlogs.sample_fluxes(rng, n, s_min=s_min, s_max=s_max) / absorption
    detx = rng.uniform(grid.x_edges[0], grid.x_edges[-1], n)
    dety = rng.uniform(grid.y_edges[0], grid.y_edges[-1], n)
    return AgnPopulation(detx, dety, flux, flux * counts_per_flux, absorption, expected)


def _beta(r2: np.ndarray, rc: float, beta: float) -> np.ndarray:
    return (1.0 + r2 / (rc * rc)) ** (-3.0 * beta + 0.5)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float, q: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = c * x + s * y
    v = (-s * x + c * y) / q
    return u * u + v * v


@dataclass(frozen=True)
class ExtendedSource:
    """A procedural extended source.

    Attributes
    ----------
    kind : str
        One of :data:`EXTENDED_KINDS`.
    centre_det : tuple of float
        Centre in DET units.
    params : dict
        The drawn shape parameters (for provenance).
    norm : float
        Surface brightness scale: counts/s per arcsec^2 at unit model value.
    model : callable
        ``model(dx_arcsec, dy_arcsec) -> relative surface brightness``.
    """

    kind: str
    centre_det: tuple[float, float]
    params: dict = field(default_factory=dict)
    norm: float = 1.0
    model: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def surface_brightness(self, detx: np.ndarray, dety: np.ndarray) -> np.ndarray:
        """Intrinsic (on-axis, no PSF) screened 0.5-2 keV counts/s per arcsec^2."""
        dx = (np.asarray(detx) - self.centre_det[0]) * 0.05
        dy = (np.asarray(dety) - self.centre_det[1]) * 0.05
        assert self.model is not None
        return self.norm * self.model(dx, dy)

    def rate_image(self, grid: DetGrid, *, oversample: int = 1) -> np.ndarray:
        """Counts/s per pixel of ``grid`` (surface brightness times pixel area)."""
        sub = (np.arange(oversample) + 0.5) / oversample
        xs = (grid.x_edge0 + grid.binsize * (np.arange(grid.nx)[:, None] + sub[None, :])).ravel()
        ys = (grid.y_edge0 + grid.binsize * (np.arange(grid.ny)[:, None] + sub[None, :])).ravel()
        # offsets in arcsec, float32: the models are smooth and this halves the cost
        dx = ((xs - self.centre_det[0]) * 0.05).astype(np.float32)
        dy = ((ys - self.centre_det[1]) * 0.05).astype(np.float32)
        assert self.model is not None
        xx, yy = np.meshgrid(dx, dy)
        sb = self.norm * self.model(xx, yy)
        if oversample > 1:
            sb = sb.reshape(grid.ny, oversample, grid.nx, oversample).mean(axis=(1, 3))
        return sb * grid.pixel_arcsec**2

    @property
    def total_rate(self) -> float:
        """Total intrinsic rate integrated over the 1x image area (counts/s)."""
        return float(self.rate_image(GRID_1X).sum())


def _cluster_model(rng: np.random.Generator, scale: float, group: bool) -> tuple[Callable, dict]:
    rc = float(rng.uniform(15, 60) if group else rng.uniform(40, 180)) * scale
    beta = float(rng.uniform(0.5, 0.7))
    q = float(rng.uniform(0.6, 1.0))
    ang = float(rng.uniform(0, np.pi))
    cool = bool(rng.random() < 0.5)
    cc_rc = rc * float(rng.uniform(0.1, 0.3))
    cc_amp = float(rng.uniform(1.0, 4.0))
    n_sub = int(rng.integers(0, 3))
    subs = [
        (float(rng.normal(0, 2.5 * rc)), float(rng.normal(0, 2.5 * rc)),
         float(rng.uniform(0.2, 0.5) * rc), float(rng.uniform(0.1, 0.5)))
        for _ in range(n_sub)
    ]
    cavities = bool(rng.random() < 0.3)
    cav_r = float(rng.uniform(0.3, 0.6) * rc)
    cav_d = float(rng.uniform(0.5, 1.0) * rc)
    cav_ang = float(rng.uniform(0, np.pi))
    front = bool(rng.random() < 0.3)
    front_ang = float(rng.uniform(0, 2 * np.pi))
    front_r = float(rng.uniform(1.0, 3.0) * rc)
    front_jump = float(rng.uniform(1.5, 3.0))

    def model(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        r2 = _rotate(dx, dy, ang, q)
        s = _beta(r2, rc, beta)
        if cool:
            s = s + cc_amp * _beta(r2, cc_rc, beta)
        for sx, sy, srad, samp in subs:
            s = s + samp * _beta((dx - sx) ** 2 + (dy - sy) ** 2, srad, 0.6)
        if cavities:
            for sign in (1.0, -1.0):
                cx = sign * cav_d * np.cos(cav_ang)
                cy = sign * cav_d * np.sin(cav_ang)
                s = s * (1.0 - 0.6 * np.exp(-((dx - cx) ** 2 + (dy - cy) ** 2) / (2 * cav_r**2)))
        if front:
            # A surface-brightness edge (shock / cold front) on one side of the cluster.
            r = np.sqrt(dx * dx + dy * dy)
            side = np.cos(np.arctan2(dy, dx) - front_ang) > 0.3
            s = np.where(side & (r > front_r), s / front_jump, s)
        return s / (1.0 + cc_amp * cool)

    params = dict(rc=rc, beta=beta, q=q, angle=ang, cool_core=cool, n_sub=n_sub,
                  cavities=cavities, front=front)
    return model, params


def _snr_model(rng: np.random.Generator, scale: float) -> tuple[Callable, dict]:
    radius = float(rng.uniform(60, 300)) * scale
    thick = radius * float(rng.uniform(0.05, 0.2))
    k = rng.integers(2, 7, size=3)
    ph = rng.uniform(0, 2 * np.pi, size=3)
    amp = rng.uniform(0.1, 0.4, size=3)

    def model(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        r = np.sqrt(dx * dx + dy * dy)
        phi = np.arctan2(dy, dx)
        patch = 1.0 + sum(a * np.cos(kk * phi + p) for a, kk, p in zip(amp, k, ph))
        shell = np.exp(-0.5 * ((r - radius) / thick) ** 2) * np.clip(patch, 0.1, None)
        interior = 0.15 * (r < radius)
        return shell + interior

    return model, dict(radius=radius, thickness=thick)


def _spiral_model(rng: np.random.Generator, scale: float) -> tuple[Callable, dict]:
    hd = float(rng.uniform(20, 80)) * scale
    q = float(rng.uniform(0.3, 1.0))
    ang = float(rng.uniform(0, np.pi))
    m = int(rng.integers(2, 4))
    pitch = float(rng.uniform(0.2, 0.5))
    bulge = float(rng.uniform(0.5, 3.0))

    def model(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        c, s = np.cos(ang), np.sin(ang)
        u = c * dx + s * dy
        v = (-s * dx + c * dy) / q
        r = np.sqrt(u * u + v * v) + 1e-6
        phi = np.arctan2(v, u)
        arms = 1.0 + 0.8 * np.cos(m * (phi - np.log(r / hd) / np.tan(pitch)))
        disk = np.exp(-r / hd) * arms
        return disk + bulge * np.exp(-((r / (0.15 * hd)) ** 2))

    return model, dict(disk_scale=hd, q=q, arms=m, pitch=pitch)


def _elliptical_model(rng: np.random.Generator, scale: float) -> tuple[Callable, dict]:
    re = float(rng.uniform(10, 40)) * scale
    q = float(rng.uniform(0.6, 1.0))
    ang = float(rng.uniform(0, np.pi))
    halo_rc = float(rng.uniform(20, 60)) * scale
    halo_amp = float(rng.uniform(0.05, 0.3))

    def model(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        r2 = _rotate(dx, dy, ang, q)
        r = np.sqrt(r2 + (0.1 * re) ** 2)  # cored: no unresolved cusp
        sersic = np.exp(-7.669 * ((r / re) ** 0.25 - 1.0)) / np.exp(7.669)
        return sersic + halo_amp * _beta(r2, halo_rc, 0.5)

    return model, dict(r_e=re, q=q, halo_rc=halo_rc)


def draw_extended(
    rng: np.random.Generator,
    *,
    kind: str | None = None,
    grid: DetGrid = GRID_1X,
    brightness_sigma: tuple[float, float] = (5.0, 50.0),
    reference_exposure_s: float = 20000.0,
) -> ExtendedSource:
    """Draw one procedural extended source for an image on ``grid``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator.
    kind : str, optional
        One of :data:`EXTENDED_KINDS`; random when None.
    grid : DetGrid
        Image whose centre (plus a 5 % offset) hosts the source.
    brightness_sigma : (float, float)
        Range of the central brightness in units of sigma_B at ``reference_exposure_s``.
    reference_exposure_s : float
        Exposure defining sigma_B (the paper: 20 ks inputs).

    Returns
    -------
    ExtendedSource
    """
    if kind is None:
        kind = str(rng.choice(np.array(EXTENDED_KINDS)))
    if kind not in EXTENDED_KINDS:
        raise ValueError(f"unknown extended source kind {kind!r}; known: {EXTENDED_KINDS}")
    zoom = float(rng.uniform(1.0, 2.0))
    if kind in ("cluster", "group"):
        model, params = _cluster_model(rng, zoom, group=(kind == "group"))
    elif kind == "snr":
        model, params = _snr_model(rng, zoom)
    elif kind == "spiral":
        model, params = _spiral_model(rng, zoom)
    else:
        model, params = _elliptical_model(rng, zoom)
    width = grid.nx * grid.binsize
    height = grid.ny * grid.binsize
    cx = 0.5 * (grid.x_edges[0] + grid.x_edges[-1]) + rng.normal(0, 0.05 * width)
    cy = 0.5 * (grid.y_edges[0] + grid.y_edges[-1]) + rng.normal(0, 0.05 * height)
    # Normalise: mean of the central box (5 % of the image side) = k sigma_B per 4" pixel.
    bx = np.linspace(-0.025 * width, 0.025 * width, 21) * 0.05
    by = np.linspace(-0.025 * height, 0.025 * height, 21) * 0.05
    bxx, byy = np.meshgrid(bx, by)
    box_mean = float(np.mean(model(bxx, byy)))
    # Half the peak too, so that shells and rings (faint centres) are not scaled up hugely.
    px = np.linspace(-0.5 * width, 0.5 * width, 161) * 0.05
    py = np.linspace(-0.5 * height, 0.5 * height, 161) * 0.05
    pxx, pyy = np.meshgrid(px, py)
    # the core as 4" pixel averages (1" sub-samples): narrow bulges and cusps count as seen
    fine = np.arange(-42.0, 42.0, 1.0) + 0.5  # 21 pixels, the middle one centred
    fxx, fyy = np.meshgrid(fine, fine)
    core = model(fxx, fyy).reshape(21, 4, 21, 4).mean(axis=(1, 3))
    peak = max(float(np.max(model(pxx, pyy))), float(np.max(core)))
    ref = max(box_mean, 0.5 * peak, 1e-12)
    k = float(rng.uniform(*brightness_sigma))
    target_per_arcsec2 = k * sigma_b(reference_exposure_s) / 16.0
    norm = target_per_arcsec2 / ref
    params.update(zoom=zoom, brightness_sigma=k)
    return ExtendedSource(kind, (float(cx), float(cy)), params, norm, model)
