"""EPIC-pn read-out properties used by the event simulator: modes, patterns, flags, gain.

Numbers are approximate (DESIGN.md section 6; XMM-Newton Users Handbook):

* frame time 73.4 ms in full frame (``PrimeFullWindow``), 199.1 ms in extended full frame,
  out-of-time events 6.3 % and 2.3 %; live time 99.9 % in both.
* PATTERN mix of X-ray events: singles (0) ~72 %, doubles (1-4) ~25 %, triples and quadruples
  (5-12) ~3 %. Particle background events are more often extended (55 / 30 / 15 %).
* FLAG bits written by this simulator (a subset of the SAS ``epevents`` bits):
  0x1 next to a bad pixel, 0x4 on the CCD border (RAWX 1 or 64, RAWY 200),
  0x10000 outside the field of view (corner events).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FLAG_CCD_BORDER",
    "FLAG_NEXT_TO_BADPIX",
    "FLAG_OUT_OF_FOV",
    "MODES",
    "PATTERN_MIX_PARTICLE",
    "PATTERN_MIX_XRAY",
    "ReadoutMode",
    "mode_for_submode",
    "pi_to_pha",
    "sample_patterns",
]

logger = logging.getLogger(__name__)

FLAG_NEXT_TO_BADPIX: int = 0x1
FLAG_CCD_BORDER: int = 0x4
FLAG_OUT_OF_FOV: int = 0x10000


@dataclass(frozen=True)
class ReadoutMode:
    """A pn read-out mode.

    Parameters
    ----------
    submode : str
        ``SUBMODE`` keyword value.
    datamode : str
        ``DATAMODE`` keyword (``IMAGING`` or ``TIMING``).
    frame_time_s : float
        Frame time.
    oot_fraction : float
        Fraction of out-of-time events.
    live_fraction : float
        Live time / on time.
    ccds : tuple of int
        CCDs read out.
    rawy_range : tuple of int
        Transmitted rows (inclusive).
    rawx_range : tuple of int
        Read-out columns (inclusive).
    """

    submode: str
    datamode: str
    frame_time_s: float
    oot_fraction: float
    live_fraction: float
    ccds: tuple[int, ...]
    rawy_range: tuple[int, int]
    rawx_range: tuple[int, int] = (1, 64)


_ALL = tuple(range(1, 13))

#: The supported read-out modes, by ``SUBMODE``.
MODES: dict[str, ReadoutMode] = {
    "PrimeFullWindow": ReadoutMode("PrimeFullWindow", "IMAGING", 0.0734, 0.063, 0.999, _ALL, (13, 200)),
    "PrimeFullWindowExtended": ReadoutMode(
        "PrimeFullWindowExtended", "IMAGING", 0.1991, 0.023, 0.999, _ALL, (13, 200)
    ),
    "PrimeLargeWindow": ReadoutMode("PrimeLargeWindow", "IMAGING", 0.0477, 0.0016, 0.949, _ALL, (101, 200)),
    "PrimeSmallWindow": ReadoutMode(
        "PrimeSmallWindow", "IMAGING", 0.0057, 0.011, 0.710, (4,), (138, 200), (1, 63)
    ),
    "FastTiming": ReadoutMode("FastTiming", "TIMING", 0.00003, 0.0, 0.990, (4,), (1, 200), (1, 64)),
}


def mode_for_submode(submode: str) -> ReadoutMode:
    """The :class:`ReadoutMode` of a ``SUBMODE`` name; ``ValueError`` if unknown."""
    try:
        return MODES[submode]
    except KeyError:
        raise ValueError(
            f"unknown pn SUBMODE {submode!r}; known: {', '.join(sorted(MODES))}"
        ) from None


#: Probabilities of PATTERN 0..12 for X-ray events.
PATTERN_MIX_XRAY: np.ndarray = np.concatenate([[0.72], np.full(4, 0.0625), np.full(8, 0.03 / 8)])
#: Probabilities of PATTERN 0..12 for particle-background events.
PATTERN_MIX_PARTICLE: np.ndarray = np.concatenate([[0.55], np.full(4, 0.075), np.full(8, 0.15 / 8)])


def sample_patterns(rng: np.random.Generator, n: int, mix: np.ndarray) -> np.ndarray:
    """Draw ``n`` PATTERN values (0..12) with probabilities ``mix``."""
    mix = np.asarray(mix, dtype=np.float64)
    return rng.choice(mix.size, size=n, p=mix / mix.sum()).astype(np.uint8)


def pi_to_pha(pi_ev: np.ndarray, ccdnr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raw pulse heights (ADU, 0..4095) from PI: ~5 eV per ADU with a 1 % gain per CCD."""
    gain = 5.0 * (1.0 + 0.01 * np.sin(np.asarray(ccdnr, dtype=np.float64) * 1.7))
    pha = np.asarray(pi_ev, dtype=np.float64) / gain + rng.normal(0.0, 1.0, np.shape(pi_ev))
    return np.clip(np.rint(pha), 0, 4095).astype(np.int16)
