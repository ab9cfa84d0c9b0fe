"""Executors: where pipeline tasks run.

The driver (:func:`xsa_enhance.pipeline.run.run_pipeline`) only needs ``submit`` and
``wait_any``; the stages and tasks know nothing of Dask.

- :class:`InProcessExecutor` runs each task when it is submitted, in the calling process
  (tests, debugging, profiling).
- :class:`DaskExecutor` runs them on a Dask distributed cluster: an embedded
  ``LocalCluster`` sized to the machine, an existing scheduler (address or scheduler file),
  or a dask-jobqueue cluster built from ``deploy/``. Inference tasks ask for the ``GPU``
  resource when the cluster has GPU workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from xsa_enhance.errors import ConfigError

__all__ = [
    "Executor",
    "InProcessExecutor",
    "DaskExecutor",
    "make_executor",
    "default_worker_count",
]

logger = logging.getLogger(__name__)


class Executor(Protocol):
    """What the driver needs from an executor."""

    #: Link to a dashboard, when there is one.
    dashboard_link: str | None
    #: Whether inference tasks should ask for the ``GPU`` resource.
    use_gpu_resources: bool

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, kind: str = "io", key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submit ``fn(*args, **kwargs)``; ``kind`` is ``"io"`` or ``"inference"``."""

    def wait_any(self, futures: Iterable[Any]) -> tuple[set[Any], set[Any]]:
        """Block until at least one future is done; return (done, not_done)."""

    def result(self, future: Any) -> Any:
        """The result of a done future (raises the task's exception)."""

    def close(self) -> None:
        """Release the resources (clusters it started)."""


def default_worker_count() -> int:
    """Worker processes for an embedded LocalCluster: the usable CPU cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class InProcessExecutor:
    """Run every task immediately in the calling process."""

    dashboard_link: str | None = None
    use_gpu_resources: bool = False

    def __init__(self) -> None:
        self.n_tasks = 0

    def __enter__(self) -> "InProcessExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, kind: str = "io", key: str | None = None,
        **kwargs: Any,
    ) -> cf.Future:
        """Run ``fn`` now; return a completed :class:`concurrent.futures.Future`."""
        fut: cf.Future = cf.Future()
        self.n_tasks += 1
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the driver like Dask does
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            fut.set_exception(exc)
        return fut

    def wait_any(self, futures: Iterable[cf.Future]) -> tuple[set[cf.Future], set[cf.Future]]:
        """Every submitted future is already done."""
        futures = set(futures)
        done = {f for f in futures if f.done()}
        return done, futures - done

    def result(self, future: cf.Future) -> Any:
        """The task's result (or its exception)."""
        return future.result()

    def close(self) -> None:
        """Nothing to release."""


class DaskExecutor:
    """Run tasks on a Dask distributed cluster.

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    cluster : object, optional
        A cluster this executor started and closes at :meth:`close`.
    gpu : {"auto", "yes", "no"}
        Whether inference tasks ask for ``resources={"GPU": 1}``: when a worker offers it
        (auto), always, or never.
    retries : int
        Retries of a task whose worker died (tasks are idempotent).
    """

    def __init__(
        self, client: Any, *, cluster: Any = None, gpu: str = "auto", retries: int = 1
    ) -> None:
        if gpu not in ("auto", "yes", "no"):
            raise ConfigError(f"executor.gpu must be auto, yes or no, got {gpu!r}")
        self.client = client
        self.cluster = cluster
        self.retries = int(retries)
        self._gpu_mode = gpu

    # ------------------------------------------------------------------ constructors
    @classmethod
    def local(
        cls,
        *,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        memory_limit: str = "auto",
        gpu: str = "auto",
        retries: int = 1,
        dashboard_address: str | None = ":0",
    ) -> "DaskExecutor":
        """Start an embedded ``LocalCluster`` (worker processes) sized to the machine.

        Parameters
        ----------
        n_workers : int, optional
            Worker processes (default :func:`default_worker_count`).
        threads_per_worker : int
            Threads per worker (1: the stages are CPU-bound Python/numpy).
        memory_limit : str
            Memory per worker (``"auto"``: system memory / workers); Dask pauses and then
            restarts a worker that goes over it, which bounds the memory of every task.
        gpu, retries
            As for the constructor.
        dashboard_address : str, optional
            Where the dashboard listens (``":0"``: a free port; ``None``: no dashboard).
        """
        from distributed import Client, LocalCluster

        n = int(n_workers) if n_workers else default_worker_count()
        kwargs: dict[str, Any] = {}
        if dashboard_address is None:
            kwargs["dashboard_address"] = None
        else:
            kwargs["dashboard_address"] = dashboard_address
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=int(threads_per_worker),
            processes=True,
            memory_limit=memory_limit,
            silence_logs=logging.WARNING,
            **kwargs,
        )
        client = Client(cluster)
        logger.info("started LocalCluster with %d workers x %d threads", n, threads_per_worker)
        return cls(client, cluster=cluster, gpu=gpu, retries=retries)

    @classmethod
    def connect(
        cls,
        *,
        address: str | None = None,
        scheduler_file: str | None = None,
        gpu: str = "auto",
        retries: int = 1,
        timeout_s: float = 30.0,
    ) -> "DaskExecutor":
        """Join an existing cluster by scheduler address or scheduler file."""
        from distributed import Client

        if (address is None) == (scheduler_file is None):
            raise ConfigError("give exactly one of a scheduler address and a scheduler file")
        if scheduler_file is not None and not os.path.isfile(scheduler_file):
            raise ConfigError(f"{scheduler_file}: scheduler file not found")
        try:
            if address is not None:
                client = Client(address, timeout=timeout_s)
            else:
                client = Client(scheduler_file=scheduler_file, timeout=timeout_s)
        except OSError as exc:
            target = address or scheduler_file
            raise ConfigError(f"cannot reach the Dask scheduler {target}: {exc}") from exc
        return cls(client, gpu=gpu, retries=retries)

    @classmethod
    def jobqueue(
        cls,
        *,
        system: str = "slurm",
        profile: str = "cpu",
        minimum: int = 0,
        maximum: int = 10,
        gpu: str = "auto",
        retries: int = 1,
    ) -> "DaskExecutor":
        """Start a dask-jobqueue cluster from the ``deploy/`` profile, scaling adaptively."""
        from distributed import Client

        from xsa_enhance.config import make_jobqueue_cluster

        cluster = make_jobqueue_cluster(system, profile)
        cluster.adapt(minimum_jobs=int(minimum), maximum_jobs=int(maximum))
        client = Client(cluster)
        return cls(client, cluster=cluster, gpu=gpu, retries=retries)

    # ------------------------------------------------------------------ properties
    @property
    def dashboard_link(self) -> str | None:  # type: ignore[override]
        """The dashboard of the cluster (``None`` when it has none)."""
        try:
            return self.client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard (e.g. bokeh missing)
            return None

    @property
    def n_workers(self) -> int:
        """Workers currently connected."""
        return len(self.client.scheduler_info().get("workers", {}))

    @property
    def use_gpu_resources(self) -> bool:  # type: ignore[override]
        """Whether inference tasks ask for the ``GPU`` resource."""
        if self._gpu_mode == "yes":
            return True
        if self._gpu_mode == "no":
            return False
        workers = self.client.scheduler_info().get("workers", {})
        return any("GPU" in (w.get("resources") or {}) for w in workers.values())

    # ------------------------------------------------------------------ API
    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, kind: str = "io", key: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submit a task; inference tasks go to ``GPU`` workers when there are any."""
        opts: dict[str, Any] = {"pure": False, "retries": self.retries}
        if key is not None:
            opts["key"] = key
        if kind == "inference" and self.use_gpu_resources:
            opts["resources"] = {"GPU": 1}
        return self.client.submit(fn, *args, **opts, **kwargs)

    def wait_any(self, futures: Iterable[Any]) -> tuple[set[Any], set[Any]]:
        """Block until at least one future finishes."""
        from distributed import wait

        futures = list(futures)
        if not futures:
            return set(), set()
        res = wait(futures, return_when="FIRST_COMPLETED")
        return set(res.done), set(res.not_done)

    def result(self, future: Any) -> Any:
        """The task's result (or its exception); the future is released afterwards.

        Releasing at once matters: a result the client still references is *recomputed* by
        the scheduler when the worker holding it dies, so a finished observation task would
        run again (rewriting its slices) while its product tasks read them.
        """
        try:
            return future.result()
        finally:
            future.release()

    def close(self) -> None:
        """Close the client, and the cluster when this executor started it."""
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def make_executor(settings: Any, *, n_tasks: int | None = None) -> InProcessExecutor | DaskExecutor:
    """Build the executor an :class:`~xsa_enhance.pipeline.config.ExecutorSettings` asks for.

    Parameters
    ----------
    settings : ExecutorSettings
        The executor section of the pipeline config.
    n_tasks : int, optional
        Number of observations to process; an embedded cluster gets no more workers.

    Returns
    -------
    InProcessExecutor or DaskExecutor
    """
    kind = settings.kind
    if kind == "inprocess":
        return InProcessExecutor()
    if kind == "local":
        n = settings.workers or default_worker_count()
        if n_tasks is not None and not settings.workers:
            n = max(1, min(n, n_tasks))
        return DaskExecutor.local(
            n_workers=n,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            gpu=settings.gpu,
            retries=settings.task_retries,
        )
    if kind == "address":
        return DaskExecutor.connect(
            address=settings.scheduler_address, gpu=settings.gpu, retries=settings.task_retries
        )
    if kind == "scheduler-file":
        return DaskExecutor.connect(
            scheduler_file=settings.scheduler_file, gpu=settings.gpu,
            retries=settings.task_retries,
        )
    if kind == "jobqueue":
        return DaskExecutor.jobqueue(
            system=settings.jobqueue_system,
            profile=settings.jobqueue_profile,
            minimum=settings.jobqueue_min,
            maximum=settings.jobqueue_max,
            gpu=settings.gpu,
            retries=settings.task_retries,
        )
    raise ConfigError(f"unknown executor kind {kind!r}")
