"""Pipeline configuration: what to process, how, where to, and on which executor.

A pipeline file (``pipelines/*.yaml``) is validated against ``schemas/pipeline.schema.json``
and turned into a :class:`PipelineConfig`. Command-line options override its fields.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from xsa_enhance.archive.config import ArchiveConfig
from xsa_enhance.errors import ConfigError, XsaError

__all__ = [
    "SelectionSettings",
    "EnhanceSettings",
    "ExecutorSettings",
    "PipelineConfig",
    "load_pipeline",
    "check_clamp_matching",
    "LAST_SUCCESSFUL_RUN",
]

logger = logging.getLogger(__name__)

#: Value of ``selection.since`` meaning "the start of the last run that finished".
LAST_SUCCESSFUL_RUN = "last-successful-run"


@dataclass(frozen=True)
class SelectionSettings:
    """Which observations to process.

    Parameters
    ----------
    obsids : list of str
        Explicit observations (the TAP query is then only used to describe them).
    min_duration_ks : float
        Shortest pn exposure to select.
    cone : (ra, dec, radius_deg), optional
        Pointing within this cone (ICRS degrees).
    since : str, optional
        Only observations processed by the PPS since this date; ``"last-successful-run"``
        reads the start of the last finished run from the store.
    max_observations : int, optional
        Cap on the number of selected observations.
    """

    obsids: tuple[str, ...] = ()
    min_duration_ks: float = 20.0
    cone: tuple[float, float, float] | None = None
    since: str | None = None
    max_observations: int | None = None


@dataclass(frozen=True)
class EnhanceSettings:
    """Which enhanced products to make.

    Parameters
    ----------
    models : list of str
        Registry aliases (``xmm-superres``: for each clamp, the newest weights trained for
        that clamp mode), explicit versions (``xmm-superres-v5``) or weight file paths.
    clamps : list of str
        Clamp modes (``constant``, ``quantile:0.9999``, ``none``); every model is run with
        every clamp, an alias with the weights matched to it.
    stretch : str, optional
        Override the models' stretch.
    slice_lengths_ks : list of float
        Slice exposures to enhance (the models expect 20 ks inputs).
    device : str, optional
        Torch device for inference (default: CUDA when the worker has one, else CPU).
    torch_threads : int
        Torch CPU threads per inference task.
    require_models : bool
        Fail the run when a model is not installed (otherwise: warn and write the
        un-enhanced products only). An unknown name, or an alias without weights for one of
        the clamp modes, always stops the run.
    allow_clamp_mismatch : bool
        Run explicit versions or weight files with clamp modes they were not trained for
        (refused otherwise; the products record ``clamp_mismatch``).
    uncertainty : bool
        Store a per-pixel 1-sigma ``uncertainty`` array next to every product
        (:func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`) and its summary
        columns in the products catalog; ``False`` opts out.
    uncertainty_samples : int
        Resamples of the input per product (>= 2). A product then costs about
        ``uncertainty_samples + 1`` enhancements (5x with the default 4).
    """

    models: tuple[str, ...] = ("xmm-superres", "xmm-denoise")
    clamps: tuple[str, ...] = ("constant",)
    stretch: str | None = None
    slice_lengths_ks: tuple[float, ...] = (20.0,)
    device: str | None = None
    torch_threads: int = 1
    require_models: bool = False
    allow_clamp_mismatch: bool = False
    uncertainty: bool = True
    uncertainty_samples: int = 4


@dataclass(frozen=True)
class ExecutorSettings:
    """Where the tasks run.

    Parameters
    ----------
    kind : {"local", "inprocess", "address", "scheduler-file", "jobqueue"}
        Embedded Dask LocalCluster (default), no Dask at all, an existing scheduler by
        address or scheduler file, or a dask-jobqueue cluster from ``deploy/``.
    workers : int, optional
        LocalCluster workers (default: one per core, at most the number of tasks).
    threads_per_worker : int
        Threads per LocalCluster worker.
    memory_limit : str
        Memory per LocalCluster worker (``"auto"``: the machine's share).
    scheduler_address, scheduler_file : str, optional
        The existing cluster to join.
    jobqueue_system : {"slurm", "pbs"}
        Batch system of a jobqueue cluster.
    jobqueue_profile : {"cpu", "gpu"}
        Worker profile of a jobqueue cluster.
    jobqueue_min, jobqueue_max : int
        Adaptive scaling bounds (jobs) of a jobqueue cluster.
    gpu : {"auto", "yes", "no"}
        Send inference tasks to workers with the ``GPU`` resource: when any worker has it
        (auto), always, or never.
    task_retries : int
        Retries of a task whose worker died.
    """

    kind: str = "local"
    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    jobqueue_system: str = "slurm"
    jobqueue_profile: str = "cpu"
    jobqueue_min: int = 0
    jobqueue_max: int = 10
    gpu: str = "auto"
    task_retries: int = 1


@dataclass(frozen=True)
class PipelineConfig:
    """A whole pipeline run.

    Parameters
    ----------
    name : str
        Name shown in logs and the runs log.
    store : str
        Product store (local path or fsspec URL).
    storage_options : dict
        fsspec options of the store.
    archive : xsa_enhance.archive.ArchiveConfig
        Where the archive is and how to harvest from it (the file's ``archive`` section,
        read by :meth:`~xsa_enhance.archive.ArchiveConfig.from_section`).
    selection, enhance, executor
        The sections above.
    events : dict
        Options of :class:`xsa_enhance.events.EventsConfig`.
    work_dir : str, optional
        Parent of the per-task temporary folders (default: each worker's temp folder).
    keep_downloads : bool
        Keep the harvested PPS files in ``<work_dir>/downloads/<obsid>/`` and reuse them in
        later runs, instead of deleting them after each task.
    force : bool
        Redo observations already in the store.
    commit_interval_s : float
        The driver gathers catalog rows and commits them at most this often (0: after every
        round of finished tasks). Larger batches cost less; rows not yet committed when a run
        is killed belong to complete groups that the next run removes and redoes.
    """

    name: str = "pipeline"
    store: str = "xsa-store.zarr"
    storage_options: dict[str, Any] = field(default_factory=dict)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    events: dict[str, Any] = field(default_factory=dict)
    enhance: EnhanceSettings = field(default_factory=EnhanceSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    work_dir: str | None = None
    keep_downloads: bool = False
    force: bool = False
    commit_interval_s: float = 2.0

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (the shape of the YAML file, ``kind: pipeline`` included)."""
        out = asdict(self)
        out["kind"] = "pipeline"
        out["archive"] = self.archive.to_section()
        sel = out["selection"]
        sel["obsids"] = list(sel["obsids"])
        sel["cone"] = list(sel["cone"]) if sel["cone"] is not None else None
        for key in ("models", "clamps", "slice_lengths_ks"):
            out["enhance"][key] = list(out["enhance"][key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> "PipelineConfig":
        """Validate a mapping against the pipeline schema and build the config.

        Parameters
        ----------
        data : mapping
            The document (as read from YAML).
        source : str, optional
            File name for error messages.

        Raises
        ------
        ConfigError
            Listing every schema violation.
        """
        from xsa_enhance.config import validate_data

        doc = copy.deepcopy(dict(data))
        issues = validate_data(doc, schema="pipeline", source=source)
        if issues:
            where = source or "pipeline config"
            text = "; ".join(f"{i.location}: {i.message}" for i in issues)
            raise ConfigError(f"{where}: {text}")
        doc.pop("kind", None)
        doc.pop("description", None)
        sections = {
            "selection": SelectionSettings,
            "enhance": EnhanceSettings,
            "executor": ExecutorSettings,
        }
        kwargs: dict[str, Any] = {}
        for key, value in doc.items():
            if key == "archive":
                kwargs[key] = ArchiveConfig.from_section(value)
            elif key in sections:
                sub = dict(value or {})
                for k, v in list(sub.items()):
                    if isinstance(v, list):
                        sub[k] = tuple(str(x) if k == "obsids" else x for x in v)
                kwargs[key] = sections[key](**sub)
            else:
                kwargs[key] = value
        cfg = cls(**kwargs)
        check_clamp_matching(cfg.enhance, source=source)
        if cfg.events:
            from xsa_enhance.events import EventsConfig

            try:
                EventsConfig.from_dict(cfg.events)  # raises ConfigError early
            except ConfigError as exc:
                text = " ".join(str(exc).split())
                raise ConfigError(f"{source or 'pipeline config'}: $.events: {text}") from None
        return cfg

    def with_overrides(self, **sections: Mapping[str, Any]) -> "PipelineConfig":
        """A copy with fields of sections (or top-level fields) replaced.

        ``with_overrides(selection={"obsids": ("0123",)}, store="x.zarr")``; ``None`` values
        are ignored.
        """
        cfg = self
        top: dict[str, Any] = {}
        for key, value in sections.items():
            if value is None:
                continue
            current = getattr(cfg, key)
            if isinstance(value, Mapping) and hasattr(current, "__dataclass_fields__"):
                changes = {k: v for k, v in value.items() if v is not None}
                cfg = replace(cfg, **{key: replace(current, **changes)})
            else:
                top[key] = value
        if top:
            cfg = replace(cfg, **top)
        return cfg


def check_clamp_matching(enhance: EnhanceSettings, *, source: str | None = None,
                         registry_dir: str | os.PathLike[str] | None = None) -> None:
    """Refuse explicit registry versions paired with clamps of another family.

    Aliases are matched to each clamp when the run starts, and weight files are checked
    then too (their mode is inside the file); here only ``NAME-vN`` entries of the
    registry are checked, without loading any weights.

    Parameters
    ----------
    enhance : EnhanceSettings
        The ``enhance`` section.
    source : str, optional
        File name for the message.
    registry_dir : path-like, optional
        Weights directory (default: the registry's default).

    Raises
    ------
    ConfigError
        One line naming the model, the modes and how to fix it, unless
        ``enhance.allow_clamp_mismatch``.
    """
    if enhance.allow_clamp_mismatch or not enhance.models:
        return
    from xsa_enhance.models.registry import clamp_family, is_model_path, list_models

    try:
        entries = {e.id: e for e in list_models(registry_dir=registry_dir)}
    except XsaError:  # a corrupt registry is reported when the models are resolved
        return
    where = source or "pipeline config"
    for i, name in enumerate(enhance.models):
        entry = entries.get(str(name))
        if entry is None or is_model_path(str(name)):
            continue
        for j, clamp in enumerate(enhance.clamps):
            try:
                family = clamp_family(clamp)
            except ConfigError:
                continue  # the schema reports it
            if family != entry.clamp_family:
                raise ConfigError(
                    f"{where}: $.enhance.models[{i}]: {entry.id} was trained for clamp mode "
                    f"{entry.clamp_family!r}, not {family!r} (enhance.clamps[{j}] {clamp}); "
                    f"use the alias {entry.name} to get matched weights, or set "
                    "enhance.allow_clamp_mismatch: true"
                )


def load_pipeline(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read and validate a pipeline file (YAML or JSON).

    Parameters
    ----------
    path : str or os.PathLike
        The file, e.g. ``pipelines/demo.yaml``.

    Returns
    -------
    PipelineConfig

    Raises
    ------
    ConfigError, InputFileError
        Unreadable file or schema violations (all of them, with locations).
    """
    from xsa_enhance.config import load_validated

    data = load_validated(Path(path), schema="pipeline")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a pipeline file must be a mapping")
    return PipelineConfig.from_dict(data, source=str(path))
