"""The PPS products of a simulated exposure: headers, the PIEVLI event list and the FBKTSR
light curve, written through :mod:`xsa_enhance.formats.pps`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsa_enhance._version import __version__
from xsa_enhance.formats.pps import MJDREF, pps_file_name, write_event_file, write_lightcurve_file
from xsa_enhance.instrument import geometry as geo
from xsa_enhance.instrument.background import (
    PARTICLE_RATE,
    SKY_RATE,
    particle_total_rate_density,
    sky_total_rate_density,
)
from xsa_enhance.instrument.detector import PATTERN_MIX_PARTICLE, PATTERN_MIX_XRAY, ReadoutMode
from xsa_enhance.instrument.spectra import PARTICLE_SPECTRUM, SKY_SPECTRUM
from xsa_enhance.simulate.detector_response import DetectedEvents
from xsa_enhance.simulate.event_components import fov_geometry

__all__ = [
    "FBK_BAND_EV",
    "FBK_TIMEDEL",
    "ExposureInfo",
    "expected_quiet_fbk_rate",
    "exposure_header",
    "write_pievli",
    "write_fbktsr",
]

logger = logging.getLogger(__name__)

#: Time bin of the FBKTSR light curve (s) and its energy band (PI, eV).
FBK_TIMEDEL: float = 100.0
FBK_BAND_EV: tuple[float, float] = (10000.0, 12000.0)

_GZIP_LEVEL = 1


def expected_quiet_fbk_rate(
    *, particle_rate: float = PARTICLE_RATE, sky_rate: float = SKY_RATE
) -> float:
    """Expected quiescent FBKTSR rate (counts/s): 10-12 keV, PATTERN 0, FLAG 0 events of the
    particle and sky backgrounds (sources not included)."""
    good_area, _, _, vign_area = fov_geometry()
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


@dataclass(frozen=True)
class ExposureInfo:
    """What the headers of a simulated exposure say.

    Attributes
    ----------
    obsid, instrument, filter : str
    mode : ReadoutMode
    ra_pnt, dec_pnt, pa_pnt : float
        Pointing (degrees).
    date_obs, date_end : str
        UTC start and end.
    tstart, tstop, ontime, livetime : float
        Mission times (s) and exposure.
    seed : int
    """

    obsid: str
    instrument: str
    filter: str
    mode: ReadoutMode
    ra_pnt: float
    dec_pnt: float
    pa_pnt: float
    date_obs: str
    date_end: str
    tstart: float
    tstop: float
    ontime: float
    livetime: float
    seed: int


def exposure_header(info: ExposureInfo, *, expid: str) -> dict[str, tuple[object, str]]:
    """Keywords (with comments) shared by every header of the exposure's products.

    Parameters
    ----------
    info : ExposureInfo
    expid : str
        ``S003``-like exposure identifier.

    Returns
    -------
    dict
    """
    obsid, mode = info.obsid, info.mode
    return {
        "TELESCOP": ("XMM", "Telescope (mission) name"),
        "INSTRUME": (info.instrument, "Instrument name"),
        "OBS_MODE": ("POINTING", "Observation mode (pointing or slew)"),
        "OBS_ID": (obsid, "Observation identifier"),
        "EXP_ID": (f"{obsid}{expid[1:]}", "Exposure identifier"),
        "EXPIDSTR": (expid, "Exposure identifier (Xnnn)"),
        "DATAMODE": (mode.datamode, "Instrument mode (IMAGING, TIMING, BURST, etc.)"),
        "SUBMODE": (mode.submode, "Guest Observer mode"),
        "FILTER": (info.filter, "Filter ID"),
        "FRMTIME": (int(round(mode.frame_time_s * 1000)), "[ms] Frame Time, nearest integer"),
        "OBJECT": (f"SIM {obsid}", "Name of observed object"),
        "RA_OBJ": (info.ra_pnt, "[deg] Right ascension of the target"),
        "DEC_OBJ": (info.dec_pnt, "[deg] Declination of the target"),
        "RA_PNT": (info.ra_pnt, "[deg] Mean pointing RA"),
        "DEC_PNT": (info.dec_pnt, "[deg] Mean pointing Dec"),
        "PA_PNT": (info.pa_pnt, "[deg] Mean position angle"),
        "RA_NOM": (info.ra_pnt, "[deg] Nominal pointing RA"),
        "DEC_NOM": (info.dec_pnt, "[deg] Nominal pointing Dec"),
        "DATE-OBS": (info.date_obs, "Start Time (UTC) of exposure"),
        "DATE-END": (info.date_end, "End Time (UTC) of exposure"),
        "TIMESYS": ("TT", "XMM time will be TT (Terrestial Time)"),
        "MJDREF": (MJDREF, "[d] 1998-01-01T00:00:00 (TT) expressed in MJD"),
        "TIMEZERO": (0, "Clock correction (if not zero)"),
        "TIMEUNIT": ("s", "All times in s unless specified otherwise"),
        "TIMEREF": ("LOCAL", "Reference location of photon arrival times"),
        "TASSIGN": ("SATELLITE", "Location of time assignment"),
        "CREATOR": (f"xsa-enhance simulate {__version__}", "Simulated data, not real"),
        "SIMULATD": (True, "Written by the xsa-enhance simulator"),
        "SIMSEED": (int(info.seed), "Simulator seed"),
        "TSTART": (info.tstart, "Date of first event"),
        "TSTOP": (info.tstop, "Date of last event"),
        "ONTIME": (info.ontime, "[s] Sum of GTIs"),
        "LIVETIME": (info.livetime, "[s] Ontime times live fraction"),
        "EXPOSURE": (info.livetime, "[s] Exposure (live time)"),
    }


def write_pievli(out: Path, info: ExposureInfo, detected: DetectedEvents, gtis: np.ndarray,
                 *, header: dict[str, tuple[object, str]], product: str) -> Path:
    """Write the event list (``EVENTS`` with the sky WCS, the same GTIs for CCDs 1-12).

    Parameters
    ----------
    out : Path
        Folder.
    info : ExposureInfo
    detected : DetectedEvents
    gtis : (n, 2) ndarray
    header : dict
        :func:`exposure_header`.
    product : str
        ``PIEVLI`` or ``MIEVLI``.

    Returns
    -------
    Path
    """
    events_header = {
        **geo.sky_wcs_keywords(ra_nom=info.ra_pnt, dec_nom=info.dec_pnt),
        "HDUCLASS": ("OGIP", "format conforms to OGIP/GSFC conventions"),
        "HDUCLAS1": ("EVENTS", "Extension contains events"),
    }
    path = out / pps_file_name(info.obsid, instrument=info.instrument, product=product)
    return write_event_file(path, detected.columns, header=header, events_header=events_header,
                            gtis={ccd: gtis for ccd in range(1, 13)}, gzip_level=_GZIP_LEVEL)


def write_fbktsr(out: Path, info: ExposureInfo, detected: DetectedEvents, gtis: np.ndarray,
                 *, header: dict[str, tuple[object, str]], quiet_rate: float) -> tuple[Path, float]:
    """Write the flaring-background light curve: 10-12 keV, ``PATTERN == 0``, ``FLAG == 0``
    events in :data:`FBK_TIMEDEL` bins (NaN where no GTI covers a bin).

    Parameters
    ----------
    out : Path
        Folder.
    info : ExposureInfo
    detected : DetectedEvents
    gtis : (n, 2) ndarray
    header : dict
        :func:`exposure_header`.
    quiet_rate : float
        :func:`expected_quiet_fbk_rate`, from which ``FLCUTTHR`` follows.

    Returns
    -------
    (Path, float)
        The file and its ``FLCUTTHR``.
    """
    tstart, tstop = info.tstart, info.tstop
    cols = detected.columns
    edges = np.arange(tstart, tstop + FBK_TIMEDEL * 0.5, FBK_TIMEDEL)
    if edges[-1] < tstop:
        edges = np.append(edges, edges[-1] + FBK_TIMEDEL)
    pi = detected.pi
    sel = (pi >= FBK_BAND_EV[0]) & (pi < FBK_BAND_EV[1])
    sel &= (cols["PATTERN"] == 0) & (cols["FLAG"] == 0)
    counts, _ = np.histogram(cols["TIME"][sel], bins=edges)
    frac = np.zeros(counts.size)
    for a, b in gtis:
        frac += np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
    frac /= FBK_TIMEDEL
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(frac > 0, counts / (FBK_TIMEDEL * frac), np.nan)
        err = np.where(frac > 0, np.sqrt(np.maximum(counts, 1)) / (FBK_TIMEDEL * frac), np.nan)
    q = quiet_rate
    flcutthr = float(round(q * 1.15 + 3.0 * np.sqrt(q / FBK_TIMEDEL), 3))
    rate_header = {
        **header,
        "TIMEDEL": (FBK_TIMEDEL, "[s] Length of the time bins"),
        "TIMEPIXR": (0.5, "Bin time refers to the bin centre"),
        "HDUCLASS": "OGIP",
        "HDUCLAS1": ("LIGHTCURVE", "Extension contains a light curve"),
        "HDUCLAS2": "TOTAL",
        "HDUCLAS3": "RATE",
        "FLCUTTHR": (flcutthr, "[count/s] Optimised flare cut threshold"),
        "CHANMIN": (int(FBK_BAND_EV[0]), "[eV] Lower PI of the light curve band"),
        "CHANMAX": (int(FBK_BAND_EV[1]), "[eV] Upper PI of the light curve band"),
        "PATTERN": ("==0", "Event patterns used"),
    }
    path = out / pps_file_name(info.obsid, instrument=info.instrument, product="FBKTSR")
    write_lightcurve_file(
        path,
        {"TIME": 0.5 * (edges[:-1] + edges[1:]), "RATE": rate, "ERROR": err, "FRACEXP": frac},
        header=rate_header, primary_header=header, gzip_level=_GZIP_LEVEL,
    )
    return path, flcutthr
