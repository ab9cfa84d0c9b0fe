"""Run the pipeline: take the store's writer lease, drive the run, report the summary.

The driver (:class:`~xsa_enhance.pipeline.driver.PipelineRun`) is the only writer of the
catalogs and of the store's root attributes. For each observation it submits one
:func:`~xsa_enhance.pipeline.tasks.observation_task`; when that comes back complete it
commits the observation and slice rows (together) and submits one
:func:`~xsa_enhance.pipeline.tasks.product_task` per (slice, model, clamp); product rows are
committed as their tasks finish; a ``runs`` row per observation records the outcome. At the
end the run is logged in the root attributes and the metadata consolidated.

Resuming: orphans of an interrupted run (groups without catalog rows) are removed first;
observations with a row are not harvested again, only their missing products are made;
``force`` removes the observations' rows and groups and redoes them.

:class:`~xsa_enhance.pipeline.summary.RunSummary`, :class:`ProgressState`,
:class:`~xsa_enhance.pipeline.weights.ModelInfo` and :func:`resolve_models` are re-exported
here.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xsa_enhance.errors import InputFileError
from xsa_enhance.pipeline.config import PipelineConfig
from xsa_enhance.pipeline.driver import PipelineRun
from xsa_enhance.pipeline.executors import InProcessExecutor
from xsa_enhance.pipeline.selection import SelectionPlan
from xsa_enhance.pipeline.summary import ProgressState, RunSummary
from xsa_enhance.pipeline.weights import ModelInfo, resolve_models
from xsa_enhance.store.lease import StoreLease, local_store_path

__all__ = ["RunSummary", "ProgressState", "ModelInfo", "run_pipeline", "resolve_models"]

logger = logging.getLogger(__name__)


def run_pipeline(
    config: PipelineConfig,
    *,
    executor: Any = None,
    progress: Callable[[ProgressState], None] | None = None,
    plan: SelectionPlan | None = None,
    on_executor: Callable[[Any], None] | None = None,
    wait_for_lock_s: float | None = 0.0,
) -> RunSummary:
    """Run the pipeline for a selection of observations.

    The run holds the store's writer lease (:mod:`xsa_enhance.store.lease`) from before the
    store is opened until the run is logged: a second run on the same store waits up to
    ``wait_for_lock_s`` seconds for it, then stops with :class:`LeaseHeldError`. Runs that a
    kill left ``running`` in the run log are marked ``interrupted``.

    Parameters
    ----------
    config : PipelineConfig
        What to do (selection, stages, store, executor).
    executor : Executor, optional
        Use this executor (not closed here); default: built from ``config.executor``.
    progress : callable, optional
        Called with a :class:`ProgressState` after every change.
    plan : SelectionPlan, optional
        Observations to process (default: :func:`plan_selection` through the archive).
    on_executor : callable, optional
        Called once with the executor when it is ready (e.g. to print the dashboard link).
    wait_for_lock_s : float or None
        How long to wait for another run's writer lease (0: not at all, None: forever).

    Returns
    -------
    RunSummary

    Raises
    ------
    ConfigError
        Invalid configuration, or ``enhance.require_models`` and a model is missing.
    InputFileError
        The product store cannot be written (disk full, permissions...): the store and the
        reason; what was committed before stays consistent and a rerun resumes.
    LeaseHeldError
        Another run holds the store's writer lease (one line naming it).
    """
    _check_paths(config)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    lease = None
    try:
        folder = local_store_path(config.store)
        if folder is None:
            logger.warning("store %s is not a local folder: no writer lease is taken; make "
                           "sure only one run writes it at a time", config.store)
        else:
            lease = StoreLease(folder, run_id=run_id).acquire(wait_s=wait_for_lock_s)
        run = PipelineRun(config, run_id=run_id, lease=lease, executor=executor,
                          progress=progress, on_executor=on_executor)
        return run.execute(plan)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        raise InputFileError(config.store, f"cannot write the product store: {reason}{where}") from exc
    finally:
        if lease is not None:
            lease.release()


def _check_paths(config: PipelineConfig) -> None:
    """Refuse a store or work folder that is an existing non-folder, before anything runs."""
    folder = local_store_path(config.store)
    if folder is not None and folder.exists() and not folder.is_dir():
        raise InputFileError(folder, "the product store must be a folder, this is a file")
    if config.work_dir:
        work = Path(config.work_dir)
        if work.exists() and not work.is_dir():
            raise InputFileError(work, "the work folder (--work-dir) is a file, not a folder")
        parent = work if work.exists() else next((p for p in work.parents if p.exists()), None)
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise InputFileError(parent, "the work folder (--work-dir) cannot be written")


def in_process(config: PipelineConfig, **kwargs: Any) -> RunSummary:
    """Run with the :class:`~xsa_enhance.pipeline.executors.InProcessExecutor`."""
    with InProcessExecutor() as ex:
        return run_pipeline(config, executor=ex, **kwargs)
