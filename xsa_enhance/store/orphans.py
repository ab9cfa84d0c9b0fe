"""Orphans of interrupted runs: groups the catalogs do not vouch for.

A group that is not complete, or complete but without a catalog row, is an *orphan* of an
interrupted run, and so is a catalog generation group the root attributes do not reference;
:meth:`ProductStore.clean_orphans` removes them (driver only, before a run resumes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from xsa_enhance.store.catalog_commits import catalog_state
from xsa_enhance.store.image_groups import is_complete, product_whole
from xsa_enhance.store.layout import find_group

if TYPE_CHECKING:
    from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["find_orphans", "stray_catalog_groups"]

logger = logging.getLogger(__name__)


def find_orphans(store: ProductStore) -> list[str]:
    """Groups left by an interrupted run (see :meth:`ProductStore.find_orphans`).

    Parameters
    ----------
    store : ProductStore
        The store.

    Returns
    -------
    list of str
        Group paths, parents before children.
    """
    obs_keys = {k[0] for k in store.catalog("observations").keys()}
    slice_keys = store.catalog("slices").keys()
    prod_paths = set(store.catalog("products").column("store_path").tolist())
    orphans: list[str] = []
    for obsid in store.list_observations():
        opath = store.observation_path(obsid)
        if obsid not in obs_keys or not is_complete(store.root, opath):
            orphans.append(opath)
            continue
        for sid in store.list_slices(obsid):
            if (obsid, sid) not in slice_keys:
                orphans.append(f"{opath}/{sid}")
                continue
            for key in store.list_products(obsid, sid):
                ppath = f"{opath}/{sid}/products/{key}"
                if ppath not in prod_paths or not product_whole(store.root, ppath):
                    orphans.append(ppath)
    return orphans


def stray_catalog_groups(store: ProductStore) -> list[str]:
    """Catalog groups no longer (or not yet) referenced by the root attributes."""
    live = {v["path"] for v in catalog_state(store.root, store.url).values()}
    cats = find_group(store.root, "catalogs")
    if cats is None:
        return []
    return sorted(
        f"catalogs/{k}" for k in cats.group_keys() if f"catalogs/{k}" not in live
    )
