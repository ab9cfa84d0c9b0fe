"""Task functions an executor runs: one per observation, one per enhanced product.

Tasks own what they write (DESIGN.md section 8): :func:`observation_task` owns
``obs/<obsid>`` and its slice inputs, :func:`product_task` owns one product group. They
never touch the catalogs: they hand what the stages made to the store
(:mod:`xsa_enhance.store.ingest`), which writes the groups and builds their catalog rows, and
return those rows; the driver commits them once the groups are complete. Expected failures (:class:`~xsa_enhance.errors.XsaError`) and
unexpected ones are returned as outcomes with the reason, so one bad observation never
stops the batch.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsa_enhance.archive.config import ArchiveConfig
from xsa_enhance.errors import InputFileError, ObservationError, XsaError
from xsa_enhance.obsid import validate_obsid
from xsa_enhance.pipeline.stages import CAVEATS, enhance_stage, events_stage, harvest_stage
from xsa_enhance.store import ProductStore, utcnow
from xsa_enhance.store.ingest import StoredSlice, write_enhanced, write_observation
from xsa_enhance.store.records import source_rows

__all__ = [
    "ObservationOutcome",
    "ProductOutcome",
    "observation_task",
    "product_task",
    "cached_model",
    "clear_model_cache",
]

logger = logging.getLogger(__name__)

_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_MODEL_LOCK = threading.Lock()


@dataclass
class ObservationOutcome:
    """What an observation task did.

    ``status`` is ``ok`` (inputs written), ``skipped`` (nothing usable, e.g. no clean
    exposure) or ``failed``; ``stage`` names where it was decided.
    """

    obsid: str
    status: str
    stage: str
    reason: str = ""
    observation: dict[str, Any] | None = None
    slices: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProductOutcome:
    """What a product task did (``status`` ``ok`` or ``failed``)."""

    obsid: str
    slice_id: str
    model: str
    clamp: str
    status: str
    reason: str = ""
    product: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)


def _worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


def _reason(exc: BaseException, *, obsid: str | None = None, scratch: str | None = None) -> str:
    """One-line failure reason; a file is named by its base name (the PPS product name), not
    by the task's deleted temporary path, together with the observation."""
    if isinstance(exc, ObservationError):
        text = exc.reason
    elif isinstance(exc, InputFileError):
        name = os.path.basename(exc.path) or exc.path
        text = f"{name} (observation {obsid}): {exc.reason}" if obsid else f"{name}: {exc.reason}"
    elif isinstance(exc, XsaError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    if scratch:
        text = text.replace(scratch.rstrip(os.sep) + os.sep, "")
    return " ".join(text.split())


def _open_store(store_url: str, storage_options: dict[str, Any] | None) -> ProductStore:
    return ProductStore(store_url, mode="r+", storage_options=storage_options or None)


def _input_sources(slices: list[StoredSlice]) -> list[dict[str, Any]]:
    """Sources detected on the stored 1x slice images themselves (``xsa_enhance.detect``)."""
    from xsa_enhance.detect.slice_sources import detect_slice_sources

    rows: list[dict[str, Any]] = []
    for s in slices:
        if s.image.grid.name != "1x":
            continue
        im = s.image
        table = detect_slice_sources(np.asarray(im.counts), float(im.exposure_s),
                                     np.asarray(im.mask, dtype=bool), attrs=s.attrs)
        base = {**{k: s.row[k] for k in ("obsid", "expidstr", "slice_id", "length_ks")},
                "model": "input", "clamp_mode": ""}
        rows += source_rows(table, base=base, kind="input")
    return rows


def observation_task(
    obsid: str,
    *,
    store_url: str,
    storage_options: dict[str, Any] | None = None,
    archive: ArchiveConfig,
    events: dict[str, Any],
    record: dict[str, Any] | None = None,
    work_dir: str | None = None,
    keep_downloads: bool = False,
) -> ObservationOutcome:
    """Harvest, process and store the slice images of one observation.

    Parameters
    ----------
    obsid : str
        Observation identifier.
    store_url : str
        Product store (the task opens its own handle).
    storage_options : dict, optional
        fsspec options of the store.
    archive : ArchiveConfig
        Archive section of the pipeline config.
    events : dict
        Options of :class:`~xsa_enhance.events.EventsConfig`.
    record : dict, optional
        What the archive selection said about the observation (PPS version, dates).
    work_dir : str, optional
        Parent of this task's private temporary folder.
    keep_downloads : bool
        Keep the downloaded files in ``<work_dir>/downloads/<obsid>/`` and reuse them in
        later runs (the archive stage marks verified downloads).

    Returns
    -------
    ObservationOutcome
    """
    from xsa_enhance.events import EventsConfig

    t_start = time.perf_counter()
    record = dict(record or {})
    timings: dict[str, float] = {}
    stage = "harvest"
    try:
        # before the id is used in any path (temporary folder, downloads, store groups)
        obsid = validate_obsid(obsid, source="observation task")
    except ObservationError as exc:
        return ObservationOutcome(
            obsid=str(obsid), status="failed", stage=stage, reason=exc.reason,
            timings={"total_s": time.perf_counter() - t_start}, worker=_worker_name(),
        )
    if work_dir:
        os.makedirs(work_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"xsa-{obsid}-", dir=work_dir or None)
    # Kept downloads go to <work_dir>/downloads/<obsid>/ (owned by this observation's task),
    # where a later run finds them verified ("cached"); otherwise a private temporary folder.
    downloads = (
        os.path.join(work_dir or tempfile.gettempdir(), "downloads") if keep_downloads else tmp
    )
    try:
        t0 = time.perf_counter()
        harvest = harvest_stage(
            obsid, downloads, settings=archive, exposure_id=record.get("exposure_id") or None
        )
        timings["harvest_s"] = time.perf_counter() - t0
        harvest_time = utcnow()

        stage = "events"
        t0 = time.perf_counter()
        config = EventsConfig.from_dict(events)
        proc = events_stage(
            harvest.products["PIEVLI"], harvest.products.get("FBKTSR"), config=config
        )
        timings["events_s"] = time.perf_counter() - t0

        stage = "store"
        t0 = time.perf_counter()
        store = _open_store(store_url, storage_options)
        provenance = {"pps_version": str(record.get("pps_version", "")),
                      "pps_proc_date": str(record.get("pps_proc_date", "")),
                      "harvest_status": str(harvest.status), "harvest_time": harvest_time}
        stored = write_observation(store, obsid, proc, events_config=config.to_dict(),
                                   provenance=provenance)
        source_rows = _input_sources(stored.slices)
        timings["write_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        return ObservationOutcome(
            obsid=obsid, status=stored.status,
            stage="events" if stored.status == "skipped" else "store", reason=stored.reason,
            observation=stored.row, slices=[s.row for s in stored.slices], timings=timings,
            worker=_worker_name(), sources=source_rows,
        )
    except Exception as exc:  # noqa: BLE001 - one bad observation never stops the batch
        if not isinstance(exc, XsaError):
            logger.error("observation %s: unexpected error in %s:\n%s", obsid, stage,
                         traceback.format_exc())
        timings["total_s"] = time.perf_counter() - t_start
        return ObservationOutcome(
            obsid=obsid, status="failed", stage=stage,
            reason=_reason(exc, obsid=obsid, scratch=tmp), timings=timings, worker=_worker_name(),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_model(model_ref: str, sha256: str, *, device: str | None = None) -> Any:
    """Load a model once per worker process (cache keyed by name and weights sha256).

    Parameters
    ----------
    model_ref : str
        Registry name or weight file path.
    sha256 : str
        Digest the driver resolved; the loaded weights must match it.
    device : str, optional
        Torch device.
    """
    from xsa_enhance.errors import InputFileError
    from xsa_enhance.models import load_model

    key = (model_ref, sha256)
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(key)
        if model is None:
            model = load_model(model_ref, device=device)
            if model.sha256.lower() != sha256.lower():
                raise InputFileError(
                    model_ref,
                    f"weights changed during the run (sha256 {model.sha256}, expected {sha256})",
                )
            _MODEL_CACHE[key] = model
            logger.info("loaded model %s (%s) on %s", model.name, sha256[:12], _worker_name())
    return model


def clear_model_cache() -> None:
    """Forget the models loaded in this process."""
    with _MODEL_LOCK:
        _MODEL_CACHE.clear()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def product_task(
    obsid: str,
    slice_id: str,
    *,
    store_url: str,
    storage_options: dict[str, Any] | None = None,
    model_ref: str,
    model_sha256: str,
    clamp: str,
    stretch: str | None = None,
    device: str | None = None,
    torch_threads: int = 1,
    allow_clamp_mismatch: bool = False,
    uncertainty_samples: int = 0,
) -> ProductOutcome:
    """Enhance one stored slice image with one model and clamp mode and store the product.

    Parameters
    ----------
    obsid, slice_id : str
        The input slice (written by :func:`observation_task`).
    store_url : str
        Product store.
    storage_options : dict, optional
        fsspec options of the store.
    model_ref : str
        Registry id (the driver resolves aliases per clamp) or weight file path.
    model_sha256 : str
        Digest of the weights the driver resolved.
    clamp : str
        Clamp mode.
    stretch : str, optional
        Stretch override.
    device : str, optional
        Torch device (default: CUDA when available).
    torch_threads : int
        Torch CPU threads (the same in every executor, so results are identical).
    allow_clamp_mismatch : bool
        The driver allowed running these weights with a clamp of another family (recorded
        in the product); otherwise such a pair fails with a one-line reason.
    uncertainty_samples : int
        Resamples of the per-pixel uncertainty written as the product's ``uncertainty``
        array (in the same group, before it is marked complete); 0: none.

    Returns
    -------
    ProductOutcome
    """
    import torch

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    name = model_ref
    try:
        torch.set_num_threads(int(torch_threads))
        device = device or _default_device()
        t0 = time.perf_counter()
        model = cached_model(model_ref, model_sha256, device=device)
        name = model.name
        timings["load_s"] = time.perf_counter() - t0
        store = _open_store(store_url, storage_options)
        t0 = time.perf_counter()
        data = store.read_slice_input(obsid, slice_id)
        exposure_s = float(data.attrs["exposure_s"])
        timings["product_read_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = enhance_stage(
            data.counts, exposure_s, data.mask, model, clamp=clamp, stretch=stretch, device=device,
            allow_clamp_mismatch=allow_clamp_mismatch, uncertainty_samples=uncertainty_samples,
        )
        timings["enhance_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        row = write_enhanced(store, data, out, model, clamp=clamp, stretch=stretch,
                             caveats=CAVEATS)
        timings["product_write_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        from xsa_enhance.detect.slice_sources import detect_slice_sources

        table = detect_slice_sources(
            data.counts, exposure_s, np.asarray(data.mask, dtype=bool), attrs=data.attrs,
            output=out, kind=model.kind, factor=int(model.factor))
        sources = source_rows(table, kind=model.kind, base={k: row[k] for k in (
            "obsid", "expidstr", "slice_id", "length_ks", "model", "clamp_mode")})
        timings["detect_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        return ProductOutcome(
            obsid=obsid, slice_id=slice_id, model=name, clamp=clamp, status="ok", product=row,
            timings=timings, worker=_worker_name(), sources=sources,
        )
    except Exception as exc:  # noqa: BLE001 - recorded, the batch goes on
        if not isinstance(exc, XsaError):
            logger.error("product %s/%s %s: unexpected error:\n%s", obsid, slice_id, model_ref,
                         traceback.format_exc())
        timings["total_s"] = time.perf_counter() - t_start
        return ProductOutcome(
            obsid=obsid, slice_id=slice_id, model=name, clamp=clamp, status="failed",
            reason=_reason(exc, obsid=obsid), timings=timings, worker=_worker_name(),
        )
