"""``xsa-enhance deploy``: helpers for running on HPC batch systems."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import click

from xsa_enhance.config.jobqueue import JOBQUEUE_PROFILES, JOBQUEUE_SYSTEMS, make_jobqueue_cluster

__all__ = ["deploy"]


@click.group("deploy")
def deploy() -> None:
    """Deployment helpers (dask-jobqueue profiles in deploy/jobqueue/)."""


@deploy.command("job-script")
@click.option(
    "--system", type=click.Choice(JOBQUEUE_SYSTEMS), required=True, help="Batch system."
)
@click.option(
    "--profile",
    type=click.Choice(JOBQUEUE_PROFILES),
    default="cpu",
    show_default=True,
    help="Worker profile.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="jobqueue YAML to use instead of deploy/jobqueue/<system>.yaml.",
)
@click.option("--queue", default=None, help="Partition/queue (overrides the file).")
@click.option("--account", default=None, help="Account/project (overrides the file).")
def job_script(
    system: str, profile: str, config_file: Path | None, queue: str | None, account: str | None
) -> None:
    """Print the batch script dask-jobqueue would submit for one worker job.

    The scheduler address in it is that of a throw-away local scheduler; the real one is filled
    in when the pipeline starts the cluster.
    """
    # distributed installs its own INFO handler on import; keep the preview quiet unless -v.
    import distributed  # noqa: F401

    logging.getLogger("distributed").setLevel(max(logging.getLogger().level, logging.WARNING))
    overrides: dict[str, object] = {"scheduler_options": {"dashboard_address": ":0"}}
    if queue is not None:
        overrides["queue"] = queue
    if account is not None:
        overrides["account"] = account
    # dask-jobqueue creates the (relative) log directory where the cluster is made: build the
    # preview in a throw-away folder so that nothing appears in the current one
    if config_file is not None:
        config_file = config_file.resolve()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="xsa-job-script-") as tmp:
        os.chdir(tmp)
        try:
            with make_jobqueue_cluster(system, profile, path=config_file, **overrides) as cluster:
                script = cluster.job_script()
        finally:
            os.chdir(cwd)
    click.echo(script)
