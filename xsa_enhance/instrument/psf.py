"""The EPIC-pn point-spread function: a King profile depending on energy and off-axis angle.

``PSF(r) = (alpha - 1) / (pi rc^2) * [1 + (r / rc)^2]^(-alpha)`` with
``rc = c0 + c1 E + c2 theta + c3 E theta`` (arcsec) and
``alpha = a0 + a1 E + a2 theta + a3 E theta`` (E in keV, theta in arcmin).

Two parameter sets are provided:

* :data:`PSF_HANDBOOK` (default): rc = 4.5", alpha = 1.5 at 1 keV on axis, which reproduces
  the XMM-Newton Users Handbook figures for pn (FWHM ~6-7", HEW ~15"); the energy and off-axis
  dependence is that of the CCF coefficients, shifted to these values.
* :data:`PSF_CCF_EXTENDED`: the XRT3_XPSF "extended" (EXTENDED_PSF) coefficients, which give
  FWHM ~9.7" and HEW ~21" at 1 keV on axis.

The profile is truncated at ``r_max`` (300" by default) and renormalised so that it integrates
to one. ``scale`` multiplies every length (``scale=0.5`` gives the twice sharper PSF of the
super-resolution targets: same shape, FWHM and HEW halved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["KingPSF", "PSF_CCF_EXTENDED", "PSF_HANDBOOK", "psf_kernel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KingPSF:
    """A King-profile PSF model with linear energy / off-axis dependence of its parameters.

    Parameters
    ----------
    rc_coeffs : tuple of 4 float
        ``(c0, c1, c2, c3)`` of ``rc = c0 + c1 E + c2 theta + c3 E theta`` in arcsec.
    alpha_coeffs : tuple of 4 float
        ``(a0, a1, a2, a3)`` of ``alpha`` likewise.
    scale : float
        Resolution multiplier applied to all lengths (0.5 for super-resolution targets).
    r_max_arcsec : float
        Truncation radius before scaling (the profile is renormalised inside it).
    name : str
        Label used in provenance.
    """

    rc_coeffs: tuple[float, float, float, float]
    alpha_coeffs: tuple[float, float, float, float]
    scale: float = 1.0
    r_max_arcsec: float = 300.0
    name: str = "king"

    def with_scale(self, scale: float) -> "KingPSF":
        """The same PSF with every length multiplied by ``scale`` (relative to this one)."""
        if scale <= 0:
            raise ValueError(f"PSF scale must be positive, got {scale}")
        return replace(self, scale=self.scale * scale)

    def parameters(
        self, energy_kev: np.ndarray | float = 1.0, theta_arcmin: np.ndarray | float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """King core radius (arcsec, scaled) and slope at an energy and off-axis angle."""
        e = np.asarray(energy_kev, dtype=np.float64)
        t = np.asarray(theta_arcmin, dtype=np.float64)
        c0, c1, c2, c3 = self.rc_coeffs
        a0, a1, a2, a3 = self.alpha_coeffs
        rc = (c0 + c1 * e + c2 * t + c3 * e * t) * self.scale
        alpha = a0 + a1 * e + a2 * t + a3 * e * t
        return np.maximum(rc, 0.05 * self.scale), np.maximum(alpha, 1.05)

    @property
    def r_max(self) -> float:
        """Truncation radius in arcsec, scaled."""
        return self.r_max_arcsec * self.scale

    def _raw_ee(self, r: np.ndarray, rc: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return 1.0 - (1.0 + (r / rc) ** 2) ** (1.0 - alpha)

    def profile(
        self, r_arcsec: np.ndarray | float, *, energy_kev: float = 1.0, theta_arcmin: float = 0.0
    ) -> np.ndarray:
        """Surface density (fraction per arcsec^2) at radius ``r``; zero beyond ``r_max``."""
        rc, alpha = self.parameters(energy_kev, theta_arcmin)
        r = np.asarray(r_arcsec, dtype=np.float64)
        norm = self._raw_ee(np.asarray(self.r_max), rc, alpha)
        val = (alpha - 1.0) / (np.pi * rc**2) * (1.0 + (r / rc) ** 2) ** (-alpha) / norm
        return np.where(r <= self.r_max, val, 0.0)

    def encircled_energy(
        self, r_arcsec: np.ndarray | float, *, energy_kev: float = 1.0, theta_arcmin: float = 0.0
    ) -> np.ndarray:
        """Fraction of the (truncated, normalised) PSF inside radius ``r``."""
        rc, alpha = self.parameters(energy_kev, theta_arcmin)
        r = np.minimum(np.asarray(r_arcsec, dtype=np.float64), self.r_max)
        return self._raw_ee(r, rc, alpha) / self._raw_ee(np.asarray(self.r_max), rc, alpha)

    def fwhm(self, *, energy_kev: float = 1.0, theta_arcmin: float = 0.0) -> float:
        """Full width at half maximum in arcsec."""
        rc, alpha = self.parameters(energy_kev, theta_arcmin)
        return float(2.0 * rc * np.sqrt(2.0 ** (1.0 / alpha) - 1.0))

    def radius_for_ee(
        self, fraction: float, *, energy_kev: float = 1.0, theta_arcmin: float = 0.0
    ) -> float:
        """Radius (arcsec) enclosing ``fraction`` of the PSF."""
        rc, alpha = self.parameters(energy_kev, theta_arcmin)
        target = fraction * self._raw_ee(np.asarray(self.r_max), rc, alpha)
        return float(rc * np.sqrt((1.0 - target) ** (1.0 / (1.0 - alpha)) - 1.0))

    def hew(self, *, energy_kev: float = 1.0, theta_arcmin: float = 0.0) -> float:
        """Half-energy width (diameter enclosing half of the PSF) in arcsec."""
        return 2.0 * self.radius_for_ee(0.5, energy_kev=energy_kev, theta_arcmin=theta_arcmin)

    def sample_radius(
        self,
        rng: np.random.Generator,
        *,
        energy_kev: np.ndarray | float = 1.0,
        theta_arcmin: np.ndarray | float = 0.0,
        size: int | None = None,
    ) -> np.ndarray:
        """Draw radial offsets (arcsec) from the PSF by inverting its encircled energy.

        Parameters
        ----------
        rng : numpy.random.Generator
            Random generator.
        energy_kev, theta_arcmin : float or array
            Per-event energy and off-axis angle (broadcast together).
        size : int, optional
            Number of draws when both are scalars.
        """
        rc, alpha = self.parameters(energy_kev, theta_arcmin)
        shape = np.broadcast(rc, alpha).shape if size is None else (size,)
        emax = self._raw_ee(np.asarray(self.r_max), rc, alpha)
        u = rng.random(shape) * emax
        return rc * np.sqrt((1.0 - u) ** (1.0 / (1.0 - alpha)) - 1.0)

    def scatter(
        self,
        rng: np.random.Generator,
        n: int,
        *,
        energy_kev: np.ndarray | float = 1.0,
        theta_arcmin: np.ndarray | float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random 2-D offsets (arcsec) of ``n`` photons: ``(dx, dy)``."""
        r = self.sample_radius(
            rng,
            energy_kev=np.broadcast_to(energy_kev, (n,)),
            theta_arcmin=np.broadcast_to(theta_arcmin, (n,)),
        )
        phi = rng.random(n) * (2.0 * np.pi)
        return r * np.cos(phi), r * np.sin(phi)


_CCF_RC = (6.636, -0.305, -0.175, -0.0067)
_CCF_ALPHA = (1.525, -0.015, -0.012, -0.0010)

#: XRT3_XPSF "extended" King coefficients (FWHM ~9.7", HEW ~21" at 1 keV on axis).
PSF_CCF_EXTENDED: KingPSF = KingPSF(_CCF_RC, _CCF_ALPHA, name="ccf-extended")

#: Handbook-like default: rc = 4.5", alpha = 1.5 at 1 keV on axis, CCF dependence on E, theta.
PSF_HANDBOOK: KingPSF = KingPSF(
    (4.5 - _CCF_RC[1], _CCF_RC[1], _CCF_RC[2], _CCF_RC[3]),
    (1.5 - _CCF_ALPHA[1], _CCF_ALPHA[1], _CCF_ALPHA[2], _CCF_ALPHA[3]),
    name="handbook",
)


def psf_kernel(
    psf: KingPSF,
    *,
    pixel_arcsec: float,
    radius_pixels: int | None = None,
    energy_kev: float = 1.0,
    theta_arcmin: float = 0.0,
    oversample: int = 5,
) -> np.ndarray:
    """A normalised image kernel of the PSF on a pixel grid (centred, odd size).

    Each pixel value is the PSF integrated over the pixel (by ``oversample`` x ``oversample``
    sub-samples; the central pixel is integrated analytically through the encircled energy of
    the inscribed and outer annulus to capture the cusp). The kernel sums to one.

    Parameters
    ----------
    psf : KingPSF
        The PSF model (including its ``scale``).
    pixel_arcsec : float
        Pixel size in arcsec.
    radius_pixels : int, optional
        Half size of the kernel; default covers ``psf.r_max``.
    energy_kev, theta_arcmin : float
        Energy and off-axis angle at which the PSF is evaluated.
    oversample : int
        Sub-samples per pixel and axis.

    Returns
    -------
    ndarray of float64, shape ``(2 R + 1, 2 R + 1)``
    """
    if radius_pixels is None:
        radius_pixels = int(np.ceil(psf.r_max / pixel_arcsec))
    n = 2 * radius_pixels + 1
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    c = np.arange(n) - radius_pixels
    pos = (c[:, None] + sub[None, :]).ravel() * pixel_arcsec
    xx, yy = np.meshgrid(pos, pos)
    r = np.hypot(xx, yy)
    dens = psf.profile(r, energy_kev=energy_kev, theta_arcmin=theta_arcmin)
    k = dens.reshape(n, oversample, n, oversample).mean(axis=(1, 3)) * pixel_arcsec**2
    # The cusp: replace the central pixel by the analytic integral over a disc of equal area.
    k[radius_pixels, radius_pixels] = float(
        psf.encircled_energy(pixel_arcsec / np.sqrt(np.pi), energy_kev=energy_kev,
                             theta_arcmin=theta_arcmin)
    )
    return k / k.sum()
