"""The run driver: one :class:`PipelineRun` per run, its steps in the order they happen.

1. :meth:`~PipelineRun.open_store`: open the store, mark killed runs interrupted, remove
   orphans, log the run as ``running``;
2. :meth:`~PipelineRun.resolve_weights`: check the events options and resolve the weights
   of every (model, clamp) pair;
3. :meth:`~PipelineRun.select`: plan the observations, log the ones left out, remove the
   ones to redo (``force``, reprocessed PPS) and read what the store already holds;
4. :meth:`~PipelineRun.start_executor`: build (or take) the executor;
5. :meth:`~PipelineRun.submit`: one observation task per new observation, the missing
   product tasks of the stored ones;
6. :meth:`~PipelineRun.collect`: commit each outcome's rows and submit the products of each
   finished observation;
7. :meth:`~PipelineRun.write_summary`: commit what is left, log the run, consolidate.

The driver is the only writer of the catalogs: rows are gathered in a batch and committed
together, at most every ``commit_interval_s`` while tasks run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from xsa_enhance._version import __version__
from xsa_enhance.pipeline.config import PipelineConfig
from xsa_enhance.pipeline.executors import make_executor
from xsa_enhance.pipeline.selection import SelectionPlan, plan_selection
from xsa_enhance.pipeline.summary import ProgressState, RunSummary
from xsa_enhance.pipeline.tasks import ObservationOutcome, ProductOutcome, observation_task, product_task
from xsa_enhance.pipeline.weights import ModelInfo, resolve_models
from xsa_enhance.store import ProductStore, utcnow
from xsa_enhance.store.lease import StoreLease, describe_holder
from xsa_enhance.store.records import catalog_row

__all__ = ["PipelineRun", "no_products_reason"]

logger = logging.getLogger(__name__)

#: A product to make: (slice id, weights, clamp).
ProductJob = tuple[str, ModelInfo, str]


class _ObsState:
    """What the driver knows of one observation while its tasks run."""

    def __init__(self, obsid: str) -> None:
        self.obsid = obsid
        self.started = utcnow()
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


class PipelineRun:
    """One pipeline run on one store; :meth:`execute` runs the steps in order.

    Parameters
    ----------
    config : PipelineConfig
        What to do.
    run_id : str
        Identifier written into every catalog row of the run.
    lease : StoreLease or None
        The store's writer lease, held by the caller (checked before every commit).
    executor : Executor, optional
        Use this executor (not closed here); default: built from ``config.executor``.
    progress : callable, optional
        Called with a :class:`ProgressState` after every change.
    on_executor : callable, optional
        Called once with the executor when it is ready.
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        run_id: str,
        lease: StoreLease | None,
        executor: Any = None,
        progress: Callable[[ProgressState], None] | None = None,
        on_executor: Callable[[Any], None] | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.lease = lease
        self.executor = executor
        self.own_executor = executor is None
        self.progress = progress
        self.on_executor = on_executor
        self.t_wall = time.perf_counter()
        self.store: ProductStore | None = None
        self.summary: RunSummary | None = None
        self.state = ProgressState()
        self.models: list[ModelInfo] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.batch: dict[str, list[dict[str, Any]]] = {}
        self.last_commit = time.perf_counter()
        self.states: dict[str, _ObsState] = {}
        self.pending: dict[Any, tuple[str, str]] = {}
        self.done_obs: set[str] = set()
        self.obs_status: dict[str, str] = {}
        self.slice_table: Any = None
        self.product_keys: Any = ()

    def execute(self, plan: SelectionPlan | None = None) -> RunSummary:
        """Run every step; the run is logged as failed when a step before the tasks fails.

        Parameters
        ----------
        plan : SelectionPlan, optional
            Observations to process (default: :func:`plan_selection` through the archive).

        Returns
        -------
        RunSummary
        """
        summary = self.open_store()
        try:
            self.resolve_weights()
            self.select(plan)
            self.start_executor()
        except BaseException as exc:
            self.log_failed_setup(exc)
            raise
        summary.driver_seconds["setup_s"] = time.perf_counter() - self.t_wall
        try:
            self.submit()
            self.collect()
        finally:
            self.write_summary()
        return summary

    # -- the steps, in order ------------------------------------------------------------

    def open_store(self) -> RunSummary:
        """Open the store, clean up after killed runs and log this one as running."""
        config = self.config
        store = self.store = ProductStore(config.store, mode="a",
                                          storage_options=config.storage_options or None)
        summary = self.summary = RunSummary(run_id=self.run_id, store=store.url, started=utcnow())
        if self.lease is not None and self.lease.took_over:
            summary.notes.append(f"took over the writer lease of "
                                 f"{describe_holder(self.lease.took_over)} (stale)")
        # Drop the consolidated metadata of the last run while this one writes.
        store.invalidate_consolidated()
        # This run holds the lease: a run still logged as running was killed.
        stale = store.mark_interrupted_runs(except_run=self.run_id)
        if stale:
            summary.notes.append(f"marked {len(stale)} killed run(s) as interrupted: "
                                 + ", ".join(stale))
        summary.orphans_removed = store.clean_orphans()
        store.record_run({"run_id": self.run_id, "name": config.name, "started": summary.started,
                          "status": "running", "software_version": __version__})
        return summary

    def resolve_weights(self) -> None:
        """Check the events options and resolve the weights of every (model, clamp) pair.

        An unknown model, a clamp mode without weights or a refused mismatch stops the run
        here, before anything is harvested.
        """
        if self.config.events:
            from xsa_enhance.events import EventsConfig

            EventsConfig.from_dict(self.config.events)
        enh = self.config.enhance
        self.models, notes = resolve_models(enh.models, enh.clamps, require=enh.require_models,
                                            allow_clamp_mismatch=enh.allow_clamp_mismatch)
        self.summary.models = self.models
        self.summary.notes.extend(notes)

    def select(self, plan: SelectionPlan | None) -> None:
        """Plan the observations, log the skipped ones, drop those to redo, read the store."""
        config, store = self.config, self.store
        if plan is None:
            plan = plan_selection(config, store=store)
        self.summary.selection_since = plan.since
        self.records = {r["obsid"]: r for r in plan.records}
        self.last_commit = time.perf_counter()
        self.state.observations_total = len(self.records) + len(plan.skipped)
        # Observations the selection left out: recorded, nothing to do.
        for obsid, reason in plan.skipped.items():
            st = _ObsState(obsid)
            st.status, st.stage, st.reason = "skipped", "select", reason
            self._finish(st)
        self._flush()

        redo = sorted(self.records) if config.force else _reprocessed(store, self.records)
        if redo:
            removed = store.remove_observations(redo)
            why = "--force" if config.force else "new PPS products"
            logger.info("%s: removed %d catalog rows of %d observations", why, removed, len(redo))

        obs_cat = store.catalog("observations")
        self.done_obs = {k[0] for k in obs_cat.keys()}
        self.obs_status = dict(zip(obs_cat.column("obsid").tolist(),
                                   obs_cat.column("status").tolist()))
        self.slice_table = store.catalog("slices").read()
        self.product_keys = store.catalog("products").keys()

    def start_executor(self) -> None:
        """Build the executor (unless one was given) and announce it."""
        if self.executor is None:
            self.executor = make_executor(self.config.executor, n_tasks=max(1, len(self.records)))
        self.summary.executor = type(self.executor).__name__
        self.summary.dashboard_link = getattr(self.executor, "dashboard_link", None)
        if self.on_executor is not None:
            self.on_executor(self.executor)

    def submit(self) -> None:
        """Submit the observation tasks, and the missing products of stored observations."""
        config = self.config
        for obsid in sorted(self.records):
            st = _ObsState(obsid)
            self.states[obsid] = st
            if obsid in self.done_obs:
                if self.obs_status.get(obsid) == "skipped":
                    st.status, st.stage, st.reason = ("skipped", "store",
                                                      "already in the store (skipped before)")
                    self._finish(st)
                    continue
                table = self.slice_table
                rows = table[[str(o) == obsid for o in table["obsid"]]] if len(table) else []
                slices = [(str(r["slice_id"]), int(r["length_ks"])) for r in rows]
                jobs = self._product_jobs(obsid, slices)
                if not jobs:
                    st.status, st.stage, st.reason = "skipped", "store", "already in the store"
                    self._finish(st)
                    continue
                self._submit_products(st, jobs)
                continue
            fut = self.executor.submit(
                observation_task, obsid, kind="io",
                archive=config.archive, events=dict(config.events), record=self.records[obsid],
                work_dir=config.work_dir, keep_downloads=config.keep_downloads,
                **self._store_args(),
            )
            self.pending[fut] = ("observation", obsid)
            st.pending += 1
        self._flush()
        self._report("submitted")

    def collect(self) -> None:
        """Wait for the tasks; commit their rows and submit the products they allow."""
        executor = self.executor
        while self.pending:
            done, _ = executor.wait_any(list(self.pending))
            for fut in done:
                what, obsid = self.pending.pop(fut)
                st = self.states[obsid]
                st.pending -= 1
                try:
                    result = executor.result(fut)
                except Exception as exc:  # noqa: BLE001 - worker died, cancelled...
                    reason = f"{type(exc).__name__}: {exc}"
                    if what == "observation":
                        result = ObservationOutcome(obsid=obsid, status="failed",
                                                    stage="executor", reason=reason)
                    else:
                        result = ProductOutcome(obsid=obsid, slice_id="?", model="?", clamp="?",
                                                status="failed", reason=reason)
                stage_s = self.summary.stage_seconds
                for k, v in (getattr(result, "timings", {}) or {}).items():
                    stage_s[k] = stage_s.get(k, 0.0) + float(v)
                st.task_s += float((result.timings or {}).get("total_s", 0.0))
                if what == "observation":
                    self._observation_done(result, st)
                else:
                    self._product_done(result, st)
                if st.pending == 0:
                    self._finish(st)
            self._flush(force=not self.pending)

    def write_summary(self) -> None:
        """Commit the rows left, close an own executor, log the run and consolidate."""
        summary, store = self.summary, self.store
        t_fin = time.perf_counter()
        try:
            self._flush()  # rows of complete groups gathered before an interruption
        except Exception:  # noqa: BLE001 - never mask the original error
            logger.exception("could not commit the last rows; the next run redoes them")
        if self.own_executor:
            self.executor.close()
        summary.finished = utcnow()
        complete = all(s.pending == 0 for s in self.states.values())
        try:
            store.record_run({
                "run_id": self.run_id, "name": self.config.name, "started": summary.started,
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
        summary.wall_s = time.perf_counter() - self.t_wall

    def log_failed_setup(self, exc: BaseException) -> None:
        """Log the run as failed when selection, models or the executor failed."""
        store = self.store
        try:
            store.record_run({"run_id": self.run_id, "name": self.config.name,
                              "started": self.summary.started, "finished": utcnow(),
                              "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                              "software_version": __version__})
            store.consolidate()
        except OSError:
            logger.exception("could not log the failed run in %s", store.url)

    # -- helpers of the steps -----------------------------------------------------------

    def _store_args(self) -> dict[str, Any]:
        return {"store_url": self.store.url,
                "storage_options": self.config.storage_options or None}

    def _flush(self, *, force: bool = True) -> None:
        """Commit the rows gathered since the last flush, all together."""
        now = time.perf_counter()
        if not force and now - self.last_commit < self.config.commit_interval_s:
            return
        if any(self.batch.values()):
            if self.lease is not None:
                self.lease.check()
            self.store.commit(self.batch, run_id=self.run_id)
            seconds = self.summary.driver_seconds
            seconds["commit_s"] = seconds.get("commit_s", 0.0) + time.perf_counter() - now
            self.last_commit = time.perf_counter()
        self.batch.clear()

    def _report(self, msg: str = "") -> None:
        self.state.message = msg
        if self.progress is not None:
            self.progress(self.state)

    def _finish(self, st: _ObsState) -> None:
        """An observation is done: its ``runs`` row, the summary and the counters."""
        if st.failures and st.status == "ok":
            st.status, st.stage = "failed", "enhance"
            st.reason = f"{len(st.failures)} product(s) failed: {st.failures[0]}"
        row = catalog_row(
            "runs",
            run_id=self.run_id,
            obsid=st.obsid,
            status=st.status,
            stage=st.stage or "store",
            reason=st.reason,
            n_slices=st.n_slices,
            n_products=st.n_products,
            started=st.started,
            finished=utcnow(),
            duration=st.task_s,
            software_version=__version__,
        )
        self.batch.setdefault("runs", []).append(row)
        self.summary.outcomes.append(
            {"obsid": st.obsid, "status": st.status, "stage": row["stage"], "reason": st.reason}
        )
        self.state.observations_done += 1
        if st.status == "failed":
            self.state.failures += 1
        elif st.status == "skipped":
            self.state.skipped += 1
        self._report(f"{st.obsid} {st.status}")

    def _product_jobs(self, obsid: str, slices: list[tuple[str, int]]) -> list[ProductJob]:
        """The (slice, weights, clamp) products of these slices not in the store yet."""
        lengths = self.config.enhance.slice_lengths_ks
        return [(sid, m, m.clamp) for sid, length in slices if _lengths_match(length, lengths)
                for m in self.models  # one per (weights, clamp) pair
                if (obsid, sid, m.name, m.clamp) not in self.product_keys]

    def _submit_products(self, st: _ObsState, jobs: list[ProductJob]) -> None:
        enh = self.config.enhance
        for sid, m, clamp in jobs:
            fut = self.executor.submit(
                product_task, st.obsid, sid, kind="inference",
                model_ref=m.ref, model_sha256=m.sha256, clamp=clamp, stretch=enh.stretch,
                device=enh.device, torch_threads=enh.torch_threads,
                allow_clamp_mismatch=m.clamp_mismatch,
                uncertainty_samples=enh.uncertainty_samples if enh.uncertainty else 0,
                **self._store_args(),
            )
            self.pending[fut] = ("product", st.obsid)
            st.pending += 1
            self.state.products_total += 1

    def _observation_done(self, result: ObservationOutcome, st: _ObsState) -> None:
        """Gather an observation's rows (all together) and submit its products."""
        jobs: list[ProductJob] = []
        if result.status == "ok":
            slices = [(r["slice_id"], int(r["length_ks"])) for r in result.slices]
            jobs = self._product_jobs(st.obsid, slices)
            if not jobs and not result.reason:
                # an ok observation without products says why (both catalogs)
                result.reason = no_products_reason(
                    result.observation, slices, self.config.enhance.slice_lengths_ks,
                    self.models)
                result.observation["reason"] = result.reason
        st.status, st.stage, st.reason = result.status, result.stage, result.reason
        if result.status == "failed":
            logger.warning("observation %s failed in %s: %s", result.obsid, result.stage,
                           result.reason)
        else:
            # Slice rows and the observation row are published together, after the task
            # marked the observation group complete.
            self.batch.setdefault("slices", []).extend(result.slices)
            self.batch.setdefault("observations", []).append(result.observation)
            self.batch.setdefault("sources", []).extend(getattr(result, "sources", []))
            st.n_slices = len(result.slices)
            self.summary.n_slices += len(result.slices)
            self.state.slices_done += len(result.slices)
        self._submit_products(st, jobs)

    def _product_done(self, result: ProductOutcome, st: _ObsState) -> None:
        """Gather a product's rows, or note its failure."""
        if result.status == "ok":
            self.batch.setdefault("products", []).append(result.product)
            self.batch.setdefault("sources", []).extend(result.sources)
            st.n_products += 1
            self.summary.n_products += 1
        else:
            st.failures.append(result.reason)
            self.summary.n_products_failed += 1
            logger.warning("product %s/%s %s %s failed: %s", st.obsid, result.slice_id,
                           result.model, result.clamp, result.reason)
        self.state.products_done += 1
        self._report()


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
