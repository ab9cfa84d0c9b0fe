"""The store's records: catalog rows and slice keys, built from the catalogs' column tables.

Every row the store publishes is checked here against its column table
(:data:`~xsa_enhance.store.catalog.CATALOG_SCHEMAS`) before it is written into a group's
attributes or handed to the driver, and every slice key is made by :func:`image_slice_id`.
The columns the driver fills at commit (:data:`COMMIT_COLUMNS`) are left out of the rows.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from xsa_enhance.store.catalog import CATALOG_SCHEMAS
from xsa_enhance.store.layout import slice_key

__all__ = [
    "COMMIT_COLUMNS",
    "catalog_row",
    "float_or_nan",
    "image_slice_id",
    "pointing_fields",
    "source_rows",
    "uncertainty_summary",
]

logger = logging.getLogger(__name__)

#: Columns the driver fills when it commits a row (``runs`` rows carry their own ``run_id``).
COMMIT_COLUMNS: frozenset[str] = frozenset({"run_id", "created"})


def catalog_row(catalog: str, **values: Any) -> dict[str, Any]:
    """One row of a catalog, checked against the catalog's column table.

    Parameters
    ----------
    catalog : str
        Catalog name (a key of :data:`~xsa_enhance.store.catalog.CATALOG_SCHEMAS`).
    **values
        A value for every column but :data:`COMMIT_COLUMNS` (filled in at commit), in the
        order wanted in the group's record.

    Returns
    -------
    dict
        The row (``values`` as given).

    Raises
    ------
    ValueError
        For an unknown catalog, a missing column or an unknown one.
    """
    if catalog not in CATALOG_SCHEMAS:
        raise ValueError(f"unknown catalog {catalog!r}; expected one of {tuple(CATALOG_SCHEMAS)}")
    names = {c.name for c in CATALOG_SCHEMAS[catalog]}
    if catalog != "runs":
        names -= COMMIT_COLUMNS
    missing = names - set(values)
    extra = set(values) - names
    if missing or extra:
        raise ValueError(f"catalog {catalog}: row has missing columns {sorted(missing)} and "
                         f"unknown columns {sorted(extra)}")
    return dict(values)


def source_rows(table: Any, *, base: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Rows of the ``sources`` catalog from a detection table.

    Parameters
    ----------
    table : astropy.table.Table
        Columns of :data:`xsa_enhance.detect.find.SOURCE_COLUMNS` (``ID``, ``X``, ``Y``,
        ``RA``, ``DEC``, ``RATE``, ``RATE_ERR``, ``SIGNIF``, ``DET_SIGNIF``, ``EXTENT``,
        ``POINTLIKE``, ``FLAGS``).
    base : dict
        ``obsid``, ``expidstr``, ``slice_id``, ``length_ks``, ``model``, ``clamp_mode``.
    kind : str
        ``input``, ``dn`` or ``sr``.

    Returns
    -------
    list of dict
        Rows without ``run_id`` / ``created`` (filled in at commit).
    """
    return [catalog_row(
        "sources", **base, kind=kind, source_id=int(r["ID"]), x=float(r["X"]),
        y=float(r["Y"]), ra=float(r["RA"]), dec=float(r["DEC"]), rate=float(r["RATE"]),
        rate_err=float(r["RATE_ERR"]), signif=float(r["SIGNIF"]),
        det_signif=float(r["DET_SIGNIF"]), extent=float(r["EXTENT"]),
        pointlike=bool(r["POINTLIKE"]), flags=int(r["FLAGS"]),
    ) for r in table]


def image_slice_id(image: Any) -> str:
    """Store key of a :class:`~xsa_enhance.events.SliceImage`.

    ``<expid>_<length>ks_<index>`` (:func:`~xsa_enhance.store.layout.slice_key`), or
    ``<expid>_full_000`` for the image of the whole clean exposure; an image on another grid
    than ``1x`` gets the grid's name appended (``S003_020ks_001_2x``).

    Parameters
    ----------
    image : SliceImage
        With ``expidstr``, ``length_ks`` (None: the whole exposure), ``index`` and ``grid``.

    Returns
    -------
    str
    """
    length = image.length_ks
    if length is None:
        key = f"{image.expidstr}_full_000"
    else:
        key = slice_key(image.expidstr, int(round(float(length))), int(image.index))
    if image.grid.name != "1x":
        key = f"{key}_{image.grid.name}"
    return key


def pointing_fields(obsid: str, processed: Any) -> dict[str, Any]:
    """Fields shared by an observation's group attributes, its row and its slices' attributes.

    Parameters
    ----------
    obsid : str
        Observation identifier.
    processed : ProcessedObservation
        The events stage's result (pointing, filter, submode, date).

    Returns
    -------
    dict
    """
    return {
        "obsid": obsid,
        "expidstr": processed.expidstr,
        "ra_pnt": float(processed.ra_pnt),
        "dec_pnt": float(processed.dec_pnt),
        "pa_pnt": float(processed.pa_pnt),
        "filter": str(processed.filter),
        "submode": str(processed.submode),
        "date_obs": str(processed.date_obs),
    }


def uncertainty_summary(counts: np.ndarray, sigma: np.ndarray | None,
                        mask: np.ndarray) -> dict[str, float]:
    """Summary columns of a product's uncertainty (products catalog).

    Parameters
    ----------
    counts, sigma : numpy.ndarray
        Enhanced counts and their 1-sigma uncertainty (same grid); ``sigma`` None: no
        uncertainty (both values NaN).
    mask : numpy.ndarray
        Output-grid mask; only pixels inside it count.

    Returns
    -------
    dict
        ``flux_fraction_below_3sigma``: the fraction of the output flux (positive counts
        inside the mask) in pixels whose ``output / sigma < 3`` (a pixel with ``sigma == 0``
        and positive output is not below 3 sigma; NaN when there is no flux);
        ``median_significance``: the median of ``output / sigma`` over the mask pixels with
        ``sigma > 0`` (NaN when none).
    """
    nan = float("nan")
    if sigma is None:
        return {"flux_fraction_below_3sigma": nan, "median_significance": nan}
    m = np.asarray(mask, dtype=bool)
    c = np.asarray(counts, dtype=np.float64)[m]
    s = np.asarray(sigma, dtype=np.float64)[m]
    flux = np.clip(c, 0.0, None)
    pos = s > 0
    z = np.where(pos, c / np.where(pos, s, 1.0), np.inf)
    total = float(flux.sum())
    below = float(flux[z < 3.0].sum())
    return {
        "flux_fraction_below_3sigma": below / total if total > 0 else nan,
        "median_significance": float(np.median(z[pos])) if np.any(pos) else nan,
    }


def float_or_nan(value: Any) -> float:
    """``float(value)``, or NaN when it is not a number (missing provenance values)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")

