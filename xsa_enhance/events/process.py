"""One exposure from PIEVLI (+ FBKTSR) to slice images: the events stage's entry point."""

from __future__ import annotations

import logging
import os
import time as _time

import numpy as np

from xsa_enhance.events.binning import screen_flat_index
from xsa_enhance.events.gti import _flare_gtis_with_source, gti_exposure
from xsa_enhance.events.reader import read_event_list
from xsa_enhance.events.slicing import make_slices
from xsa_enhance.events.types import EventsConfig, ProcessedObservation, Slice, SliceImage
from xsa_enhance.instrument.grid import DetGrid

__all__ = ["process_event_list", "detector_mask_for", "needed_columns"]

logger = logging.getLogger(__name__)


def detector_mask_for(grid: DetGrid) -> np.ndarray:
    """The instrument model's detector mask on ``grid`` (bool, ``grid.shape``)."""
    from xsa_enhance.instrument.mask import detector_mask  # lazy: instrument is optional here

    mask = np.asarray(detector_mask(grid=grid), dtype=bool)
    if mask.shape != grid.shape:  # pragma: no cover - contract of the instrument stage
        raise RuntimeError(f"detector_mask returned shape {mask.shape}, expected {grid.shape}")
    return mask


def needed_columns(config: EventsConfig, *, with_lightcurve: bool) -> list[str]:
    """Event columns :func:`process_event_list` reads for ``config``."""
    cols = {"TIME", "DETX", "DETY", "PI"} | set(config.screening.columns)
    if with_lightcurve:
        cols |= set(config.lightcurve_selection.columns) | {"PATTERN"}
    return sorted(cols)


def process_event_list(
    pievli: str | os.PathLike,
    fbktsr: str | os.PathLike | None = None,
    *,
    config: EventsConfig | None = None,
    timings: dict[str, float] | None = None,
) -> ProcessedObservation:
    """Screen an EPIC-pn event list, remove flares, slice the clean exposure and bin images.

    Parameters
    ----------
    pievli : str or path-like
        The PIEVLI event list (FITS or ``.FTZ``).
    fbktsr : str or path-like, optional
        The FBKTSR flaring-background light curve; without it the flare light curve is built
        from the events (PATTERN==0, 10-12 keV, 100 s bins, 0.4 counts/s).
    config : EventsConfig, optional
        Options (default: the paper's screening, 0.5-2 keV, every 10 ks multiple).
    timings : dict, optional
        Filled with ``read_s``, ``flares_s``, ``screen_s``, ``bin_s`` (seconds).

    Returns
    -------
    ProcessedObservation
        Clean GTIs and exposure, flare fraction and the :class:`SliceImage` list (the whole
        clean exposure first when ``config.include_full``, then every slice).

    Raises
    ------
    InputFileError
        Unsuitable or corrupt input files (see :func:`read_event_list`).
    """
    config = config or EventsConfig()
    tm: dict[str, float] = {} if timings is None else timings
    cols = needed_columns(config, with_lightcurve=fbktsr is None)
    ev = read_event_list(pievli, columns=cols, timings=tm)

    t0 = _time.perf_counter()
    clean, source = _flare_gtis_with_source(ev, fbktsr, config=config)
    clean_exp = gti_exposure(clean)
    ccd_exp = ev.exposure_s
    flare_fraction = 0.0 if ccd_exp <= 0 else max(0.0, 1.0 - clean_exp / ccd_exp)
    tm["flares_s"] = _time.perf_counter() - t0
    logger.info(
        "%s: clean exposure %.1f s of %.1f s (flare fraction %.3f, from %s)",
        ev.meta.obsid, clean_exp, ccd_exp, flare_fraction, source,
    )  # fmt: skip

    t0 = _time.perf_counter()
    grids = [config.grid(g) for g in config.grids]
    flats = screen_flat_index(ev.columns, expression=config.screening, band=config.band, grids=grids)
    tm["screen_s"] = _time.perf_counter() - t0

    t0 = _time.perf_counter()
    times = ev.columns["TIME"]
    masks = {g.name: detector_mask_for(g) for g in grids}
    slices: list[Slice] = []
    if config.include_full and len(clean):
        slices.append(Slice(length_ks=None, n_slices=1, index=0, gtis=clean))
    slices.extend(make_slices(clean, lengths_ks=config.slice_lengths_ks, unit_ks=config.slice_unit_ks))

    images: list[SliceImage] = []
    for sl in slices:
        counts = [_bin_gtis(times, flat, sl.gtis, g) for flat, g in zip(flats, grids)]
        img = SliceImage(
            obsid=ev.meta.obsid,
            expidstr=ev.meta.expidstr,
            length_ks=sl.length_ks,
            n_slices=sl.n_slices,
            index=sl.index,
            gtis=sl.gtis,
            exposure_s=sl.exposure_s,
            counts=counts[0],
            mask=masks[grids[0].name],
            grid=grids[0],
            band=config.band,
            expression=config.expression,
            counts_2x=counts[1] if len(grids) > 1 else None,
            mask_2x=masks[grids[1].name] if len(grids) > 1 else None,
            meta=ev.meta,
        )
        images.append(img)
    n_screened = _count_in(times, flats[0], clean, grids[0])
    tm["bin_s"] = _time.perf_counter() - t0
    return ProcessedObservation(
        meta=ev.meta,
        ccd_gtis=ev.gtis,
        clean_gtis=clean,
        clean_exposure_s=clean_exp,
        flare_fraction=flare_fraction,
        flare_source=source,
        n_events=len(ev),
        n_screened=n_screened,
        slices=images,
        config=config,
    )


def _ranges(times: np.ndarray, gtis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.searchsorted(times, gtis[:, 0], side="left")
    hi = np.searchsorted(times, gtis[:, 1], side="left")
    return lo, hi


def _bin_gtis(times: np.ndarray, flat: np.ndarray, gtis: np.ndarray, grid: DetGrid) -> np.ndarray:
    """Counts of the (time-sorted) events inside ``gtis`` from their flat pixel index."""
    size = grid.nx * grid.ny
    if len(gtis) == 0:
        return np.zeros(grid.shape, dtype=np.int32)
    lo, hi = _ranges(times, gtis)
    pieces = [flat[a:b] for a, b in zip(lo, hi) if b > a]
    if not pieces:
        return np.zeros(grid.shape, dtype=np.int32)
    idx = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    counts = np.bincount(idx, minlength=size + 1)[:size]
    return counts.astype(np.int32).reshape(grid.shape)


def _count_in(times: np.ndarray, flat: np.ndarray, gtis: np.ndarray, grid: DetGrid) -> int:
    """Screened events inside ``gtis`` that fall on the grid."""
    size = grid.nx * grid.ny
    lo, hi = _ranges(times, gtis)
    return int(sum(int(np.count_nonzero(flat[a:b] != size)) for a, b in zip(lo, hi)))
