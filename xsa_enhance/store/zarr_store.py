"""The Zarr v3 product store: slice images, enhanced products and catalogs.

:class:`ProductStore` is the one handle on a store; the knowledge behind it lives in modules
named for what they hold:

- :mod:`~xsa_enhance.store.layout`: group paths, keys and attribute conventions (the layout
  on disk);
- :mod:`~xsa_enhance.store.image_groups`: the write protocol of image groups (complete
  flag, checksums, records) and their checked reads;
- :mod:`~xsa_enhance.store.catalog_commits`: the catalog state and the commits that publish
  rows;
- :mod:`~xsa_enhance.store.run_log`: the run-level records;
- :mod:`~xsa_enhance.store.orphans`: what an interrupted run leaves behind.

The public names of those modules that callers used from here are re-exported.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from xsa_enhance._version import __version__
from xsa_enhance.errors import InputFileError
from xsa_enhance.store import catalog_commits, image_groups, layout, orphans, run_log
from xsa_enhance.store.catalog import Catalog
from xsa_enhance.store.image_groups import ProductData, SliceData
from xsa_enhance.store.integrity import StoreDamagedError
from xsa_enhance.store.layout import (
    RECORD_ATTR,
    STORE_FORMAT,
    VOLATILE_ROW_FIELDS,
    group_record,
    product_key,
    slice_key,
    utcnow,
)

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
            state = catalog_commits.create_catalogs(self.root)
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
        return catalog_commits.catalog_state(self.root, self.url)

    def catalog(self, name: str) -> Catalog:
        """Return one catalog (``observations``, ``slices``, ``products``, ``runs``).

        The catalog shows the rows published when the store was opened or last committed
        through this handle.
        """
        return catalog_commits.open_catalog(self.root, self.url, name, writable=self.mode != "r")

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
        return catalog_commits.commit_rows(self.root, self.url, rows, run_id=run_id)

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
        return catalog_commits.remove_observation_rows(self.root, self.url, obsids)

    # ------------------------------------------------------------------ run log
    @property
    def run_log(self) -> list[dict[str, Any]]:
        """Run-level records kept in the root attributes (one per run)."""
        return run_log.run_log(self.root)

    def record_run(self, record: Mapping[str, Any]) -> None:
        """Add or replace (by ``run_id``) a run-level record (driver only)."""
        run_log.record_run(self.root, record)

    def mark_interrupted_runs(self, *, except_run: str) -> list[str]:
        """Mark runs still logged ``running`` (other than ``except_run``) as ``interrupted``.

        Only the holder of the writer lease may call this: no other run can be alive then,
        so a ``running`` record is what a killed run left. Returns their run ids.
        """
        return run_log.mark_interrupted_runs(self.root, except_run=except_run)

    def last_successful_run(self) -> dict[str, Any] | None:
        """The latest run that finished (status ``finished``), or ``None``."""
        return run_log.last_successful_run(self.root)

    # ------------------------------------------------------------------ paths
    observation_path = staticmethod(layout.observation_path)
    input_path = staticmethod(layout.input_path)
    product_path = staticmethod(layout.product_path)

    def _group(self, path: str) -> zarr.Group | None:
        return layout.find_group(self.root, path)

    def exists(self, path: str) -> bool:
        """Whether a group exists at ``path``."""
        return self._group(path) is not None

    def is_complete(self, path: str) -> bool:
        """Whether the group at ``path`` exists and was marked complete."""
        return image_groups.is_complete(self.root, path)

    def delete(self, path: str) -> None:
        """Remove the group at ``path`` and everything below it (no error when absent)."""
        if layout.delete_group(self.root, path):
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
        meta = dict(layout.jsonable(dict(attrs)))
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
            update[RECORD_ATTR] = group_record(record)
        group.attrs.update(update)

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
        image_groups.write_image_group(
            self.root,
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
        image_groups.write_image_group(self.root, path, arrays, meta, dims=("dety", "detx"), record=record)
        return path

    # ------------------------------------------------------------------ reading
    def _read_checked(self, group: zarr.Group, name: str, path: str) -> np.ndarray:
        """Read a whole array against its checksum (see :func:`image_groups.read_checked`)."""
        return image_groups.read_checked(group, name, f"{self.url.rstrip('/')}/{path}/{name}")

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
        return orphans.find_orphans(self)

    def stray_catalog_groups(self) -> list[str]:
        """Catalog groups no longer (or not yet) referenced by the root attributes."""
        return orphans.stray_catalog_groups(self)

    def clean_orphans(self) -> list[str]:
        """Delete what :meth:`find_orphans` and :meth:`stray_catalog_groups` report.

        Driver only, before a run starts.
        """
        found = self.stray_catalog_groups() + self.find_orphans()
        for path in found:
            logger.info("removing orphan %s (left by an interrupted run)", path)
            self.delete(path)
        return found

    # ------------------------------------------------------------------ metadata
    def consolidate(self) -> None:
        """Consolidate the metadata (end of a run; the next write drops it again)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            zarr.consolidate_metadata(self.root.store, path=self.root.path or None)

    def invalidate_consolidated(self) -> None:
        """Drop stale consolidated metadata at the start of a run (driver only)."""
        self.root.attrs["writing"] = utcnow()
