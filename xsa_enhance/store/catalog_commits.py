"""Catalog state of the product store and the commits that publish rows.

The root attributes hold the catalog state ``{name: {path, nrows}}``: which generation
group (``catalogs/<name>.<generation>``) is live and how many of its rows are published.
A commit writes every column first and then publishes the new row counts of all the
catalogs it touched in one atomic write of the root attributes (see
:mod:`xsa_enhance.store.catalog`); a removal writes new generations and switches over in one
such write. Only the pipeline driver commits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from xsa_enhance.errors import InputFileError
from xsa_enhance.store.catalog import CATALOG_NAMES, Catalog, rows_from_table
from xsa_enhance.store.integrity import StoreDamagedError, update_catalog_digests
from xsa_enhance.store.layout import delete_group, observation_path, utcnow
from xsa_enhance.store.sky_index import sky_columns, update_index

__all__ = [
    "CheckedCatalog",
    "create_catalogs",
    "catalog_state",
    "open_catalog",
    "commit_rows",
    "update_sky_indexes",
    "remove_observation_rows",
]

logger = logging.getLogger(__name__)


class CheckedCatalog(Catalog):
    """A catalog whose unreadable columns raise :class:`StoreDamagedError` naming the file."""

    store_url: str = ""

    def column(self, name: str, rows: np.ndarray | None = None  # noqa: D102 - Catalog.column
               ) -> np.ndarray:
        try:
            return super().column(name, rows)
        except Exception as exc:  # noqa: BLE001 - codec/shape errors of damaged chunks
            where = f"{self.store_url.rstrip('/')}/{self.group.path}/{name}"
            text = " ".join(str(exc).split())[:120]
            raise StoreDamagedError(
                where, f"catalog {self.name} column {name} is unreadable "
                       f"({type(exc).__name__}: {text})") from exc


def create_catalogs(root: zarr.Group) -> dict[str, dict[str, Any]]:
    """Create the first generation of every catalog in a new store; return its state."""
    cats = root.require_group("catalogs")
    state = {}
    for name in CATALOG_NAMES:
        Catalog.create(cats, name, group_name=f"{name}.0")
        state[name] = {"path": f"catalogs/{name}.0", "nrows": 0}
    return state


def catalog_state(root: zarr.Group, url: str) -> dict[str, dict[str, Any]]:
    """The catalog state of the root attributes (a copy).

    Raises
    ------
    InputFileError
        For a store without a catalog state.
    """
    state = root.attrs.get("catalogs")
    if not isinstance(state, Mapping):
        raise InputFileError(url, "product store without catalog state")
    return {k: dict(v) for k, v in state.items()}


def open_catalog(root: zarr.Group, url: str, name: str, *, writable: bool) -> Catalog:
    """One catalog with its published rows (see :meth:`ProductStore.catalog`).

    Parameters
    ----------
    root : zarr.Group
        Root group of the store.
    url : str
        The store's URL (for messages).
    name : str
        Catalog name.
    writable : bool
        The store is open for writing: a ``sources`` catalog missing from an older store is
        created (empty); read-only, an empty in-memory one stands in for it.

    Returns
    -------
    Catalog
    """
    if name not in CATALOG_NAMES:
        raise ValueError(f"unknown catalog {name!r}; expected one of {CATALOG_NAMES}")
    entry = catalog_state(root, url).get(name)
    if entry is None and name == "sources":
        if not writable:
            return Catalog.create(zarr.group(store=zarr.storage.MemoryStore()), "sources")
        Catalog.create(root.require_group("catalogs"), "sources", group_name="sources.0")
        state = catalog_state(root, url)
        state["sources"] = {"path": "catalogs/sources.0", "nrows": 0}
        root.attrs["catalogs"] = state
        return open_catalog(root, url, name, writable=writable)
    if entry is None:
        raise InputFileError(url, f"catalog {name!r} missing")
    try:
        group = root[entry["path"]]
    except KeyError as exc:
        raise InputFileError(url, f"catalog group {entry['path']!r} missing") from exc
    cat = CheckedCatalog(group, name, int(entry["nrows"]))  # type: ignore[arg-type]
    cat.store_url = url
    return cat


def commit_rows(root: zarr.Group, url: str, rows: Mapping[str, Sequence[Mapping[str, Any]]],
                *, run_id: str) -> dict[str, int]:
    """Append rows to several catalogs and publish them together (see
    :meth:`ProductStore.commit`); return the rows added per catalog."""
    state = catalog_state(root, url)
    added: dict[str, int] = {}
    now = utcnow()
    for name in CATALOG_NAMES:
        batch = list(rows.get(name) or [])
        if not batch:
            continue
        cat = open_catalog(root, url, name, writable=True)
        state.setdefault(name, catalog_state(root, url)[name])  # created for an old store
        seen = cat.keys()
        fresh: list[dict[str, Any]] = []
        for row in batch:
            row = dict(row)
            if name != "runs":
                row.setdefault("run_id", run_id)
                row.setdefault("created", now)
            cat.check_rows([row])
            if cat.key:
                key = tuple(str(row[k]) for k in cat.key)
                if key in seen:
                    logger.debug("catalog %s: row %s already published", name, key)
                    continue
                seen.add(key)
            fresh.append(row)
        if not fresh:
            continue
        rows_before = cat.nrows
        state[name]["nrows"] = cat.write_rows(fresh)
        update_catalog_digests(cat.group, state[name], rows_before)
        added[name] = len(fresh)
    if added:
        root.attrs["catalogs"] = state
        update_sky_indexes(root, url, added)
    return added


def update_sky_indexes(root: zarr.Group, url: str, names: Sequence[str]) -> None:
    """Extend the spatial index of the sky catalogs among ``names`` to their published
    rows (after publishing: see :mod:`xsa_enhance.store.sky_index`). A failure only costs
    speed (queries scan the rows left unindexed), so it is logged, not raised."""
    for name in names:
        if sky_columns(name) is None:
            continue
        try:
            update_index(open_catalog(root, url, name, writable=True))
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("catalog %s: spatial index not updated (%s); queries scan the "
                           "new rows until the next commit", name, exc)


def remove_observation_rows(root: zarr.Group, url: str, obsids: Sequence[str]) -> int:
    """Remove observations: their catalog rows and their groups (see
    :meth:`ProductStore.remove_observations`); return the catalog rows removed."""
    drop = {str(o) for o in obsids}
    if not drop:
        return 0
    state = catalog_state(root, url)
    old_paths = []
    removed = 0
    cats = root["catalogs"]
    for name in ("observations", "slices", "products", "sources"):
        if name not in state:
            continue
        cat = open_catalog(root, url, name, writable=True)
        table = cat.read()
        keep = ~np.isin(np.asarray(table["obsid"], dtype=str), list(drop))
        n_drop = int((~keep).sum())
        if n_drop == 0:
            continue
        removed += n_drop
        gen = int(state[name]["path"].rsplit(".", 1)[-1]) + 1
        new = Catalog.create(cats, name, group_name=f"{name}.{gen}")  # type: ignore[arg-type]
        kept = rows_from_table(table[keep])
        new.nrows = 0
        n = new.write_rows(kept) if kept else 0
        old_paths.append(state[name]["path"])
        state[name] = {"path": f"catalogs/{name}.{gen}", "nrows": n}
        update_catalog_digests(new.group, state[name], 0)
    root.attrs["catalogs"] = state
    update_sky_indexes(root, url, list(state))  # the new generations start without an index
    for path in old_paths + [observation_path(o) for o in sorted(drop)]:
        if delete_group(root, path):
            logger.debug("deleted %s from %s", path, url)
    return removed
