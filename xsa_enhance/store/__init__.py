"""Zarr v3 product store, catalogs, queries and exports.

See ``docs/store.md`` for the layout and the write rules.
"""

from xsa_enhance.store.catalog import CATALOG_NAMES, CATALOG_SCHEMAS, Catalog, Column
from xsa_enhance.store.zarr_store import (
    ProductData,
    ProductStore,
    SliceData,
    product_key,
    slice_key,
    utcnow,
)

__all__ = [
    "CATALOG_NAMES",
    "CATALOG_SCHEMAS",
    "Catalog",
    "Column",
    "ProductData",
    "ProductStore",
    "SliceData",
    "product_key",
    "slice_key",
    "utcnow",
]
