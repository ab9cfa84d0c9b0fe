"""The pipeline driver: plan the work, submit tasks, commit catalog rows, log the run.

The driver is the only writer of the catalogs and of the store's root attributes. For each
observation it submits one :func:`~xsa_enhance.pipeline.tasks.observation_task`; when that
comes back complete it commits the observation and slice rows (together) and submits one
:func:`~xsa_enhance.pipeline.tasks.product_task` per (slice, model, clamp); product rows are
committed as their tasks finish; a ``runs`` row per observation records the outcome. At the
end the run is logged in the root attributes and the metadata consolidated.

Resuming: orphans of an interrupted run (groups without catalog rows) are removed first;
observations with a row are not harvested again, only their missing products are made;
``force`` removes the observations' rows and groups and redoes them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xsa_enhance._version import __version__
from xsa_enhance.errors import InputFileError, XsaError
from xsa_enhance.pipeline.config import PipelineConfig
from xsa_enhance.pipeline.executors import InProcessExecutor, make_executor
from xsa_enhance.pipeline.selection import SelectionPlan, plan_selection
from xsa_enhance.pipeline.tasks import ObservationOutcome, ProductOutcome, observation_task, product_task
from xsa_enhance.store import ProductStore, utcnow
from xsa_enhance.store.lease import StoreLease, describe_holder, local_store_path

__all__ = ["RunSummary", "ProgressState", "ModelInfo", "run_pipeline", "resolve_models"]

logger = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """Weights resolved by the driver for one clamp (the tasks load them by reference and
    check the sha).

    Attributes
    ----------
    ref : str
        What the tasks load: the resolved registry id (``xmm-superres-v5``) or the file path.
    name : str
        The weights id (product keys and catalog rows use it).
    kind : str
        ``sr`` or ``dn``.
    sha256 : str
        Digest of the weights.
    clamp : str
        The clamp these weights run with ("" when resolved without one).
    source : str
        The configured name (an alias such as ``xmm-superres``, a version or a path).
    trained_clamp : str
        The clamp mode the weights were trained for (their config ``clamp``).
    clamp_mismatch : bool
        Whether ``clamp`` is of another family (only with ``enhance.allow_clamp_mismatch``).
    """

    ref: str
    name: str
    kind: str
    sha256: str
    clamp: str = ""
    source: str = ""
    trained_clamp: str = "constant"
    clamp_mismatch: bool = False


@dataclass
class ProgressState:
    """Counters handed to the progress callback after every change."""

    observations_total: int = 0
    observations_done: int = 0
    slices_done: int = 0
    products_total: int = 0
    products_done: int = 0
    failures: int = 0
    skipped: int = 0
    message: str = ""


@dataclass
class RunSummary:
    """What a run did.

    Attributes
    ----------
    run_id : str
        Identifier written into every catalog row of the run.
    outcomes : list of dict
        Per observation: obsid, status (ok/failed/skipped), stage, reason.
    models : list of ModelInfo
        Models used (empty when none is installed).
    notes : list of str
        Things the user should know (e.g. no trained model installed).
    stage_seconds : dict
        Summed task time per stage (harvest, events, write, enhance...).
    driver_seconds : dict
        Time the driver spent itself: ``setup_s`` (store, orphans, models, selection),
        ``commit_s`` (catalog commits) and ``finalize_s`` (run log, consolidation).
    """

    run_id: str
    store: str
    started: str
    finished: str = ""
    wall_s: float = 0.0
    executor: str = ""
    dashboard_link: str | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    n_slices: int = 0
    n_products: int = 0
    n_products_failed: int = 0
    models: list[ModelInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    orphans_removed: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    driver_seconds: dict[str, float] = field(default_factory=dict)
    selection_since: str | None = None

    def count(self, status: str) -> int:
        """Observations with this status."""
        return sum(1 for o in self.outcomes if o["status"] == status)

    def format(self) -> str:
        """A human-readable summary (several lines)."""
        lines = [
            f"run {self.run_id} into {self.store}: {len(self.outcomes)} observations - "
            f"{self.count('ok')} ok, {self.count('skipped')} skipped, "
            f"{self.count('failed')} failed; {self.n_slices} slice images, "
            f"{self.n_products} enhanced products"
            + (f" ({self.n_products_failed} failed)" if self.n_products_failed else "")
            + f" in {self.wall_s:.1f} s ({self.executor})",
        ]
        if self.models:
            def _one(m: ModelInfo) -> str:
                via = f"{m.source} -> " if m.source and m.source != m.ref else ""
                clamp = f", clamp {m.clamp}" if m.clamp else ""
                mism = f", MISMATCH: trained for {m.trained_clamp}" if m.clamp_mismatch else ""
                return f"{via}{m.name} [{m.kind}, sha256 {m.sha256[:12]}{clamp}{mism}]"

            lines.append("models: " + ", ".join(_one(m) for m in self.models))
        for note in self.notes:
            lines.append(f"note: {note}")
        if self.orphans_removed:
            lines.append(f"removed {len(self.orphans_removed)} orphans of an interrupted run")
        width = max([6] + [len(o["obsid"]) for o in self.outcomes])
        for o in self.outcomes:
            reason = f"  ({o['stage']}: {o['reason']})" if o["reason"] else ""
            lines.append(f"  {o['obsid']:<{width}}  {o['status']:<7}{reason}")
        return "\n".join(lines)


#: The aliases of the shipped models (the default ``enhance.models``).
_STANDARD_ALIASES: tuple[str, ...] = ("xmm-superres", "xmm-denoise")


def resolve_models(
    refs: tuple[str, ...] | list[str],
    clamps: tuple[str, ...] | list[str] | None = None,
    *,
    require: bool = False,
    allow_clamp_mismatch: bool = False,
) -> tuple[list[ModelInfo], list[str]]:
    """Resolve the weights of every (model, clamp) pair once in the driver.

    An alias (``xmm-superres``) gets, for each clamp, the newest weights trained for that
    clamp mode, so one alias under two clamps may give two different weights; an explicit
    version or a weight file is checked against each clamp's mode. Each weights file is
    loaded once to learn its name, kind and sha256.

    Parameters
    ----------
    refs : sequence of str
        Registry aliases, versions or weight paths.
    clamps : sequence of str, optional
        Clamp modes every model runs with (default: ``constant``).
    require : bool
        Raise when weights are not installed (missing or unreadable file, empty registry)
        instead of noting it.
    allow_clamp_mismatch : bool
        Accept explicit versions and files whose trained clamp mode differs (recorded in
        :attr:`ModelInfo.clamp_mismatch`).

    Returns
    -------
    models : list of ModelInfo
        One per (model, clamp) pair that has weights (pairs resolving to the same weights
        and clamp appear once).
    notes : list of str
        One line per model that could not be loaded.

    Raises
    ------
    ConfigError
        An unknown model name, an alias without weights for one of the clamp modes, or an
        explicit version / file trained for another mode (unless ``allow_clamp_mismatch``):
        one line.
    """
    from xsa_enhance.errors import ConfigError
    from xsa_enhance.models import load_model
    from xsa_enhance.models.registry import (
        clamp_family,
        clamp_mismatch_message,
        is_model_path,
        list_models,
        resolve_model,
    )

    clamp_list = [str(c) for c in (clamps if clamps else ("constant",))]
    flag = "set enhance.allow_clamp_mismatch: true"
    models: list[ModelInfo] = []
    notes: list[str] = []
    loaded: dict[str, Any] = {}  # ref -> LoadedModel or the note of its failure
    seen: set[tuple[str, str]] = set()
    registry_empty: bool | None = None
    for ref in refs:
        ref = str(ref)
        path = is_model_path(ref)
        for clamp in clamp_list:
            family = clamp_family(clamp)
            if path:
                target = ref
            else:
                try:
                    target = resolve_model(ref, clamp=clamp).id
                except ConfigError as exc:
                    if registry_empty is None:
                        registry_empty = not list_models()
                    if not registry_empty or require or ref not in _STANDARD_ALIASES:
                        # an unknown name stops the run before anything is harvested; only
                        # the standard aliases may lack weights (an empty registry)
                        if registry_empty and ref not in _STANDARD_ALIASES:
                            raise ConfigError(
                                f"unknown model {ref!r}: no weights are registered; known "
                                f"aliases: {', '.join(_STANDARD_ALIASES)} (install weights "
                                "with `xsa-enhance model register`, or give a .pt path)"
                            ) from exc
                        raise
                    note = f"model {ref} not available ({exc}); its products are not made"
                    if note not in notes:
                        notes.append(note)
                    continue
            if target not in loaded:
                try:
                    m = load_model(target)
                except XsaError as exc:
                    if require:
                        raise
                    loaded[target] = f"model {ref} not available ({exc}); its products are not made"
                else:
                    loaded[target] = m
            m = loaded[target]
            if isinstance(m, str):
                if m not in notes:
                    notes.append(m)
                continue
            mismatch = m.clamp_family != family
            if mismatch and not allow_clamp_mismatch:
                raise ConfigError(clamp_mismatch_message(
                    m.name, m.clamp_family, family,
                    alias=None if path else resolve_model(ref).name, flag=flag))
            key = (m.name, clamp)
            if key in seen:
                continue
            seen.add(key)
            models.append(ModelInfo(ref=target, name=m.name, kind=m.kind, sha256=m.sha256,
                                    clamp=clamp, source=ref, trained_clamp=str(m.clamp),
                                    clamp_mismatch=bool(mismatch)))
    if refs and not models:
        notes.append(
            "no trained model is installed: only the un-enhanced slice images were written "
            "(install weights with `xsa-enhance model register`)"
        )
    return models, notes


class _ObsState:
    def __init__(self, obsid: str) -> None:
        self.obsid = obsid
        self.started = utcnow()
        self.t0 = time.perf_counter()
        self.task_s = 0.0
        self.pending = 0
        self.n_slices = 0
        self.n_products = 0
        self.failures: list[str] = []
        self.status = "ok"
        self.stage = ""
        self.reason = ""


def _lengths_match(length_ks: int, wanted: tuple[float, ...]) -> bool:
    return any(abs(float(length_ks) - float(w)) < 1e-6 for w in wanted)


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
        return _run_pipeline(config, executor=executor, progress=progress, plan=plan,
                             on_executor=on_executor, run_id=run_id, lease=lease)
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


def _run_pipeline(
    config: PipelineConfig,
    *,
    executor: Any,
    progress: Callable[[ProgressState], None] | None,
    plan: SelectionPlan | None,
    on_executor: Callable[[Any], None] | None,
    run_id: str,
    lease: StoreLease | None,
) -> RunSummary:
    """The body of :func:`run_pipeline` (OSErrors escape from here)."""
    t_wall = time.perf_counter()
    store = ProductStore(config.store, mode="a", storage_options=config.storage_options or None)
    summary = RunSummary(run_id=run_id, store=store.url, started=utcnow())
    if lease is not None and lease.took_over:
        summary.notes.append(f"took over the writer lease of {describe_holder(lease.took_over)}"
                             " (stale)")
    # Drop the consolidated metadata of the last run while this one writes.
    store.invalidate_consolidated()
    # This run holds the lease: a run still logged as running was killed.
    stale = store.mark_interrupted_runs(except_run=run_id)
    if stale:
        summary.notes.append(f"marked {len(stale)} killed run(s) as interrupted: "
                             + ", ".join(stale))
    summary.orphans_removed = store.clean_orphans()
    store.record_run({"run_id": run_id, "name": config.name, "started": summary.started,
                      "status": "running", "software_version": __version__})

    try:
        if config.events:
            from xsa_enhance.events import EventsConfig

            EventsConfig.from_dict(config.events)
        enh = config.enhance
        # Weights for every (model, clamp) pair, before anything is harvested: an unknown
        # model, a clamp mode without weights or a refused mismatch stops the run here.
        models, notes = resolve_models(enh.models, enh.clamps, require=enh.require_models,
                                       allow_clamp_mismatch=enh.allow_clamp_mismatch)
        summary.models = models
        summary.notes.extend(notes)

        if plan is None:
            plan = plan_selection(config, store=store)
        summary.selection_since = plan.since
        records = {r["obsid"]: r for r in plan.records}
        batch: dict[str, list[dict[str, Any]]] = {}

        last_commit = [time.perf_counter()]

        def flush(*, force: bool = True) -> None:
            """Commit the rows gathered since the last flush, all together."""
            now = time.perf_counter()
            if not force and now - last_commit[0] < config.commit_interval_s:
                return
            if any(batch.values()):
                if lease is not None:
                    lease.check()
                store.commit(batch, run_id=run_id)
                summary.driver_seconds["commit_s"] = (
                    summary.driver_seconds.get("commit_s", 0.0) + time.perf_counter() - now)
                last_commit[0] = time.perf_counter()
            batch.clear()

        state = ProgressState(observations_total=len(records) + len(plan.skipped))

        def report(msg: str = "") -> None:
            state.message = msg
            if progress is not None:
                progress(state)

        def finish(st: _ObsState) -> None:
            if st.failures and st.status == "ok":
                st.status, st.stage = "failed", "enhance"
                st.reason = f"{len(st.failures)} product(s) failed: {st.failures[0]}"
            row = {
                "run_id": run_id,
                "obsid": st.obsid,
                "status": st.status,
                "stage": st.stage or "store",
                "reason": st.reason,
                "n_slices": st.n_slices,
                "n_products": st.n_products,
                "started": st.started,
                "finished": utcnow(),
                "duration": st.task_s,
                "software_version": __version__,
            }
            batch.setdefault("runs", []).append(row)
            summary.outcomes.append(
                {"obsid": st.obsid, "status": st.status, "stage": row["stage"], "reason": st.reason}
            )
            state.observations_done += 1
            if st.status == "failed":
                state.failures += 1
            elif st.status == "skipped":
                state.skipped += 1
            report(f"{st.obsid} {st.status}")

        # Observations the selection left out: recorded, nothing to do.
        for obsid, reason in plan.skipped.items():
            st = _ObsState(obsid)
            st.status, st.stage, st.reason = "skipped", "select", reason
            finish(st)
        flush()

        redo = sorted(records) if config.force else _reprocessed(store, records)
        if redo:
            removed = store.remove_observations(redo)
            why = "--force" if config.force else "new PPS products"
            logger.info("%s: removed %d catalog rows of %d observations", why, removed, len(redo))

        obs_cat = store.catalog("observations")
        done_obs = {k[0]: None for k in obs_cat.keys()}
        obs_status = dict(zip(obs_cat.column("obsid").tolist(), obs_cat.column("status").tolist()))
        slice_table = store.catalog("slices").read()
        product_keys = store.catalog("products").keys()

        def product_jobs(obsid: str, slices: list[tuple[str, int]]) -> list[tuple[str, ModelInfo, str]]:
            jobs = []
            for sid, length in slices:
                if not _lengths_match(length, enh.slice_lengths_ks):
                    continue
                for m in models:  # one per (weights, clamp) pair
                    if (obsid, sid, m.name, m.clamp) not in product_keys:
                        jobs.append((sid, m, m.clamp))
            return jobs

        own_executor = executor is None
        n_to_run = len(records)
        if executor is None:
            executor = make_executor(config.executor, n_tasks=max(1, n_to_run))
        summary.executor = type(executor).__name__
        summary.dashboard_link = getattr(executor, "dashboard_link", None)
        if on_executor is not None:
            on_executor(executor)
    except BaseException as exc:
        # selection, models or the executor failed before any task ran
        try:
            store.record_run({"run_id": run_id, "name": config.name, "started": summary.started,
                              "finished": utcnow(), "status": "failed",
                              "error": f"{type(exc).__name__}: {exc}",
                              "software_version": __version__})
            store.consolidate()
        except OSError:
            logger.exception("could not log the failed run in %s", store.url)
        raise


    pending: dict[Any, tuple[str, Any]] = {}
    states: dict[str, _ObsState] = {}
    common = {"store_url": store.url, "storage_options": config.storage_options or None}

    def submit_products(st: _ObsState, jobs: list[tuple[str, ModelInfo, str]]) -> None:
        for sid, m, clamp in jobs:
            fut = executor.submit(
                product_task, st.obsid, sid, kind="inference",
                model_ref=m.ref, model_sha256=m.sha256, clamp=clamp, stretch=enh.stretch,
                device=enh.device, torch_threads=enh.torch_threads,
                allow_clamp_mismatch=m.clamp_mismatch,
                uncertainty_samples=enh.uncertainty_samples if enh.uncertainty else 0, **common,
            )
            pending[fut] = ("product", st.obsid)
            st.pending += 1
            state.products_total += 1

    summary.driver_seconds["setup_s"] = time.perf_counter() - t_wall
    try:
        for obsid in sorted(records):
            st = _ObsState(obsid)
            states[obsid] = st
            if obsid in done_obs:
                if obs_status.get(obsid) == "skipped":
                    st.status, st.stage, st.reason = "skipped", "store", "already in the store (skipped before)"
                    finish(st)
                    continue
                rows = slice_table[[str(o) == obsid for o in slice_table["obsid"]]] if len(slice_table) else []
                slices = [(str(r["slice_id"]), int(r["length_ks"])) for r in rows]
                jobs = product_jobs(obsid, slices)
                if not jobs:
                    st.status, st.stage, st.reason = "skipped", "store", "already in the store"
                    finish(st)
                    continue
                submit_products(st, jobs)
                continue
            fut = executor.submit(
                observation_task, obsid, kind="io",
                archive=config.archive, events=dict(config.events), record=records[obsid],
                work_dir=config.work_dir, keep_downloads=config.keep_downloads, **common,
            )
            pending[fut] = ("observation", obsid)
            st.pending += 1
        flush()
        report("submitted")

        while pending:
            done, _ = executor.wait_any(list(pending))
            for fut in done:
                what, obsid = pending.pop(fut)
                st = states[obsid]
                st.pending -= 1
                try:
                    result = executor.result(fut)
                except Exception as exc:  # noqa: BLE001 - worker died, cancelled...
                    reason = f"{type(exc).__name__}: {exc}"
                    if what == "observation":
                        result = ObservationOutcome(obsid=obsid, status="failed", stage="executor", reason=reason)
                    else:
                        result = ProductOutcome(obsid=obsid, slice_id="?", model="?", clamp="?",
                                                status="failed", reason=reason)
                for k, v in (getattr(result, "timings", {}) or {}).items():
                    summary.stage_seconds[k] = summary.stage_seconds.get(k, 0.0) + float(v)
                st.task_s += float((result.timings or {}).get("total_s", 0.0))
                if what == "observation":
                    jobs: list[tuple[str, ModelInfo, str]] = []
                    if result.status == "ok":
                        slices = [(r["slice_id"], int(r["length_ks"])) for r in result.slices]
                        jobs = product_jobs(obsid, slices)
                        if not jobs and not result.reason:
                            # an ok observation without products says why (both catalogs)
                            result.reason = no_products_reason(
                                result.observation, slices, enh.slice_lengths_ks, models)
                            result.observation["reason"] = result.reason
                    _handle_observation(result, st, batch, summary, state)
                    submit_products(st, jobs)
                else:
                    if result.status == "ok":
                        batch.setdefault("products", []).append(result.product)
                        batch.setdefault("sources", []).extend(result.sources)
                        st.n_products += 1
                        summary.n_products += 1
                        state.products_done += 1
                    else:
                        st.failures.append(result.reason)
                        summary.n_products_failed += 1
                        state.products_done += 1
                        logger.warning("product %s/%s %s %s failed: %s", obsid, result.slice_id,
                                       result.model, result.clamp, result.reason)
                    report()
                if st.pending == 0:
                    finish(st)
            flush(force=not pending)
    finally:
        t_fin = time.perf_counter()
        try:
            flush()  # rows of complete groups gathered before an interruption
        except Exception:  # noqa: BLE001 - never mask the original error
            logger.exception("could not commit the last rows; the next run redoes them")
        if own_executor:
            executor.close()
        summary.finished = utcnow()
        complete = all(s.pending == 0 for s in states.values())
        try:
            store.record_run({
                "run_id": run_id, "name": config.name, "started": summary.started,
                "finished": summary.finished,
                "status": "finished" if complete else "interrupted",
                "selection_since": summary.selection_since,
                "n_ok": summary.count("ok"), "n_failed": summary.count("failed"),
                "n_skipped": summary.count("skipped"), "n_slices": summary.n_slices,
                "n_products": summary.n_products, "software_version": __version__,
                "models": [m.__dict__ for m in summary.models],
            })
            store.consolidate()
        except OSError:
            if complete:
                raise
            logger.exception("could not log the interrupted run in %s", store.url)
        summary.driver_seconds["finalize_s"] = time.perf_counter() - t_fin
        summary.wall_s = time.perf_counter() - t_wall
    return summary


def no_products_reason(observation: dict[str, Any], slices: list[tuple[str, int]],
                       lengths_ks: tuple[float, ...], models: list[ModelInfo]) -> str:
    """Why an observation processed without error got no enhanced product (one line).

    Parameters
    ----------
    observation : dict
        Its ``observations`` catalog row (``clean_exposure`` in s).
    slices : list of (slice_id, length_ks)
        The slice images written.
    lengths_ks : tuple of float
        Slice exposures the models enhance (``enhance.slice_lengths_ks``).
    models : list of ModelInfo
        The (weights, clamp) pairs of the run.

    Returns
    -------
    str
    """
    if not models:
        return "no enhanced products: no model was run (none given or no weights installed)"
    wanted = " or ".join(f"{w:g} ks" for w in sorted(lengths_ks))
    made = sorted({length for _, length in slices if length > 0})
    have = [f"{length} ks" for length in made]
    if any(length <= 0 for _, length in slices):
        have.append("the full exposure")  # length 0: the whole clean exposure in one image
    have_txt = ", ".join(have) if have else "none"
    clean = float(observation.get("clean_exposure", float("nan")))
    return (f"no enhanced products: clean exposure {clean / 1000:.1f} ks gives no {wanted} "
            f"slice for the models (images made: {have_txt})")


def _reprocessed(store: ProductStore, records: dict[str, dict[str, Any]]) -> list[str]:
    """Observations in the store whose PPS products were reprocessed since they were stored."""
    table = store.catalog("observations").read()
    out = []
    for row in table:
        rec = records.get(str(row["obsid"]))
        if rec is None:
            continue
        new = (str(rec.get("pps_version", "")), str(rec.get("pps_proc_date", "")))
        old = (str(row["pps_version"]), str(row["pps_proc_date"]))
        if all(new) and new != old:
            logger.info("%s: PPS %s of %s replaces %s of %s", row["obsid"], new[0], new[1], *old)
            out.append(str(row["obsid"]))
    return out


def _handle_observation(
    result: ObservationOutcome,
    st: _ObsState,
    batch: dict[str, list[dict[str, Any]]],
    summary: RunSummary,
    state: ProgressState,
) -> None:
    st.status, st.stage, st.reason = result.status, result.stage, result.reason
    if result.status == "failed":
        logger.warning("observation %s failed in %s: %s", result.obsid, result.stage, result.reason)
        return
    # Slice rows and the observation row are published together, after the task marked
    # the observation group complete.
    batch.setdefault("slices", []).extend(result.slices)
    batch.setdefault("observations", []).append(result.observation)
    batch.setdefault("sources", []).extend(getattr(result, "sources", []))
    st.n_slices = len(result.slices)
    summary.n_slices += len(result.slices)
    state.slices_done += len(result.slices)


def in_process(config: PipelineConfig, **kwargs: Any) -> RunSummary:
    """Run with the :class:`~xsa_enhance.pipeline.executors.InProcessExecutor`."""
    with InProcessExecutor() as ex:
        return run_pipeline(config, executor=ex, **kwargs)


