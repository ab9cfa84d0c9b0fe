"""Checking a whole product store against the catalog and product-attribute schemas."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from xsa_enhance.config.schemas import available_schemas
from xsa_enhance.config.validate import ValidationIssue, validate_data
from xsa_enhance.errors import ConfigError

__all__ = ["is_product_store", "validate_store"]

logger = logging.getLogger(__name__)

PRODUCT_SCHEMA = "product-attributes"


def is_product_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a local folder holding an xsa-enhance product store.

    Parameters
    ----------
    path : str or os.PathLike
        A folder.
    """
    meta = Path(path) / "zarr.json"
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "xsa_enhance_store" in (doc.get("attributes") or {})


def _relocate(issue: ValidationIssue, *, file: str, prefix: str = "") -> ValidationIssue:
    location = issue.location
    if prefix:
        location = prefix + location[1:] if location.startswith("$") else prefix + location
    return ValidationIssue(location, issue.message, file)


def _check_uncertainty_arrays(store: Any, rows: list[dict[str, Any]],
                              base: str) -> list[ValidationIssue]:
    """Products whose row announces an uncertainty: the array exists, shaped as counts."""
    issues: list[ValidationIssue] = []
    for i, row in enumerate(rows):
        try:
            n = int(row.get("uncertainty_samples") or 0)
        except (TypeError, ValueError):
            continue  # the schema check reports it
        if n <= 0:
            continue
        path = str(row.get("store_path", ""))
        where = f"{base}/catalogs/products"
        loc = f"$[{i}].uncertainty_samples"
        try:
            group = store.root[path]
            counts_shape = tuple(group["counts"].shape)
        except KeyError:
            issues.append(ValidationIssue(loc, f"product group {path} (or its counts) missing",
                                          where))
            continue
        if "uncertainty" not in group:
            issues.append(ValidationIssue(
                loc, f"{n} uncertainty samples but product {path} has no uncertainty array",
                where))
            continue
        shape = tuple(group["uncertainty"].shape)
        if shape != counts_shape:
            issues.append(ValidationIssue(
                loc, f"uncertainty array of {path} has shape {shape}, its counts "
                     f"{counts_shape}", where))
    return issues


def validate_store(
    url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> list[ValidationIssue]:
    """Check every catalog row and every product's attributes of a product store.

    Catalog ``<name>`` rows are checked against ``schemas/catalog-<name>.schema.json`` (the
    issue's file is ``<store>/catalogs/<name>`` and its location ``$[row].column``); the
    attributes of every complete product group against
    ``schemas/product-attributes.schema.json`` (file: the group's path). Groups left
    incomplete by an interrupted run are reported too (the next run removes them). A product
    whose catalog row says it has an uncertainty (``uncertainty_samples > 0``) must hold an
    ``uncertainty`` array of the shape of its ``counts``.

    Parameters
    ----------
    url : str or os.PathLike
        The store (local path or fsspec URL).
    storage_options : dict, optional
        fsspec options for remote stores.

    Returns
    -------
    list of ValidationIssue
        Empty when everything conforms.

    Raises
    ------
    InputFileError
        If ``url`` is not a product store.
    """
    from xsa_enhance.store import CATALOG_NAMES, ProductStore

    base = os.fspath(url).rstrip("/")
    store = ProductStore(base, mode="r", storage_options=storage_options)
    known = available_schemas()
    issues: list[ValidationIssue] = []

    for name in CATALOG_NAMES:
        schema = f"catalog-{name}"
        if schema not in known:
            logger.info("no schema %s: catalog %s not checked", schema, name)
            continue
        where = f"{base}/catalogs/{name}"
        rows = store.catalog(name).rows()
        for i, row in enumerate(rows):
            for issue in validate_data(row, schema=schema):
                issues.append(_relocate(issue, file=where, prefix=f"$[{i}]"))
        if name == "products":
            issues.extend(_check_uncertainty_arrays(store, rows, base))

    if PRODUCT_SCHEMA not in known:
        raise ConfigError(f"no {PRODUCT_SCHEMA} schema among {', '.join(known)}")
    for obsid in store.list_observations():
        for slice_id in store.list_slices(obsid):
            for key in store.list_products(obsid, slice_id):
                path = f"obs/{obsid}/{slice_id}/products/{key}"
                where = f"{base}/{path}"
                if not store.is_complete(path):
                    issues.append(
                        ValidationIssue(
                            "$.complete",
                            "incomplete product left by an interrupted run (the next run "
                            "removes it)",
                            where,
                        )
                    )
                    continue
                attrs = dict(store.root[path].attrs)
                for issue in validate_data(attrs, schema=PRODUCT_SCHEMA):
                    issues.append(_relocate(issue, file=where))
    return issues
