"""Image groups of the product store and their write protocol.

Write rules (DESIGN.md section 8): every task owns whole arrays -- the observation task
owns ``obs/<obsid>`` and its ``input`` groups, an enhancement task owns one
``products/<model>__<clamp>`` group, its ``uncertainty`` array included -- and writes each
array in one piece (one shard per array, so no two writers ever touch the same shard). A
group is written with ``complete=False`` and its arrays, then its attributes are rewritten
with ``complete=True`` (one atomic metadata write), together with the checksum of each array
and the group's catalog row (:data:`~xsa_enhance.store.layout.RECORD_ATTR`). Only after that
does the driver commit the catalog row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from xsa_enhance._version import __version__
from xsa_enhance.store.integrity import StoreDamagedError, array_checksum, values_digest
from xsa_enhance.store.layout import (
    RECORD_ATTR,
    delete_group,
    find_group,
    group_record,
    jsonable,
    utcnow,
)

__all__ = [
    "SliceData",
    "ProductData",
    "write_image_group",
    "read_checked",
    "is_complete",
    "product_whole",
]

logger = logging.getLogger(__name__)


@dataclass
class SliceData:
    """A slice image read back from the store."""

    obsid: str
    slice_id: str
    counts: np.ndarray
    exposure: np.ndarray
    mask: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProductData:
    """An enhanced product read back from the store.

    ``uncertainty`` is the per-pixel 1-sigma of ``counts`` (float32, same grid and units), or
    None for a product stored without one.
    """

    obsid: str
    slice_id: str
    key: str
    counts: np.ndarray
    mask: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    uncertainty: np.ndarray | None = None


def _chunking(shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inner chunks and the single shard covering a whole image."""
    inner = 64 if max(shape) <= 512 else 128
    shard = tuple(int(np.ceil(s / inner) * inner) for s in shape)
    return (inner, inner), shard  # type: ignore[return-value]


def write_image_group(
    root: zarr.Group,
    path: str,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    *,
    dims: tuple[str, str],
    record: Mapping[str, Any] | None = None,
) -> None:
    """Write one image group (replacing any leftover) by the write protocol.

    Parameters
    ----------
    root : zarr.Group
        Root group of the store.
    path : str
        Group path (from :mod:`xsa_enhance.store.layout`).
    arrays : mapping of str to numpy.ndarray
        The group's 2-D arrays, each written in one shard.
    attrs : mapping
        Group attributes (``software_version`` added when missing).
    dims : tuple of str
        Dimension names of the arrays.
    record : mapping, optional
        The group's catalog row, kept in :data:`~xsa_enhance.store.layout.RECORD_ATTR`.
    """
    delete_group(root, path)
    meta = dict(jsonable(dict(attrs)))
    meta["complete"] = False
    meta.setdefault("software_version", __version__)
    # zarr keeps a reference to the dict it is given: always hand it copies.
    group = root.create_group(path, attributes=dict(meta))
    checksums: dict[str, Any] = {}
    for name, data in arrays.items():
        data = np.asarray(data)
        chunks, shards = _chunking(data.shape)  # type: ignore[arg-type]
        fill = False if data.dtype == bool else 0
        arr = group.create_array(
            name,
            shape=data.shape,
            chunks=chunks,
            shards=shards,
            dtype=data.dtype,
            fill_value=fill,
            dimension_names=list(dims),
            compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
        )
        arr[...] = data
        checksums[name] = array_checksum(arr, data)
    meta["checksums"] = checksums
    if record is not None:
        meta[RECORD_ATTR] = group_record(record)
    meta["complete"] = True
    meta["written"] = utcnow()
    group.attrs.put(dict(meta))


def read_checked(group: zarr.Group, name: str, where: str) -> np.ndarray:
    """Read a whole array and compare it with its recorded checksum.

    Parameters
    ----------
    group : zarr.Group
        The image group.
    name : str
        Array name.
    where : str
        The array's location for messages (store URL, group path and name).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    StoreDamagedError
        The array does not decode (a truncated chunk) or differs from its checksum (a
        deleted chunk reads as fill values): names the group, suggests ``repair``.
    """
    try:
        data = np.asarray(group[name][...])
    except Exception as exc:  # noqa: BLE001 - codec / shard index / metadata errors
        text = " ".join(str(exc).split())[:120]
        raise StoreDamagedError(where, f"array unreadable ({type(exc).__name__}: "
                                       f"{text})") from exc
    want = (group.attrs.get("checksums") or {}).get(name)
    if isinstance(want, Mapping) and values_digest(data) != want.get("sha256"):
        raise StoreDamagedError(where, "array differs from its checksum (a chunk is "
                                       "missing or altered)")
    return data


def is_complete(root: zarr.Group, path: str) -> bool:
    """Whether the group at ``path`` exists and was marked complete."""
    group = find_group(root, path)
    return bool(group is not None and group.attrs.get("complete", False))


def product_whole(root: zarr.Group, path: str) -> bool:
    """A complete product group with every array its attributes announce."""
    group = find_group(root, path)
    if group is None or not group.attrs.get("complete", False):
        return False
    return not group.attrs.get("uncertainty", False) or "uncertainty" in group
