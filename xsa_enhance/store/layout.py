"""Layout of the Zarr v3 product store: group paths, keys and attribute conventions.

Layout (``<store>`` is a local directory or an fsspec URL)::

    <store>/zarr.json                       root attributes: format, software, runs, and
                                            the catalog state {name: {path, nrows}}
    <store>/catalogs/<name>.<generation>/<column>   1-D column arrays
    <store>/obs/<obsid>/                    attributes: observation metadata, GTIs
    <store>/obs/<obsid>/<slice_id>/input/{counts,exposure,mask}
    <store>/obs/<obsid>/<slice_id>/products/<model>__<clamp>/{counts,mask[,uncertainty]}

Every path that holds an observation id is built here, so an id that is not ten digits
(``'a/b'``, ``'/abs'``, ``'..'``) is refused with
:class:`~xsa_enhance.errors.ObservationError` before anything is created, deleted or read.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from xsa_enhance.errors import ObservationError
from xsa_enhance.obsid import validate_obsid

__all__ = [
    "STORE_FORMAT",
    "RECORD_ATTR",
    "VOLATILE_ROW_FIELDS",
    "utcnow",
    "slice_key",
    "product_key",
    "jsonable",
    "group_record",
    "observation_path",
    "input_path",
    "product_path",
    "find_group",
    "delete_group",
]

logger = logging.getLogger(__name__)

#: Version of the store layout written into the root attributes.
STORE_FORMAT: int = 1

#: Group attribute holding the catalog row of the group (its *record*; ``repair`` rebuilds
#: unreadable catalogs from these).
RECORD_ATTR = "catalog_row"

#: Row fields left out of the records: filled in at commit (``run_id``, ``created``) or kept
#: as the group's own attributes (``harvest_time``, ``harvest_status`` of observations).
VOLATILE_ROW_FIELDS = frozenset({"run_id", "created", "harvest_time", "harvest_status"})

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def utcnow() -> str:
    """Current UTC time as ISO 8601 with microseconds and a ``Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def slice_key(expidstr: str, length_ks: int, index: int) -> str:
    """Key of a slice inside its observation: ``<expid>_<length>ks_<index>``.

    Parameters
    ----------
    expidstr : str
        Exposure identifier (``S003``).
    length_ks : int
        Nominal slice exposure in ks.
    index : int
        Zero-based index of the slice among those of the same length.
    """
    return f"{expidstr}_{int(length_ks):03d}ks_{int(index):03d}"


def product_key(model: str, clamp: str) -> str:
    """Key of an enhanced product inside its slice: ``<model>__<clamp>`` (path-safe)."""
    return f"{_SAFE.sub('_', model)}__{_SAFE.sub('_', clamp)}"


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and paths inside attributes to JSON types.

    Parameters
    ----------
    value : object
        An attribute value (mappings and sequences are converted recursively).

    Returns
    -------
    object
        The value with JSON types only (non-finite floats become None).
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def group_record(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The record kept in a group's :data:`RECORD_ATTR`: its catalog row without the
    :data:`VOLATILE_ROW_FIELDS`, as JSON types (None for no row)."""
    if row is None:
        return None
    return jsonable({k: v for k, v in dict(row).items() if k not in VOLATILE_ROW_FIELDS})


def _checked_obsid(obsid: str) -> str:
    """``obsid`` if it is ten digits, else ObservationError naming it (store group paths)."""
    text = validate_obsid(obsid, source="product store")
    if text != obsid:  # blanks around the id would give a different group name
        raise ObservationError(repr(obsid)[:40], "not an XMM-Newton observation id (10 digits)")
    return text


def _checked_name(name: str, what: str, obsid: str) -> str:
    """One group-name component: no '/', not empty, not '.' or '..'."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ObservationError(str(obsid), f"invalid {what} {name!r} (not a single store group name)")
    return name


def observation_path(obsid: str) -> str:
    """Group path of an observation.

    Raises
    ------
    ObservationError
        When ``obsid`` is not an XMM-Newton observation id (ten digits).
    """
    return f"obs/{_checked_obsid(obsid)}"


def input_path(obsid: str, slice_id: str) -> str:
    """Group path of a slice input image (``obsid`` and ``slice_id`` validated)."""
    return f"obs/{_checked_obsid(obsid)}/{_checked_name(slice_id, 'slice id', obsid)}/input"


def product_path(obsid: str, slice_id: str, model: str, clamp: str) -> str:
    """Group path of an enhanced product (``obsid`` and ``slice_id`` validated)."""
    key = _checked_name(product_key(model, clamp), "product key", obsid)
    return (f"obs/{_checked_obsid(obsid)}/{_checked_name(slice_id, 'slice id', obsid)}"
            f"/products/{key}")


def find_group(root: zarr.Group, path: str) -> zarr.Group | None:
    """The group at ``path`` under ``root``, or None (absent, or an array)."""
    try:
        node = root[path]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Group) else None


def delete_group(root: zarr.Group, path: str) -> bool:
    """Remove the group at ``path`` and everything below it; whether there was one."""
    parent, _, name = path.rpartition("/")
    group = find_group(root, parent) if parent else root
    if group is not None and name in group:
        del group[name]
        return True
    return False
