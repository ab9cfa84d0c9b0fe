"""Detected-energy (PI) distributions of the simulated event components.

The simulator does not fold physical spectra through a response matrix; each component has a
*detected* spectrum (counts per keV against PI, i.e. already multiplied by the effective area and
smeared by the resolution) given as a piecewise-constant density plus Gaussian lines. The
shapes are approximations chosen to reproduce band ratios of real pn data:

* particle background: the filter-wheel-closed spectrum (steep rise below 0.3 keV from noise,
  a flat continuum, Al K 1.49 keV, Ni/Cu/Zn K lines near 7.5-8.6 keV); about 10 % of the
  0.15-15 keV counts fall in 0.5-2 keV and 4.6 % in 10-12 keV, as in the real FWC spectrum.
* sky (cosmic X-ray background + Galactic foreground): soft, ~55 % in 0.5-2 keV.
* point and extended sources: an absorbed power law of photon index ~2 seen through the
  medium filter: peak near 1 keV, ~60 % in 0.5-2 keV.
* soft protons: a hard power law in counts (``E^-0.9``) extending beyond 12 keV, so that
  flares show in the 10-12 keV light curve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PARTICLE_SPECTRUM",
    "PI_MAX_EV",
    "PI_MIN_EV",
    "SKY_SPECTRUM",
    "SOFT_PROTON_SPECTRUM",
    "SOURCE_SPECTRUM",
    "Spectrum",
]

logger = logging.getLogger(__name__)

#: Range of simulated PI values (eV).
PI_MIN_EV: float = 150.0
PI_MAX_EV: float = 15000.0


@dataclass(frozen=True)
class Spectrum:
    """A detected-energy distribution: piecewise-constant continuum plus Gaussian lines.

    Parameters
    ----------
    edges_ev : tuple of float
        Bin edges of the continuum (eV), increasing.
    density : tuple of float
        Relative counts per keV in each bin (``len(edges) - 1`` values).
    lines : tuple of (centre_eV, sigma_eV, counts_per_keV_equivalent)
        Gaussian lines; the third value is the line's total weight in the same units as
        ``density`` times keV.
    name : str
        Label.
    """

    edges_ev: tuple[float, ...]
    density: tuple[float, ...]
    lines: tuple[tuple[float, float, float], ...] = field(default_factory=tuple)
    name: str = "spectrum"

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        edges = np.asarray(self.edges_ev, dtype=np.float64)
        cont = np.asarray(self.density, dtype=np.float64) * np.diff(edges) / 1000.0
        lines = np.array([w for _, _, w in self.lines], dtype=np.float64)
        return cont, lines

    def band_fraction(self, lo_ev: float, hi_ev: float) -> float:
        """Fraction of the counts with PI in ``[lo, hi)`` (lines clipped to the PI range)."""
        from math import erf, sqrt

        edges = np.asarray(self.edges_ev, dtype=np.float64)
        cont, lines = self._weights()
        total = cont.sum() + lines.sum()
        lo_c = np.clip(edges[:-1], lo_ev, hi_ev)
        hi_c = np.clip(edges[1:], lo_ev, hi_ev)
        inband = (np.asarray(self.density) * (hi_c - lo_c) / 1000.0).sum()
        for (mu, sig, w) in self.lines:
            cdf = lambda x: 0.5 * (1.0 + erf((x - mu) / (sig * sqrt(2.0))))  # noqa: E731
            inband += w * (cdf(hi_ev) - cdf(lo_ev))
        return float(inband / total)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` PI values (eV, float) in ``[PI_MIN_EV, PI_MAX_EV]``."""
        edges = np.asarray(self.edges_ev, dtype=np.float64)
        cont, lines = self._weights()
        p = np.concatenate([cont, lines])
        p = p / p.sum()
        which = rng.choice(p.size, size=n, p=p)
        out = np.empty(n, dtype=np.float64)
        nc = cont.size
        is_c = which < nc
        k = which[is_c]
        out[is_c] = edges[k] + rng.random(k.size) * (edges[k + 1] - edges[k])
        if lines.size:
            mus = np.array([m for m, _, _ in self.lines])
            sigs = np.array([s for _, s, _ in self.lines])
            j = which[~is_c] - nc
            out[~is_c] = rng.normal(mus[j], sigs[j])
        return np.clip(out, PI_MIN_EV, PI_MAX_EV)


def _power_law(index: float, lo: float, hi: float, nbins: int, name: str) -> Spectrum:
    edges = np.geomspace(lo, hi, nbins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:]) / 1000.0
    return Spectrum(tuple(edges), tuple(centres ** (-index)), (), name)


#: Quiescent particle background (approximates the pn filter-wheel-closed spectrum).
PARTICLE_SPECTRUM: Spectrum = Spectrum(
    edges_ev=(150, 300, 500, 1000, 2000, 3000, 5000, 7000, 9500, 12000, 15000),
    density=(29.4, 2.14, 0.71, 0.60, 0.40, 0.345, 0.33, 0.33, 0.255, 0.227),
    lines=(
        (1486.0, 45.0, 0.18),  # Al K
        (7470.0, 70.0, 0.12),  # Ni K
        (8040.0, 75.0, 0.75),  # Cu K
        (8630.0, 80.0, 0.10),  # Zn K
    ),
    name="particle",
)

#: Cosmic X-ray background plus Galactic foreground (vignetted sky background).
SKY_SPECTRUM: Spectrum = Spectrum(
    edges_ev=(150, 300, 500, 1000, 1500, 2000, 3000, 5000, 8000, 15000),
    density=(1.5, 2.0, 1.2, 0.6, 0.35, 0.15, 0.06, 0.02, 0.005),
    name="sky",
)

#: Point and extended sources (absorbed power law, Gamma ~ 2, medium filter).
SOURCE_SPECTRUM: Spectrum = Spectrum(
    edges_ev=(150, 300, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 15000),
    density=(0.3, 0.8, 1.0, 0.9, 0.65, 0.3, 0.15, 0.08, 0.05, 0.025, 0.01, 0.004, 0.002),
    name="source",
)

#: Soft protons: hard power law in counts.
SOFT_PROTON_SPECTRUM: Spectrum = _power_law(0.9, 150.0, 15000.0, 40, "soft-proton")
