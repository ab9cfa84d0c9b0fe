"""The dask-jobqueue worker profiles shipped in ``deploy/jobqueue/``.

``deploy/jobqueue/slurm.yaml`` and ``deploy/jobqueue/pbs.yaml`` are ordinary Dask
configuration files. Each defines two named dask-jobqueue sections, ``xsa-<system>-cpu`` and
``xsa-<system>-gpu``, that ``SLURMCluster(config_name=...)`` / ``PBSCluster(config_name=...)``
read. The functions here load them into :mod:`dask.config` and build the cluster objects.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from xsa_enhance.errors import ConfigError, InputFileError

__all__ = [
    "JOBQUEUE_SYSTEMS",
    "JOBQUEUE_PROFILES",
    "deploy_dir",
    "jobqueue_config_name",
    "jobqueue_config_path",
    "load_jobqueue_config",
    "make_jobqueue_cluster",
]

logger = logging.getLogger(__name__)

#: Batch systems with a shipped configuration.
JOBQUEUE_SYSTEMS = ("slurm", "pbs")
#: Worker profiles in each configuration.
JOBQUEUE_PROFILES = ("cpu", "gpu")

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENV_VAR = "XSA_ENHANCE_DEPLOY_DIR"


def deploy_dir() -> Path:
    """Return the ``deploy/`` folder.

    ``$XSA_ENHANCE_DEPLOY_DIR`` when set (the container images set it to
    ``/opt/xsa-enhance/deploy``), else the ``deploy/`` folder of the source checkout.

    Raises
    ------
    ConfigError
        If neither exists (an installed package without the checkout: pass the file).
    """
    env = os.environ.get(ENV_VAR)
    candidates = [Path(env)] if env else []
    candidates.append(_PACKAGE_DIR.parent / "deploy")
    for cand in candidates:
        if cand.is_dir():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"no deploy/ folder found (tried {tried}); set {ENV_VAR} or pass the file")


def _check(system: str, profile: str | None = None) -> None:
    if system not in JOBQUEUE_SYSTEMS:
        raise ConfigError(f"unknown batch system {system!r} (known: {', '.join(JOBQUEUE_SYSTEMS)})")
    if profile is not None and profile not in JOBQUEUE_PROFILES:
        raise ConfigError(
            f"unknown worker profile {profile!r} (known: {', '.join(JOBQUEUE_PROFILES)})"
        )


def jobqueue_config_name(system: str, profile: str) -> str:
    """Return the dask-jobqueue section name of a profile (``"xsa-slurm-gpu"``).

    Parameters
    ----------
    system : {"slurm", "pbs"}
        The batch system.
    profile : {"cpu", "gpu"}
        The worker profile.
    """
    _check(system, profile)
    return f"xsa-{system}-{profile}"


def jobqueue_config_path(system: str) -> Path:
    """Return the shipped configuration file of a batch system (``deploy/jobqueue/slurm.yaml``).

    Parameters
    ----------
    system : {"slurm", "pbs"}
        The batch system.
    """
    _check(system)
    return deploy_dir() / "jobqueue" / f"{system}.yaml"


def load_jobqueue_config(
    system: str, *, path: str | os.PathLike[str] | None = None
) -> list[str]:
    """Merge a jobqueue configuration file into :data:`dask.config.config`.

    Parameters
    ----------
    system : {"slurm", "pbs"}
        The batch system the file is for.
    path : str or os.PathLike, optional
        The file; by default the shipped ``deploy/jobqueue/<system>.yaml``.

    Returns
    -------
    list of str
        The ``jobqueue`` section names the file defines.

    Raises
    ------
    InputFileError
        If the file is missing, not YAML, or has no ``jobqueue`` mapping.
    """
    import dask.config

    _check(system)
    file = Path(path) if path is not None else jobqueue_config_path(system)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(file, "no such file") from exc
    except yaml.YAMLError as exc:
        raise InputFileError(file, f"not valid YAML: {exc}") from exc
    sections = (data or {}).get("jobqueue") if isinstance(data, dict) else None
    if not isinstance(sections, dict) or not sections:
        raise InputFileError(file, "has no 'jobqueue:' mapping of named sections")
    dask.config.update(dask.config.config, {"jobqueue": sections}, priority="new")
    logger.debug("loaded jobqueue sections %s from %s", sorted(sections), file)
    return sorted(sections)


def make_jobqueue_cluster(
    system: str,
    profile: str,
    *,
    path: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Any:
    """Build a ``SLURMCluster`` or ``PBSCluster`` from a shipped worker profile.

    No job is submitted until the cluster is scaled (``cluster.adapt(...)`` or
    ``cluster.scale(...)``). Close it when done.

    Parameters
    ----------
    system : {"slurm", "pbs"}
        The batch system.
    profile : {"cpu", "gpu"}
        The worker profile.
    path : str or os.PathLike, optional
        Configuration file instead of the shipped one; it must define the section
        ``xsa-<system>-<profile>``.
    **overrides
        Keyword arguments for the cluster class (``queue="short"``, ``account=...``), which
        take precedence over the file.

    Returns
    -------
    dask_jobqueue.SLURMCluster or dask_jobqueue.PBSCluster
    """
    from dask_jobqueue import PBSCluster, SLURMCluster

    name = jobqueue_config_name(system, profile)
    sections = load_jobqueue_config(system, path=path)
    if name not in sections:
        raise InputFileError(
            path or jobqueue_config_path(system),
            f"has no jobqueue section {name!r} (found: {', '.join(sections)})",
        )
    cls = SLURMCluster if system == "slurm" else PBSCluster
    return cls(config_name=name, **overrides)
