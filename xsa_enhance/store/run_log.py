"""The run log of the product store: one record per run in the root attributes.

The driver adds its run's record when it starts (status ``running``) and replaces it when it
ends. A run killed meanwhile leaves ``running`` behind; the next holder of the writer lease
marks it ``interrupted`` (:func:`mark_interrupted_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import zarr

from xsa_enhance.store.layout import jsonable, utcnow

__all__ = ["run_log", "record_run", "mark_interrupted_runs", "last_successful_run"]

logger = logging.getLogger(__name__)


def run_log(root: zarr.Group) -> list[dict[str, Any]]:
    """Run-level records kept in the root attributes (one per run)."""
    return list(root.attrs.get("runs", []))


def record_run(root: zarr.Group, record: Mapping[str, Any]) -> None:
    """Add or replace (by ``run_id``) a run-level record (driver only)."""
    runs = [r for r in run_log(root) if r.get("run_id") != record.get("run_id")]
    runs.append(jsonable(dict(record)))
    root.attrs["runs"] = runs


def mark_interrupted_runs(root: zarr.Group, *, except_run: str) -> list[str]:
    """Mark runs still logged ``running`` (other than ``except_run``) as ``interrupted``.

    Only the holder of the writer lease may call this: no other run can be alive then,
    so a ``running`` record is what a killed run left.

    Parameters
    ----------
    root : zarr.Group
        Root group of the store.
    except_run : str
        The calling run.

    Returns
    -------
    list of str
        The run ids marked.
    """
    runs = run_log(root)
    stale = [r for r in runs
             if r.get("status") == "running" and r.get("run_id") != except_run]
    if not stale:
        return []
    now = utcnow()
    for r in stale:
        r["status"] = "interrupted"
        r.setdefault("finished", "")
        r["interrupted_noticed"] = now
        logger.warning("run %s (started %s) was killed: marked interrupted",
                       r.get("run_id"), r.get("started"))
    root.attrs["runs"] = jsonable(runs)
    return [str(r.get("run_id")) for r in stale]


def last_successful_run(root: zarr.Group) -> dict[str, Any] | None:
    """The latest run that finished (status ``finished``), or ``None``."""
    done = [r for r in run_log(root) if r.get("status") == "finished"]
    if not done:
        return None
    return max(done, key=lambda r: str(r.get("started", "")))
