"""The EPIC-pn response to simulated events: out-of-time events, read-out window, flags,
integer detector and sky coordinates, PI and PHA.

:func:`detect_events` turns the float DET positions of
:class:`~xsa_enhance.simulate.event_components.EventComponents` into the columns of a PIEVLI
``EVENTS`` table, in time order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from xsa_enhance.instrument import geometry as geo
from xsa_enhance.instrument.detector import (
    FLAG_CCD_BORDER,
    FLAG_NEXT_TO_BADPIX,
    FLAG_OUT_OF_FOV,
    ReadoutMode,
    pi_to_pha,
)
from xsa_enhance.simulate.event_components import EventComponents

__all__ = ["DetectedEvents", "detect_events"]

logger = logging.getLogger(__name__)

#: ``TNULL`` of the sky coordinates (events outside the sky grid).
_SKY_NULL = -99999999


@dataclass(frozen=True)
class DetectedEvents:
    """The registered events of an exposure.

    Attributes
    ----------
    columns : dict of str to ndarray
        The ``EVENTS`` columns (:data:`xsa_enhance.formats.pps.EVENT_COLUMNS`), in file order
        and time order.
    pi : ndarray
        The energies before rounding (eV), for the FBKTSR band selection.
    """

    columns: dict[str, np.ndarray]
    pi: np.ndarray

    @property
    def n_events(self) -> int:
        """Number of events."""
        return int(self.columns["TIME"].size)


def _out_of_time(rng: np.random.Generator, is_xray: np.ndarray, ccdnr: np.ndarray,
                 dety: np.ndarray, rawy: np.ndarray, fraction: float) -> None:
    """Photons registered during read-out land at a random RAWY (``dety``, ``rawy`` in place)."""
    oot = is_xray & (ccdnr > 0) & (rng.random(dety.size) < fraction)
    if oot.any():
        # DETX depends on RAWX only and DETY on RAWY only: keep the column, redraw the row.
        new_rawy = 0.5 + rng.random(int(oot.sum())) * geo.N_RAWY
        dety[oot] = geo.raw_to_det(ccdnr[oot], np.ones(new_rawy.size), new_rawy)[1]
        rawy[oot] = np.floor(new_rawy + 0.5).astype(np.int64)


def _flags(rng: np.random.Generator, rawx: np.ndarray, rawy: np.ndarray, detx_i: np.ndarray,
           dety_i: np.ndarray) -> np.ndarray:
    """``FLAG``: CCD border, next to a bad pixel (0.2 % at random), outside the FOV."""
    flag = np.zeros(rawx.size, dtype=np.int32)
    flag[(rawx == 1) | (rawx == geo.N_RAWX) | (rawy == geo.N_RAWY)] |= FLAG_CCD_BORDER
    flag[rng.random(rawx.size) < 0.002] |= FLAG_NEXT_TO_BADPIX
    flag[~geo.in_fov(detx_i, dety_i)] |= FLAG_OUT_OF_FOV
    return flag


def _sky_pixels(detx: np.ndarray, dety: np.ndarray, pa_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer sky X, Y; ``TNULL`` outside the sky grid."""
    skyx, skyy = geo.det_to_sky(detx, dety, pa_deg=pa_deg)
    skyx = np.rint(skyx).astype(np.int32)
    skyy = np.rint(skyy).astype(np.int32)
    bad_sky = (skyx < 1) | (skyx > geo.SKY_XMAX) | (skyy < 1) | (skyy > geo.SKY_XMAX)
    skyx[bad_sky] = _SKY_NULL
    skyy[bad_sky] = _SKY_NULL
    return skyx, skyy


def detect_events(rng: np.random.Generator, events: EventComponents, mode: ReadoutMode, *,
                  out_of_time: bool, pa_deg: float) -> DetectedEvents:
    """Register the events of ``events`` with the pn in read-out ``mode``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The exposure's generator (continued after the components were drawn).
    events : EventComponents
        Float DET positions, times, PI, patterns.
    mode : ReadoutMode
        The sub-mode's CCDs, RAWX/RAWY window and out-of-time fraction.
    out_of_time : bool
        Simulate out-of-time events.
    pa_deg : float
        Position angle (degrees) for the sky coordinates.

    Returns
    -------
    DetectedEvents
    """
    detx, dety, time, pi, pattern, is_xray = events.concat()
    ccdnr, rawx, rawy = geo.det_to_raw(detx, dety)
    _out_of_time(rng, is_xray, ccdnr, dety, rawy, mode.oot_fraction if out_of_time else 0.0)

    # Read-out window of the mode.
    ok = (ccdnr > 0) & np.isin(ccdnr, mode.ccds)
    ok &= (rawy >= mode.rawy_range[0]) & (rawy <= mode.rawy_range[1])
    ok &= (rawx >= mode.rawx_range[0]) & (rawx <= mode.rawx_range[1])
    order = np.argsort(time[ok], kind="stable")
    sel = np.nonzero(ok)[0][order]
    detx, dety, time, pi, pattern = detx[sel], dety[sel], time[sel], pi[sel], pattern[sel]
    ccdnr, rawx, rawy = ccdnr[sel], rawx[sel], rawy[sel]
    n_ev = int(time.size)

    detx_i = np.rint(detx).astype(np.int16)
    dety_i = np.rint(dety).astype(np.int16)
    flag = _flags(rng, rawx, rawy, detx_i, dety_i)
    skyx, skyy = _sky_pixels(detx, dety, pa_deg)
    pha = pi_to_pha(pi, ccdnr, rng)
    columns = {
        "TIME": time,
        "RAWX": rawx.astype(np.int16),
        "RAWY": rawy.astype(np.int16),
        "DETX": detx_i,
        "DETY": dety_i,
        "X": skyx,
        "Y": skyy,
        "PHA": pha,
        "PI": np.rint(pi).astype(np.int16),
        "FLAG": flag,
        "PATTERN": pattern.astype(np.uint8),
        "PAT_ID": np.zeros(n_ev, np.int16),
        "PAT_SEQ": np.zeros(n_ev, np.uint8),
        "CCDNR": ccdnr.astype(np.uint8),
    }
    return DetectedEvents(columns=columns, pi=pi)
