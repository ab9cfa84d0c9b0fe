"""A Dask worker killed mid-task: the task is retried in another process, the store is identical.

The pipeline runs on a two-worker ``LocalCluster`` (worker processes with nannies). The first
attempt of one observation task and of one inference task kills its own worker process with
SIGKILL (a marker file tells first attempts from retries) -- what a node failure or the
kernel's OOM killer does. The scheduler must hand the tasks to a live worker, the run must
finish with every observation in the state an undisturbed run gives, and the store must equal
an in-process run's, array for array.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_reliability_support import (
    check_store_integrity,
    make_tiny_models,
    pipeline_dict,
    run_in_process,
    snapshot,
)
from xsa_enhance.pipeline import DaskExecutor, PipelineConfig, run_pipeline
from xsa_enhance.pipeline.tasks import observation_task, product_task
from xsa_enhance.standin import LocalArchive
from xsa_enhance.standin.products import minimal_products

KINDS = ["normal", "flares"]


def _killer(fn, marker: str):
    """``fn`` wrapped so that its first attempt SIGKILLs the worker process running it."""

    def first_attempt_dies(*args, **kwargs):
        import os as _os
        import signal as _signal

        if not _os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write(str(_os.getpid()))
            _os.kill(_os.getpid(), _signal.SIGKILL)
        with open(marker + ".retry", "w") as fh:
            fh.write(str(_os.getpid()))
        return fn(*args, **kwargs)

    return first_attempt_dies


class KillingExecutor(DaskExecutor):
    """A DaskExecutor whose chosen tasks kill their worker on the first attempt."""

    def __init__(self, *args, victim_obsid: str, marker_dir: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.victim_obsid = victim_obsid
        self.marker_dir = marker_dir
        self.wrapped: list[str] = []

    def submit(self, fn, /, *args, kind="io", key=None, **kwargs):  # noqa: D102
        if fn is observation_task and args[0] == self.victim_obsid and "obs" not in self.wrapped:
            self.wrapped.append("obs")
            fn = _killer(fn, str(self.marker_dir / "obs"))
        elif fn is product_task and "product" not in self.wrapped:
            self.wrapped.append("product")
            fn = _killer(fn, str(self.marker_dir / "product"))
        return super().submit(fn, *args, kind=kind, key=key, **kwargs)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("dask-archive"), kinds=KINDS, seed=41,
                      producer=minimal_products) as la:
        yield la


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("weights"))


def test_worker_killed_mid_task_is_retried_elsewhere_and_store_identical(archive, models, tmp_path):
    from distributed import Client, LocalCluster

    ref = tmp_path / "ref.zarr"
    ref_summary = run_in_process(pipeline_dict(archive, ref, models))
    assert {o["status"] for o in ref_summary.outcomes} == {"ok"}

    url = tmp_path / "dask.zarr"
    markers = tmp_path / "markers"
    markers.mkdir()
    victim = archive.observations[0].obsid
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           memory_limit="2GiB", dashboard_address=None)
    client = Client(cluster)
    try:
        pids_before = set(client.run(os.getpid).values())
        ex = KillingExecutor(client, cluster=cluster, retries=1, victim_obsid=victim,
                             marker_dir=markers)
        cfg = PipelineConfig.from_dict(pipeline_dict(archive, url, models))
        summary = run_pipeline(cfg, executor=ex)
        pids_after = set(client.run(os.getpid).values())
    finally:
        client.close()
        cluster.close()
    assert ex.wrapped == ["obs", "product"]
    for name in ("obs", "product"):
        killed = int((markers / name).read_text())
        retried = int((markers / f"{name}.retry").read_text())
        assert retried != killed, f"the {name} task was not retried in another process"
    assert int((markers / "obs").read_text()) in pids_before  # an original worker died
    # the nanny replaced the dead workers: the dead processes are gone from the cluster
    assert int((markers / "obs").read_text()) not in pids_after
    assert int((markers / "product").read_text()) not in pids_after
    assert sorted((o["obsid"], o["status"], o["reason"]) for o in summary.outcomes) == sorted(
        (o["obsid"], o["status"], o["reason"]) for o in ref_summary.outcomes)
    assert summary.n_products == ref_summary.n_products > 0
    check_store_integrity(url)
    assert snapshot(url) == snapshot(ref)
