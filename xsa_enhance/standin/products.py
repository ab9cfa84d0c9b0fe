"""PPS product files of the local archive: production (with the simulator or minimal), caching,
corruption. Their names and layout are those of :mod:`xsa_enhance.formats.pps`."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from astropy.io import fits

from xsa_enhance.atomicio import atomic_path
from xsa_enhance.formats.pps import (
    MJDREF,
    parse_pps_name,
    pps_file_name,
    write_event_file,
    write_lightcurve_file,
)
from xsa_enhance.standin.catalog import StandinObservation

__all__ = [
    "Producer",
    "simulate_products",
    "ensure_products",
]

logger = logging.getLogger(__name__)

#: A function writing the PPS files of one observation into a folder and returning them.
Producer = Callable[[Path, StandinObservation], list[Path]]

_CACHE_VERSION = 2


def _retag_exposure(path: Path, obsid: str, exposure_id: str) -> None:
    """Rewrite the exposure identifiers in the headers of a simulated product."""
    with fits.open(path) as hdul:
        hdul.readall()
        for hdu in hdul:
            if "EXPIDSTR" in hdu.header or hdu is hdul[0]:
                hdu.header["EXPIDSTR"] = exposure_id
            if "EXP_ID" in hdu.header:
                hdu.header["EXP_ID"] = f"{obsid}{exposure_id}"
        with atomic_path(path, suffix=".tmp.fits.gz") as tmp:
            hdul.writeto(tmp, overwrite=True)


def corrupt_file(path: Path) -> None:
    """Damage a gzipped FITS file in place the way a broken archive copy looks.

    The second half of the compressed bytes is replaced by zeros: the file keeps its size and
    its gzip header, opens, and fails while its data are read.
    """
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    data[half:] = bytes(len(data) - half)
    path.write_bytes(bytes(data))


def _corrupt_if_asked(obs: StandinObservation, files: list[Path]) -> None:
    """Damage the PIEVLI files among ``files`` when ``obs`` is a ``corrupt`` observation.

    Parameters
    ----------
    obs : StandinObservation
        The observation the files were produced for.
    files : list of Path
        The files a producer wrote; other kinds of observation leave them as they are.
    """
    if obs.kind == "corrupt":
        for f in files:
            name = parse_pps_name(f.name)
            if name is not None and name.name == "PIEVLI":
                corrupt_file(f)


def simulate_products(out_dir: Path, obs: StandinObservation) -> list[Path]:
    """Produce the pn PPS files of one observation with :mod:`xsa_enhance.simulate`.

    The main (longest) pn exposure gets ``S003`` PIEVLI and FBKTSR (no FBKTSR in timing
    mode, as in the real PPS); further pn exposures get their own, shorter event lists.
    MOS-only observations have no pn products.

    Parameters
    ----------
    out_dir : Path
        Folder receiving the files.
    obs : StandinObservation
        The observation.

    Returns
    -------
    list of Path
        The files written.
    """
    from astropy.time import Time

    from xsa_enhance.instrument.background import Flare
    from xsa_enhance.simulate.observation import simulate_observation

    pn = sorted(obs.pn_exposures, key=lambda e: (e.exposure_id != "S003", -e.duration))
    if not pn:
        return []
    date_obs = obs.start_utc.replace(" ", "T")
    files: list[Path] = []
    for k, exp in enumerate(pn):
        timing = exp.mode == "FastTiming"
        work = out_dir if k == 0 else out_dir / f".exp{exp.exposure_id}"
        work.mkdir(parents=True, exist_ok=True)
        flare_list = None
        if obs.kind == "flares" and k == 0:
            # Two strong flares, each ~4 ks above 4 % of its peak: about a quarter of the
            # exposure is lost and >= 20 ks stay clean.
            t0 = float((Time(date_obs, format="isot", scale="utc").tt.mjd - MJDREF) * 86400.0)
            span = exp.duration
            flare_list = (Flare(t_peak=t0 + 0.3 * span, width_s=800.0, peak_rate=6.0),
                          Flare(t_peak=t0 + 0.75 * span, width_s=800.0, peak_rate=4.0))
        sim = simulate_observation(
            work, obsid=obs.obsid, exposure_ks=exp.duration / 1000.0,
            seed=obs.seed + k, flares=True, with_fbktsr=not timing and k == 0,
            submode=exp.mode, instrument="EPN", filter=exp.filter, ra=obs.ra, dec=obs.dec,
            pa=obs.position_angle, date_obs=date_obs, flare_list=flare_list,
        )
        made = [sim.pievli] + ([sim.fbktsr] if sim.fbktsr is not None else [])
        if k == 0:
            files.extend(Path(p) for p in made)
            continue
        for p in made:
            p = Path(p)
            product = parse_pps_name(p.name).name  # type: ignore[union-attr]
            target = out_dir / pps_file_name(obs.obsid, product=product,
                                             exposure_id=exp.exposure_id)
            shutil.move(p, target)
            _retag_exposure(target, obs.obsid, exp.exposure_id)
            files.append(target)
        shutil.rmtree(work, ignore_errors=True)
    _corrupt_if_asked(obs, files)
    return files


def ensure_products(
    root: Path, obs: StandinObservation, *, producer: Producer | None = None
) -> list[Path]:
    """Return the cached PPS files of ``obs`` under ``root``, producing them when missing.

    Parameters
    ----------
    root : Path
        Archive root; files go to ``root/<obsid>/``.
    obs : StandinObservation
        The observation.
    producer : callable, optional
        Writes the files (default: :func:`simulate_products`).

    Returns
    -------
    list of Path
        The observation's product files.
    """
    producer = producer or simulate_products
    obs_dir = root / obs.obsid
    stamp = obs_dir / ".standin.json"
    key = {
        "version": _CACHE_VERSION, "kind": obs.kind, "seed": obs.seed,
        "producer": f"{getattr(producer, '__module__', '')}.{getattr(producer, '__qualname__', '')}",
        "exposures": [[e.instrument, e.exposure_id, e.mode, e.duration] for e in obs.exposures],
        "ra": obs.ra, "dec": obs.dec,
    }
    if stamp.is_file():
        try:
            cached = json.loads(stamp.read_text())
        except (OSError, ValueError):
            cached = None
        if cached is not None and cached.get("key") == key:
            files = [obs_dir / name for name in cached.get("files", [])]
            if all(f.is_file() for f in files):
                return files
    if obs_dir.exists():
        shutil.rmtree(obs_dir)
    tmp = root / f".{obs.obsid}.building"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    logger.info("producing the PPS files of %s (%s)", obs.obsid, obs.kind)
    made = producer(tmp, obs)
    names = sorted(p.name for p in made)
    for n in names:
        if parse_pps_name(n) is None:
            raise ValueError(f"producer wrote a file without a PPS name: {n}")
    (tmp / ".standin.json").write_text(json.dumps({"key": key, "files": names}))
    tmp.replace(obs_dir)
    return [obs_dir / n for n in names]


def minimal_products(out_dir: Path, obs: StandinObservation) -> list[Path]:
    """Produce small but structurally complete pn PPS files without the simulator.

    A few hundred uniformly spread events with the EVENTS columns and header keywords of a
    real PIEVLI, one ``STDGTInn`` per CCD, and an FBKTSR light curve (none in timing mode).
    For tests of the archive machinery where the content of the images does not matter;
    ``corrupt`` observations get a damaged PIEVLI as with :func:`simulate_products`.

    Parameters
    ----------
    out_dir : Path
        Folder receiving the files.
    obs : StandinObservation
        The observation.

    Returns
    -------
    list of Path
    """
    import numpy as np

    files: list[Path] = []
    for k, exp in enumerate(obs.pn_exposures):
        rng = np.random.default_rng(obs.seed + k)
        n = 400
        tstart = 6.0e8
        tstop = tstart + exp.duration
        timing = exp.mode == "FastTiming"
        events = {
            "TIME": np.sort(rng.uniform(tstart, tstop, n)),
            "RAWX": rng.integers(1, 65, n),
            "RAWY": rng.integers(13, 201, n),
            "DETX": rng.integers(-18000, 13800, n),
            "DETY": rng.integers(-16500, 14300, n),
            "X": rng.integers(1, 51840, n),
            "Y": rng.integers(1, 51840, n),
            "PHA": rng.integers(20, 4000, n),
            "PI": rng.integers(150, 15000, n),
            "FLAG": np.zeros(n, dtype=np.int32),
            "PATTERN": rng.integers(0, 5, n),
            "CCDNR": rng.integers(1, 13, n),
        }
        header = {
            "OBS_ID": obs.obsid, "EXP_ID": f"{obs.obsid}{exp.exposure_id}",
            "EXPIDSTR": exp.exposure_id, "INSTRUME": "EPN",
            "DATAMODE": "TIMING" if timing else "IMAGING", "SUBMODE": exp.mode,
            "FILTER": exp.filter, "RA_PNT": obs.ra, "DEC_PNT": obs.dec,
            "PA_PNT": obs.position_angle, "TSTART": tstart, "TSTOP": tstop,
            "ONTIME": exp.duration, "TIMESYS": "TT", "MJDREF": MJDREF,
        }
        pievli = out_dir / pps_file_name(obs.obsid, exposure_id=exp.exposure_id)
        write_event_file(pievli, events, header=header,
                         gtis={ccd: [[tstart, tstop]] for ccd in range(1, 13)})
        files.append(pievli)
        if not timing and k == 0:
            nb = max(2, int(exp.duration // 100))
            t = tstart + 50.0 + 100.0 * np.arange(nb)
            rate = np.abs(rng.normal(0.2, 0.03, nb)).astype("f4")
            if obs.kind == "flares":
                rate[nb // 3: nb // 2] *= 30
            fbk = out_dir / pps_file_name(obs.obsid, product="FBKTSR", exposure_id=exp.exposure_id)
            write_lightcurve_file(
                fbk,
                {"TIME": t, "RATE": rate, "ERROR": np.sqrt(rate * 100) / 100,
                 "FRACEXP": np.ones(nb, dtype="f4")},
                header={"TSTART": tstart, "TSTOP": tstop, "TIMEDEL": 100.0,
                        "HDUCLAS1": "LIGHTCURVE", "FLCUTTHR": 0.4, "OBS_ID": obs.obsid},
                primary_header={"OBS_ID": obs.obsid},
            )
            files.append(fbk)
    _corrupt_if_asked(obs, files)
    return files
