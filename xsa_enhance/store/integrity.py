"""Content checksums of the store's arrays and the deep check that re-reads them.

What is recorded when data is written:

- every image array (slice inputs, enhanced products, their uncertainty) gets, in its
  group's attributes under ``checksums``, ``{name: {"sha256": ..., "chunks": n}}``: the
  SHA-256 of its dtype, shape and bytes (C order) and the number of chunks zarr stored for it
  (chunks holding only the fill value are not stored, so *n* can be below the grid's count);
- every catalog column gets, in the catalog state of the root attributes
  (``catalogs.<name>.digests.<column>``), one digest per block of :data:`BLOCK_ROWS`
  published rows; an append recomputes only the blocks it touched.

:func:`deep_check` re-reads everything and compares: a deleted chunk (which zarr silently
reads as fill values), a truncated or garbled chunk (a codec or shard-index error), an array
or group whose metadata is unreadable, a catalog column that no longer decodes or no longer
matches its digests. Each problem is one :class:`Finding` naming the product, slice,
observation or catalog column and its file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from xsa_enhance.errors import InputFileError

__all__ = [
    "BLOCK_ROWS",
    "Finding",
    "StoreDamagedError",
    "array_checksum",
    "check_group_arrays",
    "column_block_digests",
    "deep_check",
    "values_digest",
]

logger = logging.getLogger(__name__)

#: Rows per catalog digest block.
BLOCK_ROWS = 4096

#: What every message about a damaged store ends with.
REPAIR_HINT = "run `xsa-enhance repair STORE` to see and fix the damage"


class StoreDamagedError(InputFileError):
    """Store data that cannot be read back (names the file; suggests ``repair``)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(path, f"{reason}; {REPAIR_HINT.replace('STORE', _store_of(path))}")


def _store_of(path: object) -> str:
    text = str(path)
    if text.endswith("/zarr.json"):
        text = text[: -len("/zarr.json")]
    for marker in ("/catalogs/", "/obs/"):
        if marker in text:
            return text.split(marker, 1)[0]
    return text


def values_digest(values: np.ndarray) -> str:
    """SHA-256 (hex) of an array's dtype, shape and bytes; text as UTF-8 JSON."""
    a = np.asarray(values)
    h = hashlib.sha256()
    if a.dtype.kind in ("T", "O", "U", "S"):
        h.update(b"str")
        h.update(json.dumps([str(v) for v in a.ravel().tolist()]).encode("utf-8"))
    else:
        a = np.ascontiguousarray(a)
        h.update(a.dtype.str.encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def array_checksum(arr: zarr.Array, data: np.ndarray) -> dict[str, Any]:
    """The checksum record of an array just written from ``data``."""
    return {"sha256": values_digest(np.asarray(data, dtype=arr.dtype)),
            "chunks": int(arr.nchunks_initialized)}


def column_block_digests(values: np.ndarray) -> list[str]:
    """Digests (32 hex characters) of successive :data:`BLOCK_ROWS`-row blocks of a column."""
    return [values_digest(values[start:start + BLOCK_ROWS])[:32]
            for start in range(0, len(values), BLOCK_ROWS)]


def _raw_column(arr: zarr.Array, start: int, stop: int) -> np.ndarray:
    values = np.asarray(arr[start:stop])
    if values.dtype.kind == "T" or values.dtype == object:
        values = np.array([str(v) for v in values.tolist()], dtype=object)
    return values


def update_catalog_digests(group: zarr.Group, entry: dict[str, Any], rows_before: int) -> None:
    """Recompute the block digests of ``entry`` (a catalog state) from ``rows_before`` on."""
    n = int(entry["nrows"])
    digests = dict(entry.get("digests") or {})
    first = rows_before // BLOCK_ROWS
    for name in group.array_keys():
        old = list(digests.get(name) or [])
        if len(old) < first:  # a column without digests so far (older store): all blocks
            start_block = 0
        else:
            start_block = first
        values = _raw_column(group[name], start_block * BLOCK_ROWS, n)  # type: ignore[arg-type]
        digests[name] = old[:start_block] + column_block_digests(values)
    entry["digests"] = digests


@dataclass(frozen=True)
class Finding:
    """One damaged thing in a store.

    Attributes
    ----------
    kind : str
        ``root``, ``catalog``, ``observation``, ``slice`` or ``product``.
    key : str
        What it is: ``<catalog>.<column>``, ``<obsid>``, ``<obsid>/<slice>`` or
        ``<obsid>/<slice>/<model>__<clamp>``.
    path : str
        Its path inside the store.
    problem : str
        What is wrong (one line).
    """

    kind: str
    key: str
    path: str
    problem: str

    def describe(self) -> str:
        """One line: ``<kind> <key>: <problem>``."""
        return f"{self.kind} {self.key}: {self.problem}"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def check_group_arrays(group: zarr.Group) -> list[str]:
    """Problems of the arrays of one group against its recorded ``checksums``.

    Groups written before checksums were recorded are only read back (a decode error is
    still a problem).
    """
    problems: list[str] = []
    sums = group.attrs.get("checksums")
    if not isinstance(sums, Mapping):
        sums = {}
        try:
            names = sorted(group.array_keys())
        except Exception as exc:  # noqa: BLE001 - damaged metadata
            return [f"arrays cannot be listed ({_short(exc)})"]
    else:
        names = sorted(sums)
    for name in names:
        try:
            arr = group[name]
        except KeyError:
            problems.append(f"array {name} missing")
            continue
        except Exception as exc:  # noqa: BLE001 - damaged zarr.json of the array
            problems.append(f"array {name} metadata unreadable ({_short(exc)})")
            continue
        try:
            data = np.asarray(arr[...])
        except Exception as exc:  # noqa: BLE001 - codec, shard index, I/O
            problems.append(f"array {name} unreadable ({_short(exc)})")
            continue
        want = sums.get(name)
        if not isinstance(want, Mapping):
            continue
        stored = int(arr.nchunks_initialized)  # type: ignore[union-attr]
        if stored < int(want.get("chunks", 0)):
            problems.append(f"array {name}: {int(want['chunks']) - stored} of "
                            f"{int(want['chunks'])} chunks missing")
        elif values_digest(data) != want.get("sha256"):
            problems.append(f"array {name}: content differs from its checksum")
    return problems


def _group_or_problem(root: zarr.Group, path: str) -> tuple[zarr.Group | None, str | None]:
    try:
        node = root[path]
    except KeyError:
        return None, "group missing"
    except Exception as exc:  # noqa: BLE001 - damaged zarr.json
        return None, f"group metadata unreadable ({_short(exc)})"
    if not isinstance(node, zarr.Group):
        return None, "not a group"
    return node, None


async def _list_dir(store: Any, prefix: str) -> list[str]:
    return [k async for k in store.list_dir(prefix)]


def _keys(group: zarr.Group) -> list[str]:
    """Names below a group that may be child nodes (listed from the store itself, so one
    child with damaged metadata does not hide its siblings)."""
    from zarr.core.sync import sync

    names = sync(_list_dir(group.store, group.path))
    return sorted(n for n in names if n != "zarr.json" and not n.startswith("."))


def _check_catalogs(root: zarr.Group, state: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for name, entry in state.items():
        path = str(entry.get("path", ""))
        nrows = int(entry.get("nrows", 0))
        group, problem = _group_or_problem(root, path)
        if group is None:
            findings.append(Finding("catalog", name, path, problem or "missing"))
            continue
        digests = entry.get("digests") or {}
        try:
            columns = sorted(group.array_keys())
        except Exception as exc:  # noqa: BLE001
            findings.append(Finding("catalog", name, path, f"columns cannot be listed "
                                                            f"({_short(exc)})"))
            continue
        for col in sorted(set(columns) | set(digests)):
            where = f"{path}/{col}"
            try:
                arr = group[col]
                if arr.shape[0] < nrows:
                    findings.append(Finding("catalog", f"{name}.{col}", where,
                                            f"{arr.shape[0]} rows stored, {nrows} published"))
                    continue
                values = _raw_column(arr, 0, nrows)  # type: ignore[arg-type]
            except KeyError:
                findings.append(Finding("catalog", f"{name}.{col}", where, "column missing"))
                continue
            except Exception as exc:  # noqa: BLE001 - codec errors
                findings.append(Finding("catalog", f"{name}.{col}", where,
                                        f"column unreadable ({_short(exc)})"))
                continue
            want = digests.get(col)
            if want is not None and column_block_digests(values) != list(want):
                findings.append(Finding("catalog", f"{name}.{col}", where,
                                        "column content differs from its checksums"))
    return findings


def deep_check(url: str | os.PathLike[str], *,
               storage_options: dict[str, Any] | None = None) -> list[Finding]:
    """Re-read every catalog column and every array of a store and compare the checksums.

    Parameters
    ----------
    url : str or os.PathLike
        The store.
    storage_options : dict, optional
        fsspec options for remote stores.

    Returns
    -------
    list of Finding
        Empty when everything reads back as written.
    """
    kwargs: dict[str, Any] = {"mode": "r", "zarr_format": 3, "use_consolidated": False}
    if storage_options:
        kwargs["storage_options"] = storage_options
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            root = zarr.open_group(os.fspath(url), **kwargs)
        state = root.attrs.get("catalogs")
        if root.attrs.get("xsa_enhance_store") is None or not isinstance(state, Mapping):
            raise ValueError("no xsa-enhance store attributes")
    except FileNotFoundError as exc:
        raise InputFileError(url, "no product store here") from exc
    except Exception as exc:  # noqa: BLE001 - a damaged root zarr.json
        return [Finding("root", "zarr.json", "zarr.json",
                        f"root metadata unreadable ({_short(exc)})")]
    findings = _check_catalogs(root, state)
    obs, problem = _group_or_problem(root, "obs")
    if obs is None:
        findings.append(Finding("root", "obs", "obs", problem or "missing"))
        return findings
    for obsid in _keys(obs):
        opath = f"obs/{obsid}"
        group, problem = _group_or_problem(root, opath)
        if problem == "group missing":
            continue
        if group is None:
            findings.append(Finding("observation", obsid, opath, problem or ""))
            continue
        for sid in _keys(group):
            spath = f"{opath}/{sid}"
            if _group_or_problem(root, spath)[1] == "group missing":
                continue
            inp, problem = _group_or_problem(root, f"{spath}/input")
            if inp is None:
                if problem != "group missing":
                    findings.append(Finding("slice", f"{obsid}/{sid}", f"{spath}/input",
                                            problem or ""))
            else:
                for p in check_group_arrays(inp):
                    findings.append(Finding("slice", f"{obsid}/{sid}", f"{spath}/input", p))
            prods, problem = _group_or_problem(root, f"{spath}/products")
            if prods is None:
                continue
            for key in _keys(prods):
                ppath = f"{spath}/products/{key}"
                pgroup, problem = _group_or_problem(root, ppath)
                if problem == "group missing":
                    continue
                if pgroup is None:
                    findings.append(Finding("product", f"{obsid}/{sid}/{key}", ppath,
                                            problem or ""))
                    continue
                if not pgroup.attrs.get("complete", False):
                    continue  # an orphan of an interrupted run: the next run removes it
                for p in check_group_arrays(pgroup):
                    findings.append(Finding("product", f"{obsid}/{sid}/{key}", ppath, p))
    return findings
