"""The pipeline's stages as plain, typed functions (no Dask in here).

harvest -> events -> (write inputs) -> enhance -> (write products). Each stage takes its own
configuration and calls the stage package's public API; :mod:`xsa_enhance.pipeline.tasks`
strings them into the units an executor runs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.errors import ObservationError
from xsa_enhance.archive.config import ArchiveConfig
from xsa_enhance.store.records import uncertainty_summary  # the products catalog's columns

__all__ = [
    "harvest_stage",
    "events_stage",
    "enhance_stage",
    "uncertainty_summary",
    "CAVEATS",
]

logger = logging.getLogger(__name__)

#: Caveats carried by every enhanced product (DESIGN.md section 7).
CAVEATS: tuple[str, ...] = (
    "Enhanced images can contain hallucinated features; do not use them for detection or "
    "photometry without checking the input.",
    "Clamping loses bright-source information above the clamp value.",
    "The models are for EPIC-pn, 0.5-2 keV, full-frame modes and ~20 ks inputs.",
)


def harvest_stage(
    obsid: str,
    out_dir: str | os.PathLike[str],
    *,
    settings: ArchiveConfig,
    exposure_id: str | None = None,
) -> Any:
    """Download the PIEVLI and FBKTSR products of one observation into ``out_dir``.

    Parameters
    ----------
    obsid : str
        Observation identifier.
    out_dir : path-like
        A folder owned by this task (downloads never go to the working directory and the
        astropy download cache is not used).
    settings : ArchiveConfig
        Archive section of the pipeline config.
    exposure_id : str, optional
        The pn exposure the selection chose (``S003``); default: the archive stage's choice.

    Returns
    -------
    HarvestResult
        With ``status`` ``downloaded``/``cached`` and the product paths.

    Raises
    ------
    ObservationError
        When the harvest failed (the reason from the archive stage).
    """
    from xsa_enhance.archive import harvest_observation

    result = harvest_observation(
        obsid, Path(out_dir), config=settings, exposure_id=exposure_id
    )
    if result.status == "failed":
        raise ObservationError(obsid, f"harvest failed: {result.reason}")
    if "PIEVLI" not in result.products:
        raise ObservationError(obsid, "harvest returned no PIEVLI event list")
    return result


def events_stage(
    pievli: str | os.PathLike[str],
    fbktsr: str | os.PathLike[str] | None,
    *,
    config: Any,
    timings: dict[str, float] | None = None,
) -> Any:
    """Screen, flare-filter, slice and bin one event list.

    Parameters
    ----------
    pievli, fbktsr : path-like
        The harvested products (``fbktsr`` may be ``None``).
    config : xsa_enhance.events.EventsConfig
        Options of the events stage.
    timings : dict, optional
        Filled with the events stage's own timings.

    Returns
    -------
    xsa_enhance.events.ProcessedObservation
    """
    from xsa_enhance.events import process_event_list

    return process_event_list(pievli, fbktsr, config=config, timings=timings)


def enhance_stage(
    counts: np.ndarray,
    exposure_s: float,
    mask: np.ndarray,
    model: Any,
    *,
    clamp: str,
    stretch: str | None = None,
    device: str | None = None,
    allow_clamp_mismatch: bool = False,
    uncertainty_samples: int = 0,
) -> Any:
    """Run one model on one slice image.

    Parameters
    ----------
    counts : numpy.ndarray
        Counts on the 1x DET grid.
    exposure_s : float
        Exposure of the slice.
    mask : numpy.ndarray
        Detector mask of the slice.
    model : xsa_enhance.models.LoadedModel
        The loaded model.
    clamp : str
        ``constant``, ``quantile:q`` or ``none``.
    stretch : str, optional
        Stretch override.
    device : str, optional
        Torch device.
    allow_clamp_mismatch : bool
        Run even when ``clamp`` is of another family than the model was trained for (the
        driver decided; otherwise refused with a one-line error).
    uncertainty_samples : int
        0: no uncertainty; otherwise the resamples of the per-pixel uncertainty
        (``out.uncertainty``; seed 0, so ``xsa-enhance enhance --uncertainty
        --uncertainty-samples N`` on the same slice gives the same sigma).

    Returns
    -------
    xsa_enhance.models.inference.EnhancedImage
    """
    from xsa_enhance.models.inference import enhance

    t0 = time.perf_counter()
    n = int(uncertainty_samples or 0)
    out = enhance(counts, exposure_s, mask, model, clamp=clamp, stretch=stretch, device=device,
                  allow_clamp_mismatch=allow_clamp_mismatch, uncertainty=n > 0,
                  uncertainty_samples=max(n, 2), uncertainty_seed=0)
    logger.debug("%s on a %.0f s image took %.2f s", model.name, exposure_s, time.perf_counter() - t0)
    return out
