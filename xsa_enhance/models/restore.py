"""Restoration of the bright-source flux that clamping removes.

Clamping (see :mod:`xsa_enhance.models.normalise`) clips every input pixel at the clamp value
``v`` before the network sees it, so the cores of bright sources lose all flux above ``v``;
the network, trained on clamped targets, cannot put it back. The restoration adds that flux
back after inference, on the output grid:

1. excess (input grid, counts/s/pixel): ``e = max(rate - v, 0)`` inside the mask;
2. resample to the output grid conserving flux: each input pixel's excess is shared equally
   by its ``factor x factor`` output pixels (``e_out = repeat(e) / factor**2``);
3. add it to the denormalised network output (rate), then multiply by the target exposure.

The excess is a *rate*, so it is scaled to the model's target exposure together with the
network output; the total counts of the enhanced image are then the network's estimate of the
flux below the clamp plus the exact flux above it. Properties (tested):

* the restored flux equals the clipped input flux exactly (to float rounding), for every
  clamp mode (``none`` clips nothing, so it adds nothing);
* with a flux-conserving network (one that maps its input to itself, or to its
  nearest-neighbour upsampling), the total counts equal ``sum(rate) * target_exposure``.

Limitations: restored pixels keep the input's resolution and noise (the excess is not
super-resolved or de-noised), and the added flux sits on top of a network output that saturates
near 1 in those pixels. The pixels that received restored flux are returned as a mask so that
products can flag them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = ["Restoration", "clamp_excess", "upsample_flux", "restore_flux"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restoration:
    """Summary of a flux restoration.

    Parameters
    ----------
    excess_rate : float
        Total rate above the clamp (counts/s), i.e. what was added back.
    n_pixels : int
        Input pixels above the clamp.
    fraction : float
        ``excess_rate`` over the total input rate (0 when the input is empty).
    """

    excess_rate: float
    n_pixels: int
    fraction: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict (for product attributes)."""
        return {"restored_rate": self.excess_rate, "restored_pixels": self.n_pixels,
                "restored_fraction": self.fraction}


def clamp_excess(rate: np.ndarray, value: float, *, mask: np.ndarray | None = None) -> np.ndarray:
    """The part of a rate image above the clamp value (zero outside the mask).

    Parameters
    ----------
    rate : numpy.ndarray
        Rate image (counts/s/pixel).
    value : float
        Clamp value.
    mask : numpy.ndarray, optional
        Non-zero inside the detector.

    Returns
    -------
    numpy.ndarray
        float64 excess, same shape as ``rate``.
    """
    r = np.nan_to_num(np.asarray(rate, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    excess = np.clip(r - float(value), 0.0, None)
    if mask is not None:
        excess = np.where(np.asarray(mask) != 0, excess, 0.0)
    return excess


def upsample_flux(image: np.ndarray, factor: int) -> np.ndarray:
    """Resample to a grid ``factor`` times finer, sharing each pixel's flux equally.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image of per-pixel fluxes.
    factor : int
        Positive integer.

    Returns
    -------
    numpy.ndarray
        Shape ``(ny * factor, nx * factor)``; the sum over each block equals the input pixel.
    """
    if factor == 1:
        return np.asarray(image, dtype=np.float64).copy()
    up = np.repeat(np.repeat(np.asarray(image, dtype=np.float64), factor, axis=0), factor, axis=1)
    return up / float(factor * factor)


def restore_flux(
    output_rate: np.ndarray,
    input_rate: np.ndarray,
    value: float,
    *,
    factor: int,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, Restoration]:
    """Add the clamped-away input flux to a network output.

    Parameters
    ----------
    output_rate : numpy.ndarray
        Denormalised network output (counts/s/pixel) on the output grid.
    input_rate : numpy.ndarray
        The network's input rate (counts/s/pixel, masked) on the input grid, before clamping.
    value : float
        The input clamp value used by the normalisation.
    factor : int
        Output grid factor (2 for SR, 1 for DN).
    mask : numpy.ndarray, optional
        Input-grid detector mask.

    Returns
    -------
    rate : numpy.ndarray
        Restored output rate (float64).
    restored : numpy.ndarray
        Boolean output-grid map of the pixels that received flux.
    summary : Restoration
    """
    excess = clamp_excess(input_rate, value, mask=mask)
    up = upsample_flux(excess, factor)
    if up.shape != output_rate.shape:
        raise ValueError(f"output shape {output_rate.shape} != upsampled input {up.shape}")
    total_in = float(np.nansum(np.clip(np.asarray(input_rate, dtype=np.float64), 0.0, None)))
    total_ex = float(excess.sum())
    summary = Restoration(
        excess_rate=total_ex,
        n_pixels=int(np.count_nonzero(excess)),
        fraction=total_ex / total_in if total_in > 0 else 0.0,
    )
    if summary.n_pixels:
        logger.debug("restoring %.4g counts/s above the clamp in %d pixels (%.2f%% of the flux)",
                     total_ex, summary.n_pixels, 100 * summary.fraction)
    return np.asarray(output_rate, dtype=np.float64) + up, up > 0, summary
