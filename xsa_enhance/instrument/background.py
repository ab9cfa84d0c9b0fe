"""EPIC-pn background model: quiescent particles, the sky, and soft-proton flares.

Rates (DESIGN.md section 6) are for screened events (``PATTERN <= 4``, ``FLAG == 0``) in
0.5-2 keV:

* particle background 1.1e-3 counts/s/arcmin^2, not vignetted, everywhere on the CCDs
  including the out-of-field-of-view corners; stable to a few per cent in quiet periods;
* sky background (CXB + Galactic foreground) 1.4e-3 counts/s/arcmin^2 on axis, vignetted,
  only inside the field of view.

Together they give ~2.5e-3 counts/s/arcmin^2 on axis, i.e. ~1.1e-5 counts/s per 4" pixel: the
mean background ``MU_B = 1.1168e-5`` of the paper.

Soft-proton flares are a sum of Gaussian bursts in time. Their amplitude is given as the
10-12 keV ``PATTERN == 0`` rate over the whole field of view at the flare peak (the quantity in
the FBKTSR light curve); spatially they are mildly vignetted and confined to the field of view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from xsa_enhance.instrument.detector import PATTERN_MIX_PARTICLE, PATTERN_MIX_XRAY
from xsa_enhance.instrument.grid import GRID_1X, DetGrid
from xsa_enhance.instrument.mask import mask_coverage
from xsa_enhance.instrument.spectra import PARTICLE_SPECTRUM, SOFT_PROTON_SPECTRUM, SKY_SPECTRUM
from xsa_enhance.instrument.vignetting import vignetting_map

__all__ = [
    "MU_B",
    "PARTICLE_RATE",
    "SKY_RATE",
    "Flare",
    "FlareModel",
    "background_rate_map",
    "particle_total_rate_density",
    "quiet_fbk_rate",
    "random_flares",
    "sigma_b",
]

logger = logging.getLogger(__name__)

#: Particle background, 0.5-2 keV, screened, counts/s/arcmin^2 (not vignetted).
PARTICLE_RATE: float = 1.1e-3
#: Sky background, 0.5-2 keV, screened, counts/s/arcmin^2 on axis (vignetted).
SKY_RATE: float = 1.4e-3
#: Mean background of the paper, counts/s per 4" pixel.
MU_B: float = 1.1168e-5

_SCREENED_XRAY = float(PATTERN_MIX_XRAY[:5].sum())
_SCREENED_PARTICLE = float(PATTERN_MIX_PARTICLE[:5].sum())


def particle_total_rate_density(rate_05_2: float = PARTICLE_RATE) -> float:
    """All-pattern, all-energy particle event rate per arcmin^2 for a screened 0.5-2 keV rate."""
    return rate_05_2 / (PARTICLE_SPECTRUM.band_fraction(500, 2000) * _SCREENED_PARTICLE)


def sky_total_rate_density(rate_05_2: float = SKY_RATE) -> float:
    """All-pattern, all-energy on-axis sky event rate per arcmin^2."""
    return rate_05_2 / (SKY_SPECTRUM.band_fraction(500, 2000) * _SCREENED_XRAY)


def quiet_fbk_rate(ccd_area_arcmin2: float, rate_05_2: float = PARTICLE_RATE) -> float:
    """Expected quiescent 10-12 keV ``PATTERN == 0`` rate (counts/s) over an area of CCD."""
    dens = particle_total_rate_density(rate_05_2)
    return (
        dens
        * ccd_area_arcmin2
        * PARTICLE_SPECTRUM.band_fraction(10000, 12000)
        * float(PATTERN_MIX_PARTICLE[0])
    )


def sigma_b(exposure_s: float = 20000.0, *, mu_b: float = MU_B) -> float:
    """Standard deviation of the background rate per 4" pixel at the boresight (counts/s).

    ``sqrt(mu_B T) / T``: the Poisson noise of the background counts in one pixel.
    """
    return float(np.sqrt(mu_b * exposure_s) / exposure_s)


def background_rate_map(
    grid: DetGrid = GRID_1X,
    *,
    particle_rate: float = PARTICLE_RATE,
    sky_rate: float = SKY_RATE,
    apply_mask: bool = True,
) -> np.ndarray:
    """Expected screened 0.5-2 keV background rate (counts/s) per pixel of a DET grid.

    Parameters
    ----------
    grid : DetGrid
        Image grid.
    particle_rate, sky_rate : float
        Rates per arcmin^2 (particle unvignetted, sky on axis and vignetted).
    apply_mask : bool
        Multiply by the fraction of each pixel covered by good detector pixels.

    Returns
    -------
    ndarray of float64, shape ``grid.shape``
    """
    pix_arcmin2 = (grid.pixel_arcsec / 60.0) ** 2
    rate = (particle_rate + sky_rate * vignetting_map(grid)) * pix_arcmin2
    if apply_mask:
        rate = rate * mask_coverage(grid)
    return rate


@dataclass(frozen=True)
class Flare:
    """One soft-proton flare: a Gaussian burst in time.

    Parameters
    ----------
    t_peak : float
        Time of the peak (mission seconds).
    width_s : float
        Gaussian sigma in seconds.
    peak_rate : float
        10-12 keV ``PATTERN == 0`` rate over the field of view at the peak (counts/s).
    """

    t_peak: float
    width_s: float
    peak_rate: float

    @property
    def interval(self) -> tuple[float, float]:
        """Where the flare exceeds ~4 % of its peak: ``t_peak -+ 2.5 width``."""
        return (self.t_peak - 2.5 * self.width_s, self.t_peak + 2.5 * self.width_s)


@dataclass(frozen=True)
class FlareModel:
    """The soft-proton light curve: a set of flares.

    Parameters
    ----------
    flares : tuple of Flare
    """

    flares: tuple[Flare, ...] = ()

    def fbk_rate(self, t: np.ndarray) -> np.ndarray:
        """Flare contribution to the 10-12 keV ``PATTERN == 0`` rate at times ``t``."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros_like(t)
        for f in self.flares:
            out += f.peak_rate * np.exp(-0.5 * ((t - f.t_peak) / f.width_s) ** 2)
        return out

    def total_rate(self, t: np.ndarray) -> np.ndarray:
        """All-energy, all-pattern soft-proton event rate over the field of view."""
        frac = SOFT_PROTON_SPECTRUM.band_fraction(10000, 12000) * float(PATTERN_MIX_XRAY[0])
        return self.fbk_rate(t) / frac


def random_flares(
    rng: np.random.Generator, *, tstart: float, tstop: float, rate_per_ks: float = 0.06
) -> FlareModel:
    """Draw a random set of flares (at least one) for an exposure.

    Peak 10-12 keV rates are log-uniform in [0.5, 10] counts/s (up to ~50 times the quiet
    level), widths log-uniform in [200, 2500] s.
    """
    length = tstop - tstart
    n = max(1, int(rng.poisson(rate_per_ks * length / 1000.0)))
    flares = []
    for _ in range(n):
        flares.append(
            Flare(
                t_peak=float(rng.uniform(tstart + 0.05 * length, tstop - 0.05 * length)),
                width_s=float(np.exp(rng.uniform(np.log(200.0), np.log(2500.0)))),
                peak_rate=float(np.exp(rng.uniform(np.log(0.5), np.log(10.0)))),
            )
        )
    flares.sort(key=lambda f: f.t_peak)
    return FlareModel(tuple(flares))
