"""Repair of a damaged product store: quarantine, mark for reprocessing, rebuild catalogs.

:func:`plan_repair` runs the deep check (:func:`~xsa_enhance.store.integrity.deep_check`)
and decides, for every finding:

- a damaged **product** (missing or garbled chunk, unreadable array): its group is moved to
  ``<store>/quarantine/<stamp>/`` and its ``products`` row removed, so the next run makes it
  again;
- a damaged **slice input** or **observation** group: the whole observation is quarantined
  and its rows removed from every catalog (``runs`` excepted), so the next run harvests and
  processes it again;
- an unreadable or altered **catalog column**: the catalog is rebuilt. ``observations``,
  ``slices`` and ``products`` are rebuilt from the per-group records (every complete group
  keeps its catalog row in its attributes, :data:`~xsa_enhance.store.zarr_store.RECORD_ATTR`);
  a group without a record (written by an older version) gets no row and the next run
  removes and redoes it. Other catalogs (the ``runs`` log) keep every block of rows that still
  reads back intact;
- a damaged **root** ``zarr.json``: it is moved to the quarantine and rewritten, with every
  catalog rebuilt as above (the run-level log of the root attributes is lost; the ``runs``
  catalog is salvaged).

:func:`apply_repair` carries the plan out under the writer lease, crash-safe in this order:
new catalog generations are written, then published in one write of the root attributes,
then the damaged groups are moved to the quarantine and the old generations deleted. A
repair killed half-way leaves either the old or the new catalogs published, and unreferenced
groups that the next run removes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from xsa_enhance._version import __version__
from xsa_enhance.errors import InputFileError
from xsa_enhance.store.catalog import CATALOG_NAMES, CATALOG_SCHEMAS, Catalog
from xsa_enhance.store.integrity import (
    BLOCK_ROWS,
    Finding,
    _keys,
    column_block_digests,
    deep_check,
    update_catalog_digests,
)
from xsa_enhance.store.lease import StoreLease, local_store_path

__all__ = ["RepairPlan", "RepairReport", "apply_repair", "plan_repair"]

logger = logging.getLogger(__name__)

#: Catalogs rebuilt from the groups' records (the others are salvaged block by block).
RECORDED = ("observations", "slices", "products")


@dataclass
class RepairPlan:
    """What :func:`apply_repair` would do.

    Attributes
    ----------
    store : str
        The store.
    findings : list of Finding
        The deep check's findings.
    quarantine : list of str
        Group paths to move aside (observations and products).
    drop_obsids : set of str
        Observations whose rows are removed (the next run processes them again).
    drop_products : set of str
        ``store_path`` of the product rows removed (the next run makes them again).
    rebuild : list of str
        Catalogs rebuilt.
    rebuild_root : bool
        Whether the root ``zarr.json`` is rewritten.
    """

    store: str
    findings: list[Finding] = field(default_factory=list)
    quarantine: list[str] = field(default_factory=list)
    drop_obsids: set[str] = field(default_factory=set)
    drop_products: set[str] = field(default_factory=set)
    rebuild: list[str] = field(default_factory=list)
    rebuild_root: bool = False

    @property
    def needed(self) -> bool:
        """Whether anything is damaged."""
        return bool(self.findings)

    def describe(self) -> list[str]:
        """One line per finding and per action."""
        lines = [f"damaged: {f.describe()} [{self.store}/{f.path}]" for f in self.findings]
        if self.rebuild_root:
            lines.append("rewrite the root zarr.json (run-level log lost; runs catalog kept)")
        for name in self.rebuild:
            how = "from the groups' records" if name in RECORDED else "keeping its intact rows"
            lines.append(f"rebuild catalog {name} {how}")
        for path in self.quarantine:
            lines.append(f"quarantine {path} (the next run makes it again)")
        return lines


@dataclass
class RepairReport:
    """What :func:`apply_repair` did."""

    plan: RepairPlan
    quarantined_to: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    lost_rows: dict[str, int] = field(default_factory=dict)
    without_record: list[str] = field(default_factory=list)


def plan_repair(url: str | os.PathLike[str]) -> RepairPlan:
    """Deep-check a store and plan its repair (nothing is written).

    Parameters
    ----------
    url : str or os.PathLike
        The store (a local folder).
    """
    plan = RepairPlan(store=os.fspath(url).rstrip("/"))
    plan.findings = deep_check(url)
    rebuild: set[str] = set()
    for f in plan.findings:
        if f.kind == "root":
            plan.rebuild_root = True
        elif f.kind == "catalog":
            rebuild.add(f.key.split(".", 1)[0])
        elif f.kind in ("observation", "slice"):
            obsid = f.key.split("/", 1)[0]
            plan.drop_obsids.add(obsid)
        elif f.kind == "product":
            plan.drop_products.add(f.path)
    if plan.rebuild_root:
        rebuild = set(CATALOG_NAMES)
    plan.rebuild = [n for n in CATALOG_NAMES if n in rebuild] + sorted(
        rebuild - set(CATALOG_NAMES))
    obs_paths = sorted(f"obs/{o}" for o in plan.drop_obsids)
    plan.drop_products = {p for p in plan.drop_products
                          if not any(p.startswith(o + "/") for o in obs_paths)}
    plan.quarantine = obs_paths + sorted(plan.drop_products)
    return plan


# ---------------------------------------------------------------------- rows
def _value(col: Any, value: Any) -> Any:
    if value is None:
        return col.fill_value
    if col.dtype == "str":
        return str(value)
    if col.dtype == "f8":
        return float(value)
    if col.dtype == "i8":
        return int(value)
    if col.dtype == "bool":
        return bool(value)
    return value


def _complete_row(name: str, record: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    row = {}
    for col in CATALOG_SCHEMAS[name]:
        row[col.name] = _value(col, {**record, **extra}.get(col.name))
    return row


def _group(root: zarr.Group, path: str) -> zarr.Group | None:
    try:
        node = root[path]
    except Exception:  # noqa: BLE001 - missing or damaged
        return None
    return node if isinstance(node, zarr.Group) else None


def _rows_from_records(root: zarr.Group, plan: RepairPlan, *, run_id: str, now: str,
                       report: RepairReport) -> dict[str, list[dict[str, Any]]]:
    """Catalog rows of every complete group with a record, skipping what is quarantined."""
    from xsa_enhance.store.zarr_store import RECORD_ATTR

    rows: dict[str, list[dict[str, Any]]] = {n: [] for n in RECORDED}
    base = {"run_id": run_id, "created": now}
    obs = _group(root, "obs")
    if obs is None:
        return rows
    for obsid in _keys(obs):
        opath = f"obs/{obsid}"
        if obsid in plan.drop_obsids:
            continue
        og = _group(root, opath)
        if og is None or not og.attrs.get("complete", False):
            continue
        rec = og.attrs.get(RECORD_ATTR)
        if not isinstance(rec, Mapping):
            report.without_record.append(opath)
            continue
        harvest = {"harvest_time": og.attrs.get("harvest_time", ""),
                   "harvest_status": og.attrs.get("harvest_status", "")}
        rows["observations"].append(_complete_row("observations", rec, {**base, **harvest}))
        for sid in _keys(og):
            ipath = f"{opath}/{sid}/input"
            ig = _group(root, ipath)
            if ig is not None and ig.attrs.get("complete", False):
                rec = ig.attrs.get(RECORD_ATTR)
                if isinstance(rec, Mapping):
                    rows["slices"].append(_complete_row("slices", rec, base))
                else:
                    report.without_record.append(ipath)
            prods = _group(root, f"{opath}/{sid}/products")
            if prods is None:
                continue
            for key in _keys(prods):
                ppath = f"{opath}/{sid}/products/{key}"
                if ppath in plan.drop_products:
                    continue
                pg = _group(root, ppath)
                if pg is None or not pg.attrs.get("complete", False):
                    continue
                rec = pg.attrs.get(RECORD_ATTR)
                if isinstance(rec, Mapping):
                    rows["products"].append(_complete_row("products", rec, base))
                else:
                    report.without_record.append(ppath)
    return rows


def _salvage(group: zarr.Group | None, name: str, nrows: int | None,
             digests: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Rows of the blocks of a catalog group whose every column reads back intact."""
    if group is None:
        return [], int(nrows or 0)
    cols = CATALOG_SCHEMAS.get(name, ())
    arrays: dict[str, Any] = {}
    for col in cols:
        try:
            arrays[col.name] = group[col.name]
        except Exception:  # noqa: BLE001 - a missing (late) or damaged column
            arrays[col.name] = None
    if nrows is None:  # root lost: the shortest column bounds the rows
        lengths = [a.shape[0] for a in arrays.values() if a is not None]
        nrows = min(lengths) if lengths else 0
    rows: list[dict[str, Any]] = []
    for start in range(0, nrows, BLOCK_ROWS):
        stop = min(nrows, start + BLOCK_ROWS)
        block: dict[str, list[Any]] = {}
        intact = True
        for col in cols:
            arr = arrays[col.name]
            if arr is None:
                block[col.name] = [col.fill_value] * (stop - start)
                continue
            try:
                values = np.asarray(arr[start:stop])
                if values.dtype.kind == "T" or values.dtype == object:
                    values = np.array([str(v) for v in values.tolist()], dtype=object)
                want = (digests.get(col.name) or [])
                k = start // BLOCK_ROWS
                if k < len(want) and column_block_digests(values)[0] != want[k]:
                    intact = False
                    break
                block[col.name] = [_value(col, v) for v in values.tolist()]
            except Exception:  # noqa: BLE001 - codec error: this block is lost
                intact = False
                break
        if not intact:
            continue
        rows.extend({c: block[c][i] for c in block} for i in range(stop - start))
    return rows, nrows - len(rows)


# ---------------------------------------------------------------------- apply
def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")


def apply_repair(plan: RepairPlan, *, wait_for_lock_s: float | None = 0.0) -> RepairReport:
    """Carry out a repair plan (local stores only), holding the store's writer lease.

    Returns
    -------
    RepairReport

    Raises
    ------
    InputFileError
        The store is not a local folder, or cannot be written.
    LeaseHeldError
        A run is writing the store.
    """
    folder = local_store_path(plan.store)
    if folder is None:
        raise InputFileError(plan.store, "repair works on local store folders only")
    report = RepairReport(plan=plan)
    if not plan.needed:
        return report
    stamp = _stamp()
    lease = StoreLease(folder, run_id=f"repair-{stamp}").acquire(wait_s=wait_for_lock_s)
    try:
        _apply(plan, folder, stamp, report)
    except OSError as exc:
        raise InputFileError(folder, f"cannot repair the store: {exc.strerror or exc}") from exc
    finally:
        lease.release()
    return report


def _apply(plan: RepairPlan, folder: Path, stamp: str, report: RepairReport) -> None:
    from xsa_enhance.store.zarr_store import STORE_FORMAT, utcnow

    qdir = folder / "quarantine" / stamp
    now = utcnow()
    run_id = f"repair-{stamp}"
    if plan.rebuild_root:
        qdir.mkdir(parents=True, exist_ok=True)
        meta = folder / "zarr.json"
        if meta.exists():
            os.replace(meta, qdir / "zarr.json")
        old_state: dict[str, Any] = {}
        old_attrs: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        root = zarr.open_group(str(folder), mode="a", zarr_format=3, use_consolidated=False)
    if not plan.rebuild_root:
        old_attrs = dict(root.attrs)
        old_state = {k: dict(v) for k, v in (old_attrs.get("catalogs") or {}).items()}
    cats = root.require_group("catalogs")
    existing = _keys(cats)

    def next_gen(name: str) -> int:
        gens = [int(k.rsplit(".", 1)[1]) for k in existing
                if k.rsplit(".", 1)[0] == name and k.rsplit(".", 1)[1].isdigit()]
        return max(gens, default=-1) + 1

    def old_group(name: str) -> tuple[zarr.Group | None, int | None, dict[str, Any]]:
        entry = old_state.get(name)
        if entry is not None:
            return _group(root, str(entry["path"])), int(entry["nrows"]), dict(
                entry.get("digests") or {})
        gens = [k for k in existing if k.rsplit(".", 1)[0] == name]
        if not gens:
            return None, 0, {}
        newest = max(gens, key=lambda k: int(k.rsplit(".", 1)[1]))
        return _group(cats, newest), None, {}

    recorded = None
    if any(n in RECORDED for n in plan.rebuild):
        recorded = _rows_from_records(root, plan, run_id=run_id, now=now, report=report)
    state = dict(old_state)
    replaced: list[str] = []
    names = list(dict.fromkeys(list(CATALOG_NAMES) + list(old_state)))
    for name in names:
        rebuild = name in plan.rebuild
        touched = name in RECORDED and (plan.drop_obsids or plan.drop_products)
        if not rebuild and not touched:
            continue
        group, nrows, digests = old_group(name)
        if rebuild and name in RECORDED and recorded is not None:
            rows = recorded[name]
            if nrows is not None:
                report.lost_rows[name] = max(0, nrows - len(rows))
        else:
            rows, lost = _salvage(group, name, nrows, digests)
            if lost:
                report.lost_rows[name] = lost
            if name in RECORDED:
                rows = [r for r in rows if str(r.get("obsid")) not in plan.drop_obsids
                        and str(r.get("store_path")) not in plan.drop_products]
        if name not in CATALOG_SCHEMAS:
            logger.warning("catalog %s is not known to this version: left as it is", name)
            continue
        gen = next_gen(name)
        new = Catalog.create(cats, name, group_name=f"{name}.{gen}")
        n = new.write_rows(rows) if rows else 0
        entry = {"path": f"catalogs/{name}.{gen}", "nrows": n}
        update_catalog_digests(new.group, entry, 0)
        if name in old_state:
            replaced.append(str(old_state[name]["path"]))
        state[name] = entry
        report.rows[name] = n
    log = list(old_attrs.get("repairs") or [])
    log.append({"repaired": now, "software_version": __version__,
                "findings": [f.describe()[:300] for f in plan.findings[:200]],
                "quarantine": f"quarantine/{stamp}" if plan.quarantine or plan.rebuild_root
                else "",
                "rebuilt": list(plan.rebuild), "root_rewritten": plan.rebuild_root})
    if plan.rebuild_root:
        root.attrs.put({"xsa_enhance_store": STORE_FORMAT, "software_version": __version__,
                        "created": now, "catalogs": state, "runs": [], "repairs": log,
                        "writing": now})
        root.require_group("obs")
    else:
        # one atomic write publishes the new catalogs and the repair log
        root.attrs.update({"catalogs": state, "repairs": log, "writing": now})
    # now nothing references the damaged groups: move them aside
    for path in plan.quarantine:
        src = folder / path
        if src.exists():
            dst = qdir / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    if plan.quarantine or plan.rebuild_root:
        report.quarantined_to = str(qdir)
        (qdir / "README.txt").write_text(
            "Moved here by `xsa-enhance repair --apply` on " + now + ":\n"
            + "\n".join(plan.describe()) + "\n", encoding="utf-8")
    live = {str(v["path"]) for v in state.values()}
    for path in replaced:
        if path not in live:
            shutil.rmtree(folder / path, ignore_errors=True)
    if plan.rebuild_root:  # unreferenced older generations
        for key in existing:
            if f"catalogs/{key}" not in live:
                shutil.rmtree(folder / "catalogs" / key, ignore_errors=True)
    # the consolidated metadata went with the rewritten root attributes: consolidate again
    from xsa_enhance.store.zarr_store import ProductStore

    ProductStore(folder, mode="r+").consolidate()
