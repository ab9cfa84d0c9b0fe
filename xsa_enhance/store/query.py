"""Catalog queries (astropy Tables); the filters and the export formats they use.

``query_catalog`` filters one catalog of a product store; the ``slices`` and ``products``
catalogs are joined with the pointing and observation date of their observation so that
cone searches and date filters work on all of them. The filter values are checked by
:mod:`~xsa_enhance.store.query_filters` (a wrong value is a one-line
:class:`~xsa_enhance.errors.ConfigError` naming the valid choices, never an empty answer);
the tables are written by :mod:`~xsa_enhance.store.table_formats`, whose public names are
re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from xsa_enhance.errors import ConfigError
from xsa_enhance.store import spatial
from xsa_enhance.store.catalog import CATALOG_KEYS, CATALOG_NAMES
from xsa_enhance.store.query_filters import (
    STATUSES,
    after,
    clamp_filter,
    model_filter,
    obsid_filter,
    parse_cone,
    parse_time,
)
from xsa_enhance.store.table_formats import (
    BINARY_FORMATS,
    COLUMN_UCDS,
    EXPORT_FORMATS,
    TIME_COLUMNS,
    annotate,
    format_table,
    write_table,
)
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["EXPORT_FORMATS", "BINARY_FORMATS", "STATUSES", "COLUMN_UCDS", "TIME_COLUMNS",
           "query_catalog", "write_table", "format_table", "parse_cone", "model_filter"]

logger = logging.getLogger(__name__)

_TIME_COLUMN = {
    "observations": "created",
    "slices": "created",
    "products": "created",
    "sources": "created",
    "runs": "finished",
}


def query_catalog(
    store: ProductStore | str | Path,
    *,
    catalog: str = "products",
    cone: Sequence[object] | None = None,
    obsid: str | Sequence[str] | None = None,
    exposure_ks: float | None = None,
    model: str | None = None,
    clamp: str | None = None,
    since: str | None = None,
    status: str | None = None,
    observed_after: str | None = None,
    observed_before: str | None = None,
    min_signif: float | None = None,
    min_rate: float | None = None,
) -> Table:
    """Select rows of one catalog.

    Parameters
    ----------
    store : ProductStore or str or pathlib.Path
        The product store (opened read-only when a path is given).
    catalog : {"products", "slices", "observations", "sources", "runs"}
        Which catalog to query.
    cone : sequence, optional
        ``(ra, dec, radius)`` or ``(position, radius)`` as read by :func:`parse_cone`
        (degrees, sexagesimal strings, a SkyCoord or an object name): keep rows whose
        observation pointing (for ``sources``: the source position) lies within the radius.
    obsid : str or sequence of str, optional
        Keep these observations only (each must be ten digits).
    exposure_ks : float, optional
        Keep slices / products of this nominal slice exposure (ks).
    model : str, optional
        Keep products of this model (``NAME-vN``) or alias (``NAME``: every version); it
        must be in the catalog or the model registry (``products`` only).
    clamp : str, optional
        Keep products of this clamp mode: a family (``constant``, ``quantile``, ``none``)
        or an exact mode (``quantile:0.9999``) (``products`` only).
    since : str, optional
        Keep rows committed at or after this UTC date/time (ISO 8601).
    status : str, optional
        Keep rows with this status (``observations``: ok, skipped; ``runs``: ok, failed,
        skipped).
    observed_after, observed_before : str, optional
        Keep rows of observations whose exposure started (``date_obs``) at or after / before
        this date (ISO 8601; not ``runs``).
    min_signif, min_rate : float, optional
        Keep sources with at least this significance / count rate (``sources`` only).

    Returns
    -------
    astropy.table.Table
        The matching rows with units, descriptions and UCDs (``col.meta["ucd"]``), sorted by
        the catalog's key (the runs log by time); ``ra_pnt``/``dec_pnt``/``date_obs`` are
        joined in for ``slices`` and ``products``.

    Raises
    ------
    ConfigError
        For a filter that does not apply to the catalog or a value that does not exist: one
        line naming the valid choices.
    """
    if catalog not in CATALOG_NAMES:
        raise ConfigError(f"unknown catalog {catalog!r}; choose one of {', '.join(CATALOG_NAMES)}")
    if (model is not None or clamp is not None) and catalog not in ("products", "sources"):
        raise ConfigError("--model and --clamp filter the products and sources catalogs only")
    if exposure_ks is not None and catalog not in ("slices", "products", "sources"):
        raise ConfigError("--exposure filters the slices, products and sources catalogs only")
    if (min_signif is not None or min_rate is not None) and catalog != "sources":
        raise ConfigError("--min-signif and --min-rate filter the sources catalog only")
    if status is not None:
        if catalog not in STATUSES:
            raise ConfigError("--status filters the observations and runs catalogs only")
        if str(status) not in STATUSES[catalog]:
            raise ConfigError(f"unknown status {status!r} for the {catalog} catalog; choose one "
                              f"of {', '.join(STATUSES[catalog])}")
    if (observed_after is not None or observed_before is not None) and catalog == "runs":
        raise ConfigError("--observed-after/--observed-before do not apply to the runs catalog "
                          "(query observations, slices or products)")
    if cone is not None and catalog == "runs":
        raise ConfigError("--cone does not apply to the runs catalog")
    if exposure_ks is not None and not (math.isfinite(float(exposure_ks)) and exposure_ks > 0):
        raise ConfigError(f"bad --exposure {exposure_ks!r}: need a positive number of ks")
    wanted_obsids = obsid_filter(obsid) if obsid is not None else None
    centre_radius = parse_cone(cone) if cone is not None else None
    t_since = parse_time(since, "--since") if since is not None else None
    t_after = parse_time(observed_after, "--observed-after") if observed_after else None
    t_before = parse_time(observed_before, "--observed-before") if observed_before else None
    if not isinstance(store, ProductStore):
        store = ProductStore(store, mode="r")
    cat = store.catalog(catalog)
    own_sky = centre_radius is not None and spatial.sky_columns(cat) is not None
    if own_sky:  # a catalog with its own positions: the spatial index selects the cone
        c0, r0 = centre_radius
        try:
            table = spatial.cone_table(cat, float(c0.ra.deg), float(c0.dec.deg),
                                       float(r0.to_value(u.deg)))
        except ValueError as exc:
            raise ConfigError(f"{exc}") from exc
    else:
        table = cat.read()
    keep = np.ones(len(table), dtype=bool)

    if catalog in ("slices", "products"):
        obs = store.catalog("observations").read()
        info = {str(o): (float(r), float(d), str(t)) for o, r, d, t in
                zip(obs["obsid"], obs["ra_pnt"], obs["dec_pnt"], obs["date_obs"])}
        missing = (np.nan, np.nan, "")
        table["ra_pnt"] = np.array([info.get(str(o), missing)[0] for o in table["obsid"]],
                                   dtype=float) * u.deg
        table["dec_pnt"] = np.array([info.get(str(o), missing)[1] for o in table["obsid"]],
                                    dtype=float) * u.deg
        table["date_obs"] = np.array([info.get(str(o), missing)[2] for o in table["obsid"]],
                                     dtype=str) if len(table) else np.zeros(0, dtype="U1")
        table["ra_pnt"].description = "pointing right ascension of the observation"
        table["dec_pnt"].description = "pointing declination of the observation"
        table["date_obs"].description = ("start of the observation's exposure (DATE-OBS of "
                                         "the event list, ISO 8601)")
    elif catalog == "sources" and (observed_after is not None or observed_before is not None):
        obs = store.catalog("observations").read()
        dates = {str(o): str(t) for o, t in zip(obs["obsid"], obs["date_obs"])}
        table["date_obs"] = np.array([dates.get(str(o), "") for o in table["obsid"]],
                                     dtype=str) if len(table) else np.zeros(0, dtype="U1")
    if centre_radius is not None and len(table) and not own_sky:
        centre, radius = centre_radius
        ra = np.asarray(table["ra_pnt"], dtype=float)
        dec = np.asarray(table["dec_pnt"], dtype=float)
        finite = np.isfinite(ra) & np.isfinite(dec)
        sep = np.full(len(table), np.inf)
        if finite.any():
            sep[finite] = centre.separation(
                SkyCoord(ra[finite] * u.deg, dec[finite] * u.deg)).deg
        keep &= sep <= float(radius.to_value(u.deg))
    if wanted_obsids is not None:
        keep &= np.isin(np.asarray(table["obsid"], dtype=str), sorted(wanted_obsids))
    if exposure_ks is not None:
        keep &= np.isclose(np.asarray(table["length_ks"], dtype=float), float(exposure_ks))
    if model is not None and catalog == "sources" and str(model).strip() == "input":
        keep &= np.asarray(table["model"], dtype=str) == "input"
    elif model is not None:
        names = model_filter(model, np.asarray(table["model"], dtype=str).tolist(),
                             where=f"the {catalog} catalog of {store.url}")
        keep &= np.isin(np.asarray(table["model"], dtype=str), sorted(names))
    if clamp is not None:
        keep &= clamp_filter(clamp, np.asarray(table["clamp_mode"], dtype=str))
    if status is not None:
        keep &= np.asarray(table["status"], dtype=str) == status
    if t_since is not None and len(table):
        keep &= after(table[_TIME_COLUMN[catalog]], t_since)
    if t_after is not None and len(table):
        keep &= after(table["date_obs"], t_after)
    if t_before is not None and len(table):
        keep &= after(table["date_obs"], t_before, before=True)
    if min_signif is not None:
        keep &= np.nan_to_num(np.asarray(table["signif"], dtype=float), nan=-np.inf) >= min_signif
    if min_rate is not None:
        keep &= np.nan_to_num(np.asarray(table["rate"], dtype=float), nan=-np.inf) >= min_rate
    out = table[keep]
    # a stable order whatever the order of the commits: by key (the runs log by time)
    order = list(CATALOG_KEYS[catalog]) or ["finished", "obsid"]
    if len(out):
        out.sort(order)
    annotate(out)
    out.meta["catalog"] = catalog
    out.meta["store"] = store.url
    logger.debug("query %s: %d of %d rows", catalog, len(out), len(table))
    return out


