"""``xsa-enhance run``: the batch pipeline from the command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from xsa_enhance.cli.common import CONE_HELP, UserError, cone_degrees

__all__ = ["run_cmd", "ProgressPrinter", "build_config"]

logger = logging.getLogger(__name__)


class ProgressPrinter:
    """Progress of a run: a live tqdm bar on a terminal, otherwise a line per observation."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._last_done = -1

    def __call__(self, state: Any) -> None:  # noqa: D102 - callback
        if not self.enabled:
            return
        # The count that does not move is the observations': products are only known once
        # their observation is processed, so their total is shown as a lower bound ("8+")
        # until every observation is done.
        total = state.observations_total
        done = state.observations_done
        more = "+" if state.observations_done < state.observations_total else ""
        postfix = (
            f"slices {state.slices_done} products {state.products_done}/"
            f"{state.products_total}{more} skipped {state.skipped} failed {state.failures}"
        )
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc="observations", file=sys.stderr,
                                 unit="obs", dynamic_ncols=True)
            self._bar.n = done
            self._bar.set_postfix_str(postfix, refresh=True)
        elif state.observations_done != self._last_done and state.message:
            click.echo(f"[obs {done}/{total}] {state.message}; {postfix}", err=True)
        self._last_done = state.observations_done

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def build_config(
    *,
    pipeline: Path | None,
    overrides: dict[str, Any],
) -> Any:
    """A :class:`~xsa_enhance.pipeline.PipelineConfig` from a file plus command-line values."""
    from xsa_enhance.pipeline import PipelineConfig, load_pipeline

    cfg = load_pipeline(pipeline) if pipeline is not None else PipelineConfig()
    return cfg.with_overrides(**overrides)


def quiet_dask_logs() -> None:
    """Keep Dask's own INFO chatter (scheduler, nanny, worker start/stop) out of ``-v``.

    ``-vv`` (DEBUG) shows it again.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                     "distributed.core", "distributed.http.proxy", "distributed.worker"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _print_dashboard(executor: Any) -> None:
    link = getattr(executor, "dashboard_link", None)
    if link:
        click.echo(f"Dask dashboard: {link}", err=True)
    n = getattr(executor, "n_workers", None)
    if n:
        click.echo(f"Dask workers: {n}", err=True)


@click.command("run")
@click.option("--pipeline", "pipeline", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Pipeline file (pipelines/*.yaml); options below override it.")
@click.option("--store", default=None, help="Product store: a path or an fsspec URL.")
@click.option("--tap-url", default=None, help="TAP service (default: the real XSA).")
@click.option("--aio-url", default=None, help="AIO download URL (default: the real XSA).")
@click.option("--credentials", "credentials_file", default=None,
              help="ini file with an [xmm_newton] section for proprietary data.")
@click.option("--obsid", "obsids", multiple=True, help="Observation id (repeatable).")
@click.option("--min-duration", type=click.FloatRange(0), default=None,
              help="Shortest pn exposure to select, ks [20].")
@click.option("--cone", type=(str, str, str), default=None, metavar="RA DEC RADIUS",
              help=CONE_HELP)
@click.option("--since", default=None,
              help="Only PPS processed since this UTC date, or 'last-successful-run'.")
@click.option("--max-observations", type=click.IntRange(1), default=None,
              help="Process at most this many observations.")
@click.option("--model", "models", multiple=True,
              help="Model alias (the newest weights trained for each --clamp mode), NAME-vN "
                   "or weight file (repeatable) [xmm-superres, xmm-denoise].")
@click.option("--clamp", "clamps", multiple=True,
              help="Clamp mode: constant, quantile[:q], none (repeatable) [constant].")
@click.option("--allow-clamp-mismatch", is_flag=True,
              help="Run NAME-vN / weight files with clamp modes they were not trained for "
                   "(recorded in the products' clamp_mismatch).")
@click.option("--slice-length", "slice_lengths", multiple=True, type=click.FloatRange(min=0, min_open=True),
              help="Slice exposure (ks) to enhance (repeatable) [20].")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Workers of the embedded LocalCluster [one per core].")
@click.option("--scheduler-address", default=None, help="Join this Dask scheduler.")
@click.option("--scheduler-file", default=None, type=click.Path(dir_okay=False),
              help="Join the Dask scheduler described by this file.")
@click.option("--jobqueue", type=click.Choice(["slurm", "pbs"]), default=None,
              help="Start an adaptive dask-jobqueue cluster from deploy/jobqueue/.")
@click.option("--jobqueue-profile", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Worker profile of the jobqueue cluster [cpu].")
@click.option("--in-process", "in_process", is_flag=True,
              help="No Dask: run every task in this process (debugging).")
@click.option("--work-dir", default=None, help="Parent of the per-task temporary folders.")
@click.option("--force", is_flag=True, help="Redo observations already in the store.")
@click.option("--wait-for-lock", "wait_for_lock", type=click.FloatRange(min=0), default=None,
              is_flag=False, flag_value=float("inf"), metavar="[SECONDS]",
              help="When another run is writing the store, wait for it (SECONDS at most; "
                   "without a value: as long as it takes) instead of stopping at once.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the run summary as JSON.")
@click.option("--strict", is_flag=True, help="Exit with status 1 when an observation failed.")
def run_cmd(
    pipeline: Path | None,
    store: str | None,
    tap_url: str | None,
    aio_url: str | None,
    credentials_file: str | None,
    obsids: tuple[str, ...],
    min_duration: float | None,
    cone: tuple[str, str, str] | None,
    since: str | None,
    max_observations: int | None,
    models: tuple[str, ...],
    clamps: tuple[str, ...],
    allow_clamp_mismatch: bool | None,
    slice_lengths: tuple[float, ...],
    workers: int | None,
    scheduler_address: str | None,
    scheduler_file: str | None,
    jobqueue: str | None,
    jobqueue_profile: str | None,
    in_process: bool,
    work_dir: str | None,
    force: bool,
    wait_for_lock: float | None,
    summary_json: Path | None,
    strict: bool,
) -> None:
    """Harvest, screen, slice, bin and enhance observations into a Zarr product store.

    Observations already in the store are skipped (only missing products are made); a run
    that was killed resumes where it stopped. Failed observations are recorded in the
    store's runs catalog with the reason and do not stop the batch.

    One run writes a store at a time (a writer lease in the store folder): a second run
    stops with a line naming the run that holds it, or waits with --wait-for-lock.
    """
    from xsa_enhance.pipeline import run_pipeline

    chosen = [bool(scheduler_address), bool(scheduler_file), bool(jobqueue), in_process]
    if sum(chosen) > 1:
        raise UserError(
            "choose one of --scheduler-address, --scheduler-file, --jobqueue and --in-process"
        )
    if workers is not None and any(chosen):
        raise UserError("--workers sizes the embedded LocalCluster only")
    if pipeline is None and store is None:
        raise UserError("give --store PATH (or a --pipeline file that names the store)")
    executor: dict[str, Any] = {}
    if scheduler_address:
        executor = {"kind": "address", "scheduler_address": scheduler_address}
    elif scheduler_file:
        executor = {"kind": "scheduler-file", "scheduler_file": scheduler_file}
    elif jobqueue:
        executor = {"kind": "jobqueue", "jobqueue_system": jobqueue,
                    "jobqueue_profile": jobqueue_profile}
    elif in_process:
        executor = {"kind": "inprocess"}
    elif workers is not None:
        executor = {"kind": "local", "workers": workers}
    overrides: dict[str, Any] = {
        "store": store,
        "work_dir": work_dir,
        "force": True if force else None,
        "archive": {"tap_url": tap_url, "aio_url": aio_url, "credentials_file": credentials_file},
        "selection": {
            "obsids": tuple(obsids) or None,
            "min_duration_ks": min_duration,
            "cone": cone_degrees(cone),
            "since": since,
            "max_observations": max_observations,
        },
        "enhance": {
            "models": tuple(models) or None,
            "clamps": tuple(clamps) or None,
            "allow_clamp_mismatch": True if allow_clamp_mismatch else None,
            "slice_lengths_ks": tuple(slice_lengths) or None,
        },
        "executor": executor or None,
    }
    config = build_config(pipeline=pipeline, overrides=overrides)
    # validate the merged configuration like a file
    from xsa_enhance.pipeline import PipelineConfig

    config = PipelineConfig.from_dict(config.to_dict(), source="command line")
    quiet_dask_logs()
    printer = ProgressPrinter()
    try:
        wait_s = (0.0 if wait_for_lock is None
              else None if wait_for_lock == float("inf") else wait_for_lock)
        summary = run_pipeline(config, progress=printer, on_executor=_print_dashboard,
                               wait_for_lock_s=wait_s)
    finally:
        printer.close()
    click.echo(summary.format())
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary_to_dict(summary), indent=1) + "\n")
    if strict and summary.count("failed"):
        raise SystemExit(1)


def summary_to_dict(summary: Any) -> dict[str, Any]:
    """A JSON-ready mapping of a :class:`~xsa_enhance.pipeline.RunSummary`."""
    from dataclasses import asdict

    return asdict(summary)
