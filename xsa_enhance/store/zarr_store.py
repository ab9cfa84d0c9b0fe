"""The Zarr v3 product store: slice images, enhanced products and catalogs.

Layout (``<store>`` is a local directory or an fsspec URL)::

    <store>/zarr.json                       root attributes: format, software, runs, and
                                            the catalog state {name: {path, nrows}}
    <store>/catalogs/<name>.<generation>/<column>   1-D column arrays
    <store>/obs/<obsid>/                    attributes: observation metadata, GTIs
    <store>/obs/<obsid>/<slice_id>/input/{counts,exposure,mask}
    <store>/obs/<obsid>/<slice_id>/products/<model>__<clamp>/{counts,mask[,uncertainty]}

Write rules (DESIGN.md section 8): every task owns whole arrays -- the observation task
owns ``obs/<obsid>`` and its ``input`` groups, an enhancement task owns one
``products/<model>__<clamp>`` group, its ``uncertainty`` array included -- and writes each
array in one piece (one shard per array, so no two writers ever touch the same shard). A group is written with
``complete=False`` and its arrays, then its attributes are rewritten with ``complete=True``
(one atomic metadata write). Only after that does the driver commit the catalog row.
A group that is not complete, or complete but without a catalog row, is an *orphan* of an
interrupted run; :meth:`ProductStore.clean_orphans` removes those before a run resumes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from xsa_enhance._version import __version__
from xsa_enhance.errors import InputFileError, ObservationError
from xsa_enhance.obsid import validate_obsid
from xsa_enhance.store.catalog import CATALOG_NAMES, Catalog, rows_from_table
from xsa_enhance.store.integrity import (
    StoreDamagedError,
    array_checksum,
    update_catalog_digests,
    values_digest,
)
from xsa_enhance.store.spatial import sky_columns, update_index

__all__ = [
    "STORE_FORMAT",
    "ProductStore",
    "SliceData",
    "ProductData",
    "product_key",
    "slice_key",
    "utcnow",
    "RECORD_ATTR",
    "VOLATILE_ROW_FIELDS",
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


def _record(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return _jsonable({k: v for k, v in dict(row).items() if k not in VOLATILE_ROW_FIELDS})

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


def _chunking(shape: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inner chunks and the single shard covering a whole image."""
    inner = 64 if max(shape) <= 512 else 128
    shard = tuple(int(np.ceil(s / inner) * inner) for s in shape)
    return (inner, inner), shard  # type: ignore[return-value]


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


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and paths inside attributes to JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value



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


class _CheckedCatalog(Catalog):
    """A catalog whose unreadable columns raise :class:`StoreDamagedError` naming the file."""

    store_url: str = ""

    def column(self, name: str) -> np.ndarray:  # noqa: D102 - see Catalog.column
        try:
            return super().column(name)
        except Exception as exc:  # noqa: BLE001 - codec/shape errors of damaged chunks
            where = f"{self.store_url.rstrip('/')}/{self.group.path}/{name}"
            text = " ".join(str(exc).split())[:120]
            raise StoreDamagedError(
                where, f"catalog {self.name} column {name} is unreadable "
                       f"({type(exc).__name__}: {text})") from exc


class ProductStore:
    """A Zarr v3 product store (local directory or fsspec URL).

    Parameters
    ----------
    url : str or pathlib.Path
        Local path or fsspec URL of the store.
    mode : {"r", "r+", "a"}
        ``"r"`` read only; ``"r+"`` the store must exist; ``"a"`` create it when missing.
    storage_options : dict, optional
        fsspec options for remote URLs.

    Notes
    -----
    Only one pipeline run should write a store at a time (the driver is the single writer of
    the catalogs and the root attributes). Tasks open their own ``ProductStore`` with
    ``mode="r+"`` and write only the groups they own.
    """

    def __init__(
        self,
        url: str | Path,
        *,
        mode: str = "a",
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("r", "r+", "a"):
            raise ValueError(f"mode must be 'r', 'r+' or 'a', got {mode!r}")
        self.url = str(url)
        if self.url.startswith("file://"):
            # a local directory: zarr's LocalStore (atomic writes, parents created)
            from urllib.parse import unquote, urlparse

            self.url = unquote(urlparse(self.url).path)
        self.mode = mode
        self.storage_options = storage_options
        kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3}
        if storage_options:
            kwargs["storage_options"] = storage_options
        # Readers may use consolidated metadata (end-of-run snapshot); writers never do.
        kwargs["use_consolidated"] = None if mode == "r" else False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                self.root = zarr.open_group(self.url, **kwargs)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise InputFileError(self.url, "no product store here") from exc
        except OSError as exc:  # permissions, read-only or full file system...
            raise InputFileError(self.url, f"cannot open the product store: {exc.strerror or exc}") from exc
        except (ValueError, zarr.errors.ContainsArrayError) as exc:
            text = " ".join(str(exc).split())[:160]
            meta = Path(self.url) / "zarr.json"
            if "://" not in self.url and meta.is_file():
                raise StoreDamagedError(meta, f"root metadata of the product store is "
                                              f"unreadable ({text})") from exc
            raise StoreDamagedError(self.url, f"not a usable Zarr v3 store ({text})") from exc
        if mode == "r":
            if self.root.attrs.get("xsa_enhance_store") is None:
                raise InputFileError(self.url, "not an xsa-enhance product store")
        else:
            try:
                self._initialise()
            except OSError as exc:
                raise InputFileError(
                    self.url, f"cannot write the product store: {exc.strerror or exc}"
                ) from exc

    # ------------------------------------------------------------------ set-up
    def _initialise(self) -> None:
        attrs = self.root.attrs
        if attrs.get("xsa_enhance_store") is None:
            with warnings.catch_warnings():  # the writer lease file is not a Zarr node
                warnings.simplefilter("ignore", category=UserWarning)
                present = set(self.root.keys())
            if present - {"catalogs", "obs"}:
                raise InputFileError(self.url, "Zarr group exists but is not a product store")
            cats = self.root.require_group("catalogs")
            state = {}
            for name in CATALOG_NAMES:
                Catalog.create(cats, name, group_name=f"{name}.0")
                state[name] = {"path": f"catalogs/{name}.0", "nrows": 0}
            self.root.require_group("obs")
            # The store becomes a product store with this one write.
            self.root.attrs.update(
                {
                    "xsa_enhance_store": STORE_FORMAT,
                    "software_version": __version__,
                    "created": utcnow(),
                    "catalogs": state,
                    "runs": [],
                }
            )

    # ------------------------------------------------------------------ catalogs
    def _catalog_state(self) -> dict[str, dict[str, Any]]:
        state = self.root.attrs.get("catalogs")
        if not isinstance(state, Mapping):
            raise InputFileError(self.url, "product store without catalog state")
        return {k: dict(v) for k, v in state.items()}

    def catalog(self, name: str) -> Catalog:
        """Return one catalog (``observations``, ``slices``, ``products``, ``runs``).

        The catalog shows the rows published when the store was opened or last committed
        through this handle.
        """
        if name not in CATALOG_NAMES:
            raise ValueError(f"unknown catalog {name!r}; expected one of {CATALOG_NAMES}")
        entry = self._catalog_state().get(name)
        if entry is None and name == "sources":
            return self._missing_sources_catalog()
        if entry is None:
            raise InputFileError(self.url, f"catalog {name!r} missing")
        try:
            group = self.root[entry["path"]]
        except KeyError as exc:
            raise InputFileError(self.url, f"catalog group {entry['path']!r} missing") from exc
        cat = _CheckedCatalog(group, name, int(entry["nrows"]))  # type: ignore[arg-type]
        cat.store_url = self.url
        return cat

    def _missing_sources_catalog(self) -> Catalog:
        """The ``sources`` catalog of a store written before it existed: created (empty) on
        a writable store, an empty in-memory one on a read-only store."""
        if self.mode == "r":
            return Catalog.create(zarr.group(store=zarr.storage.MemoryStore()), "sources")
        Catalog.create(self.root.require_group("catalogs"), "sources", group_name="sources.0")
        state = self._catalog_state()
        state["sources"] = {"path": "catalogs/sources.0", "nrows": 0}
        self.root.attrs["catalogs"] = state
        return self.catalog("sources")

    def commit(
        self, rows: Mapping[str, Sequence[Mapping[str, Any]]], *, run_id: str
    ) -> dict[str, int]:
        """Append rows to several catalogs and publish them together (driver only).

        Rows whose key (see :data:`~xsa_enhance.store.catalog.CATALOG_KEYS`) is already
        published, or repeated in the batch, are dropped, so a resumed run never duplicates
        a row. ``run_id`` and ``created`` are filled in. All columns are written first; the
        new row counts of every catalog then appear in one atomic write of the root
        attributes.

        Parameters
        ----------
        rows : mapping of catalog name to rows
            Rows without ``run_id`` / ``created`` (``runs`` rows are taken as they are).
        run_id : str
            The committing run.

        Returns
        -------
        dict
            Rows added per catalog.
        """
        if self.mode == "r":
            raise InputFileError(self.url, "store opened read-only")
        state = self._catalog_state()
        added: dict[str, int] = {}
        now = utcnow()
        for name in CATALOG_NAMES:
            batch = list(rows.get(name) or [])
            if not batch:
                continue
            cat = self.catalog(name)
            state.setdefault(name, self._catalog_state()[name])  # created for an old store
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
            self.root.attrs["catalogs"] = state
            self._update_sky_indexes(added)
        return added

    def _update_sky_indexes(self, names: Sequence[str]) -> None:
        """Extend the spatial index of the sky catalogs among ``names`` to their published
        rows (after publishing: see :mod:`xsa_enhance.store.spatial`). A failure only costs
        speed (queries scan the rows left unindexed), so it is logged, not raised."""
        for name in names:
            if sky_columns(name) is None:
                continue
            try:
                update_index(self.catalog(name))
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("catalog %s: spatial index not updated (%s); queries scan the "
                               "new rows until the next commit", name, exc)

    def remove_observations(self, obsids: Sequence[str]) -> int:
        """Remove observations: their catalog rows (not the runs log) and their groups.

        The catalogs are rewritten into new groups and switched over in one atomic write of
        the root attributes, then the old groups and the observation groups are deleted; a
        run killed in between leaves only unreferenced groups that :meth:`clean_orphans`
        removes. Driver only (``--force``).

        Returns
        -------
        int
            Catalog rows removed.
        """
        drop = {str(o) for o in obsids}
        if not drop:
            return 0
        state = self._catalog_state()
        old_paths = []
        removed = 0
        cats = self.root["catalogs"]
        for name in ("observations", "slices", "products", "sources"):
            if name not in state:
                continue
            cat = self.catalog(name)
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
        self.root.attrs["catalogs"] = state
        self._update_sky_indexes(list(state))  # the new generations start without an index
        for path in old_paths:
            self.delete(path)
        for obsid in sorted(drop):
            self.delete(self.observation_path(obsid))
        return removed

    @property
    def run_log(self) -> list[dict[str, Any]]:
        """Run-level records kept in the root attributes (one per run)."""
        return list(self.root.attrs.get("runs", []))

    def record_run(self, record: Mapping[str, Any]) -> None:
        """Add or replace (by ``run_id``) a run-level record (driver only)."""
        runs = [r for r in self.run_log if r.get("run_id") != record.get("run_id")]
        runs.append(_jsonable(dict(record)))
        self.root.attrs["runs"] = runs

    def mark_interrupted_runs(self, *, except_run: str) -> list[str]:
        """Mark runs still logged ``running`` (other than ``except_run``) as ``interrupted``.

        Only the holder of the writer lease may call this: no other run can be alive then,
        so a ``running`` record is what a killed run left. Returns their run ids.
        """
        runs = self.run_log
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
        self.root.attrs["runs"] = _jsonable(runs)
        return [str(r.get("run_id")) for r in stale]

    def last_successful_run(self) -> dict[str, Any] | None:
        """The latest run that finished (status ``finished``), or ``None``."""
        done = [r for r in self.run_log if r.get("status") == "finished"]
        if not done:
            return None
        return max(done, key=lambda r: str(r.get("started", "")))

    # ------------------------------------------------------------------ paths
    # Every method taking an observation id builds its group path through these, so an id
    # that is not ten digits ('a/b', '/abs', '..') is refused with ObservationError before
    # anything is created, deleted or read.
    @staticmethod
    def observation_path(obsid: str) -> str:
        """Group path of an observation.

        Raises
        ------
        ObservationError
            When ``obsid`` is not an XMM-Newton observation id (ten digits).
        """
        return f"obs/{_checked_obsid(obsid)}"

    @staticmethod
    def input_path(obsid: str, slice_id: str) -> str:
        """Group path of a slice input image (``obsid`` and ``slice_id`` validated)."""
        return f"obs/{_checked_obsid(obsid)}/{_checked_name(slice_id, 'slice id', obsid)}/input"

    @staticmethod
    def product_path(obsid: str, slice_id: str, model: str, clamp: str) -> str:
        """Group path of an enhanced product (``obsid`` and ``slice_id`` validated)."""
        key = _checked_name(product_key(model, clamp), "product key", obsid)
        return (f"obs/{_checked_obsid(obsid)}/{_checked_name(slice_id, 'slice id', obsid)}"
                f"/products/{key}")

    def _group(self, path: str) -> zarr.Group | None:
        try:
            node = self.root[path]
        except KeyError:
            return None
        return node if isinstance(node, zarr.Group) else None

    def exists(self, path: str) -> bool:
        """Whether a group exists at ``path``."""
        return self._group(path) is not None

    def is_complete(self, path: str) -> bool:
        """Whether the group at ``path`` exists and was marked complete."""
        group = self._group(path)
        return bool(group is not None and group.attrs.get("complete", False))

    def _product_whole(self, path: str) -> bool:
        """A complete product group with every array its attributes announce."""
        group = self._group(path)
        if group is None or not group.attrs.get("complete", False):
            return False
        return not group.attrs.get("uncertainty", False) or "uncertainty" in group

    def delete(self, path: str) -> None:
        """Remove the group at ``path`` and everything below it (no error when absent)."""
        parent, _, name = path.rpartition("/")
        group = self._group(parent) if parent else self.root
        if group is not None and name in group:
            del group[name]
            logger.debug("deleted %s from %s", path, self.url)

    # ------------------------------------------------------------------ writing
    def begin_observation(self, obsid: str, *, attrs: Mapping[str, Any]) -> zarr.Group:
        """Create (replacing any leftover) the group of one observation (its task only).

        Parameters
        ----------
        obsid : str
            Observation identifier.
        attrs : mapping
            Observation metadata (pointing, GTIs, screening, provenance).
        """
        path = self.observation_path(obsid)  # validates obsid
        obsid = path.rpartition("/")[2]
        self.delete(path)
        obs = self.root.require_group("obs")
        meta = dict(_jsonable(dict(attrs)))
        meta["complete"] = False
        return obs.create_group(obsid, attributes=dict(meta))

    def finish_observation(self, obsid: str, *, record: Mapping[str, Any] | None = None) -> None:
        """Mark an observation group complete (after all its slice inputs are written).

        ``record``: its ``observations`` catalog row, kept in the group (see
        :data:`RECORD_ATTR`) and written in the same attribute update.
        """
        group = self._group(self.observation_path(obsid))
        if group is None:
            raise KeyError(f"observation {obsid} has no group in {self.url}")
        update: dict[str, Any] = {"complete": True}
        if record is not None:
            update[RECORD_ATTR] = _record(record)
        group.attrs.update(update)

    def _write_image_group(
        self,
        path: str,
        arrays: Mapping[str, np.ndarray],
        attrs: Mapping[str, Any],
        *,
        dims: tuple[str, str],
        record: Mapping[str, Any] | None = None,
    ) -> None:
        self.delete(path)
        meta = dict(_jsonable(dict(attrs)))
        meta["complete"] = False
        meta.setdefault("software_version", __version__)
        # zarr keeps a reference to the dict it is given: always hand it copies.
        group = self.root.create_group(path, attributes=dict(meta))
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
            meta[RECORD_ATTR] = _record(record)
        meta["complete"] = True
        meta["written"] = utcnow()
        group.attrs.put(dict(meta))

    def write_slice_input(
        self,
        obsid: str,
        slice_id: str,
        *,
        counts: np.ndarray,
        exposure_s: float,
        mask: np.ndarray,
        attrs: Mapping[str, Any],
        record: Mapping[str, Any] | None = None,
    ) -> str:
        """Write a slice image: counts (int32), exposure map (float32, s) and mask (bool).

        The exposure map is ``exposure_s`` inside the mask and 0 outside. Returns the group
        path. The group is marked complete only after all three arrays are written, with the
        checksum of each array and ``record`` (its ``slices`` catalog row) in its attributes.
        """
        counts = np.asarray(counts)
        mask = np.asarray(mask, dtype=bool)
        if counts.shape != mask.shape:
            raise ValueError(f"counts {counts.shape} and mask {mask.shape} differ in shape")
        path = self.input_path(obsid, slice_id)
        exposure = np.where(mask, np.float32(exposure_s), np.float32(0)).astype(np.float32)
        meta = dict(attrs)
        meta.update({"obsid": obsid, "slice_id": slice_id, "exposure_s": float(exposure_s)})
        self._write_image_group(
            path,
            {"counts": counts.astype(np.int32), "exposure": exposure, "mask": mask},
            meta,
            dims=("dety", "detx"),
            record=record,
        )
        return path

    def write_product(
        self,
        obsid: str,
        slice_id: str,
        *,
        model: str,
        clamp: str,
        counts: np.ndarray,
        mask: np.ndarray,
        attrs: Mapping[str, Any],
        uncertainty: np.ndarray | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> str:
        """Write one enhanced product (counts float32 on the model's grid and its mask).

        ``uncertainty`` (optional): the per-pixel 1-sigma of the counts (float32, same shape),
        written as the array ``uncertainty`` of the same group before the group is marked
        complete, so a complete product always has the uncertainty its attributes announce
        (``attrs["uncertainty"]`` is set to whether it has one). ``record``: its ``products``
        catalog row, kept in the group's attributes with the arrays' checksums.
        """
        counts = np.asarray(counts, dtype=np.float32)
        mask = np.asarray(mask, dtype=bool)
        path = self.product_path(obsid, slice_id, model, clamp)
        meta = dict(attrs)
        meta.update({"obsid": obsid, "slice_id": slice_id, "model": model, "clamp_mode": clamp})
        arrays = {"counts": counts, "mask": mask}
        if uncertainty is not None:
            sigma = np.asarray(uncertainty, dtype=np.float32)
            if sigma.shape != counts.shape:
                raise ValueError(f"uncertainty {sigma.shape} and counts {counts.shape} differ "
                                 "in shape")
            arrays["uncertainty"] = sigma
        meta["uncertainty"] = uncertainty is not None
        self._write_image_group(path, arrays, meta, dims=("dety", "detx"), record=record)
        return path

    # ------------------------------------------------------------------ reading
    def _read_checked(self, group: zarr.Group, name: str, path: str) -> np.ndarray:
        """Read a whole array and compare it with its recorded checksum.

        Raises
        ------
        StoreDamagedError
            The array does not decode (a truncated chunk) or differs from its checksum (a
            deleted chunk reads as fill values): names the group, suggests ``repair``.
        """
        where = f"{self.url.rstrip('/')}/{path}/{name}"
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

    def observation_attrs(self, obsid: str) -> dict[str, Any]:
        """Attributes of an observation group."""
        group = self._group(self.observation_path(obsid))
        if group is None:
            raise InputFileError(self.url, f"observation {obsid} not in the store")
        return dict(group.attrs)

    def read_slice_input(self, obsid: str, slice_id: str) -> SliceData:
        """Read a slice image back."""
        path = self.input_path(obsid, slice_id)
        group = self._group(path)
        if group is None or not group.attrs.get("complete", False):
            raise InputFileError(self.url, f"no complete slice {obsid}/{slice_id}")
        return SliceData(
            obsid=obsid,
            slice_id=slice_id,
            counts=self._read_checked(group, "counts", path),
            exposure=self._read_checked(group, "exposure", path),
            mask=self._read_checked(group, "mask", path),
            attrs=dict(group.attrs),
        )

    def read_product(self, obsid: str, slice_id: str, model: str, clamp: str) -> ProductData:
        """Read an enhanced product back."""
        path = self.product_path(obsid, slice_id, model, clamp)
        group = self._group(path)
        if group is None or not group.attrs.get("complete", False):
            raise InputFileError(
                self.url, f"no complete product {model}/{clamp} for {obsid}/{slice_id}"
            )
        return ProductData(
            obsid=obsid,
            slice_id=slice_id,
            key=product_key(model, clamp),
            counts=self._read_checked(group, "counts", path),
            mask=self._read_checked(group, "mask", path),
            attrs=dict(group.attrs),
            uncertainty=(self._read_checked(group, "uncertainty", path) if "uncertainty" in group
                         else None),
        )

    # ------------------------------------------------------------------ listing
    def list_observations(self) -> list[str]:
        """Observation groups present (complete or not)."""
        obs = self._group("obs")
        return sorted(obs.group_keys()) if obs is not None else []

    def list_slices(self, obsid: str) -> list[str]:
        """Slice groups present under an observation."""
        group = self._group(self.observation_path(obsid))
        return sorted(group.group_keys()) if group is not None else []

    def list_products(self, obsid: str, slice_id: str) -> list[str]:
        """Product keys present under a slice."""
        group = self._group(f"obs/{obsid}/{slice_id}/products")
        return sorted(group.group_keys()) if group is not None else []

    # ------------------------------------------------------------------ orphans
    def find_orphans(self) -> list[str]:
        """Groups left by an interrupted run: incomplete, or without their catalog row.

        An observation group is an orphan when it is incomplete or has no row in the
        ``observations`` catalog; a slice input when it has no ``slices`` row; a product
        when it is incomplete, has no ``products`` row, or announces an uncertainty
        (``attrs["uncertainty"]``) that it lacks.

        Returns
        -------
        list of str
            Group paths, parents before children.
        """
        obs_keys = {k[0] for k in self.catalog("observations").keys()}
        slice_keys = self.catalog("slices").keys()
        prod_paths = set(self.catalog("products").column("store_path").tolist())
        orphans: list[str] = []
        for obsid in self.list_observations():
            opath = self.observation_path(obsid)
            if obsid not in obs_keys or not self.is_complete(opath):
                orphans.append(opath)
                continue
            for sid in self.list_slices(obsid):
                if (obsid, sid) not in slice_keys:
                    orphans.append(f"{opath}/{sid}")
                    continue
                for key in self.list_products(obsid, sid):
                    ppath = f"{opath}/{sid}/products/{key}"
                    if ppath not in prod_paths or not self._product_whole(ppath):
                        orphans.append(ppath)
        return orphans

    def stray_catalog_groups(self) -> list[str]:
        """Catalog groups no longer (or not yet) referenced by the root attributes."""
        live = {v["path"] for v in self._catalog_state().values()}
        cats = self._group("catalogs")
        if cats is None:
            return []
        return sorted(
            f"catalogs/{k}" for k in cats.group_keys() if f"catalogs/{k}" not in live
        )

    def clean_orphans(self) -> list[str]:
        """Delete what :meth:`find_orphans` and :meth:`stray_catalog_groups` report.

        Driver only, before a run starts.
        """
        orphans = self.stray_catalog_groups() + self.find_orphans()
        for path in orphans:
            logger.info("removing orphan %s (left by an interrupted run)", path)
            self.delete(path)
        return orphans

    # ------------------------------------------------------------------ metadata
    def consolidate(self) -> None:
        """Consolidate the metadata (end of a run; the next write drops it again)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            zarr.consolidate_metadata(self.root.store, path=self.root.path or None)

    def invalidate_consolidated(self) -> None:
        """Drop stale consolidated metadata at the start of a run (driver only)."""
        self.root.attrs["writing"] = utcnow()
