"""Catalog queries (astropy Tables) and table exports.

``query_catalog`` filters one catalog of a product store; the ``slices`` and ``products``
catalogs are joined with the pointing and observation date of their observation so that
cone searches and date filters work on all of them. Every filter value is checked against
what exists (obsid format, models and aliases, clamp syntax, sky ranges, statuses, dates):
a wrong value is a one-line :class:`~xsa_enhance.errors.ConfigError` naming the valid
choices, never an empty answer.

Exports keep units, descriptions and UCDs (IVOA Unified Content Descriptors): FITS tables
carry ``TUNITn``, ``TCOMMn`` and ``TUCDn`` (plus astropy's own metadata), VOTables ``unit``,
``ucd`` and ``DESCRIPTION``, Parquet astropy's table metadata, ECSV its YAML header.
Observation ids stay 10-character strings; times are ISO 8601 UTC strings that
:class:`astropy.time.Time` parses (VOTable ``xtype="timestamp"``, UCD ``time.epoch``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table
from astropy.time import Time

from xsa_enhance.errors import ConfigError, ObservationError
from xsa_enhance.obsid import validate_obsid
from xsa_enhance.store import spatial
from xsa_enhance.store.catalog import CATALOG_KEYS, CATALOG_NAMES
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["EXPORT_FORMATS", "BINARY_FORMATS", "STATUSES", "COLUMN_UCDS", "TIME_COLUMNS",
           "query_catalog", "write_table", "format_table", "parse_cone", "model_filter"]

logger = logging.getLogger(__name__)

#: Output formats of :func:`write_table` / ``xsa-enhance catalog query --format``.
EXPORT_FORMATS: tuple[str, ...] = ("table", "csv", "ecsv", "json", "votable", "fits", "parquet")

#: Formats written as bytes (refused on a terminal by the CLI).
BINARY_FORMATS: tuple[str, ...] = ("fits", "parquet")

#: Status values each catalog can hold (``--status`` accepts only these).
STATUSES: dict[str, tuple[str, ...]] = {
    "observations": ("ok", "skipped"),
    "runs": ("ok", "failed", "skipped"),
}

#: Columns holding times (ISO 8601 strings, UTC; ``date_obs`` is the exposure start).
TIME_COLUMNS: tuple[str, ...] = ("date_obs", "harvest_time", "pps_proc_date", "created",
                                 "started", "finished")

#: UCDs (IVOA UCD1+) of the catalog columns, written into VOTable and FITS exports.
COLUMN_UCDS: dict[str, str] = {
    "obsid": "meta.id;obs",
    "expidstr": "meta.id;instr.setup",
    "slice_id": "meta.id;meta.dataset",
    "ra_pnt": "pos.eq.ra;instr.pointing",
    "dec_pnt": "pos.eq.dec;instr.pointing",
    "pa_pnt": "pos.posAng;instr.pointing",
    "filter": "instr.filter",
    "submode": "instr.setup",
    "date_obs": "time.start;obs.exposure",
    "ontime": "time.duration;obs.exposure",
    "clean_exposure": "time.duration;obs.exposure",
    "flare_fraction": "arith.ratio;time.duration",
    "n_slices": "meta.number",
    "pps_version": "meta.version;meta.software",
    "pps_proc_date": "time.processing",
    "harvest_status": "meta.code.status",
    "harvest_time": "time.processing",
    "status": "meta.code.status",
    "reason": "meta.note",
    "store_path": "meta.ref.uri",
    "run_id": "meta.id;meta.software",
    "created": "time.processing",
    "length_ks": "time.duration;obs.exposure",
    "index": "meta.number",
    "start": "time.start;obs.exposure",
    "stop": "time.end;obs.exposure",
    "exposure": "time.duration;obs.exposure",
    "counts": "phot.count",
    "band": "em.energy;instr.bandpass",
    "model": "meta.id;meta.software",
    "kind": "meta.code.class",
    "weights_sha256": "meta.checksum",
    "clamp_mode": "meta.code",
    "clamp_value": "phot.count;arith.rate;stat.max",
    "trained_clamp": "meta.code",
    "clamp_mismatch": "meta.code.qual",
    "stretch": "meta.code",
    "grid": "instr.pixel",
    "input_counts": "phot.count",
    "output_counts": "phot.count",
    "output_exposure": "time.duration;obs.exposure",
    "input_exposure": "time.duration;obs.exposure",
    "input_rate": "phot.count;arith.rate",
    "output_rate": "phot.count;arith.rate",
    "output_background": "meta.code",
    "restored_rate": "phot.count;arith.rate",
    "uncertainty_samples": "meta.number",
    "flux_fraction_below_3sigma": "arith.ratio;phot.count",
    "median_significance": "stat.snr;stat.median",
    "software_version": "meta.version;meta.software",
    "stage": "meta.code",
    "n_products": "meta.number",
    "started": "time.start;meta.software",
    "finished": "time.end;meta.software",
    "duration": "time.duration;meta.software",
}

_TIME_COLUMN = {
    "observations": "created",
    "slices": "created",
    "products": "created",
    "sources": "created",
    "runs": "finished",
}


def _parse_time(value: str, option: str = "--since") -> Time:
    from erfa import ErfaWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ErfaWarning)  # far-future dates are fine here
            return Time(str(value).strip(), scale="utc")
    except ValueError as exc:
        raise ConfigError(f"cannot read {option} {value!r} as a date "
                          "(use YYYY-MM-DD[THH:MM:SS], UTC)") from exc


def _after(values: Iterable[object], t0: Time, *, before: bool = False) -> np.ndarray:
    """Rows whose ISO time is at or after ``t0`` (strictly before with ``before``); empty
    times never match."""
    text = np.array([str(v).strip() for v in values], dtype=object)
    out = np.zeros(len(text), dtype=bool)
    known = np.array([bool(t) for t in text], dtype=bool)
    if known.any():
        times = Time(list(text[known]), scale="utc")
        out[known] = (times < t0) if before else (times >= t0)
    return out


def _is_number(value: object) -> bool:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _radius(value: object) -> Angle:
    try:
        if isinstance(value, u.Quantity):
            r = Angle(value)
        elif _is_number(value):
            r = Angle(float(value), u.deg)
        else:
            r = Angle(u.Quantity(str(value)))
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise ConfigError(f"bad cone radius {value!r}: give degrees (0.5) or an angle "
                          "(30arcmin)") from exc
    deg = float(r.to_value(u.deg))
    if not (math.isfinite(deg) and 0 < deg <= 180):
        raise ConfigError(f"bad cone radius {value!r}: need 0 < radius <= 180 deg")
    return r


def parse_cone(cone: Sequence[object]) -> tuple[SkyCoord, Angle]:
    """Read a cone: ``(ra, dec, radius)`` or ``(position, radius)``.

    Parameters
    ----------
    cone : sequence
        ``(ra, dec, radius)`` with ``ra``/``dec`` in degrees (numbers) or sexagesimal
        strings (RA in hours: ``"10h45m03.6s"`` or ``"10:45:03.6"``; Dec in degrees:
        ``"-59d41m04s"``), or ``(position, radius)`` with a :class:`~astropy.coordinates.SkyCoord`,
        a coordinate string SkyCoord accepts (``"10h45m03.6s -59d41m04s"``) or an object
        name resolved by :meth:`SkyCoord.from_name` (needs the network). ``radius`` in
        degrees, or an angle (``"30arcmin"``, a Quantity).

    Returns
    -------
    centre : SkyCoord
    radius : Angle

    Raises
    ------
    ConfigError
        Out-of-range values (RA outside [0, 360], Dec outside [-90, 90], radius outside
        (0, 180] deg), unreadable coordinates, or a name that cannot be resolved.
    """
    items = list(cone)
    if len(items) == 3:
        ra, dec, radius = items
        forms = ("give degrees (161.265 -59.685) or sexagesimal (10h45m03.6s -59d41m04s, "
                 "10:45:03.6 -59:41:04; RA in hours)")
        try:
            # a plain number is degrees; text is sexagesimal, RA in hours unless it says 'd'
            ra_a = Angle(float(ra), u.deg) if _is_number(ra) else Angle(str(ra), u.hourangle)
            dec_a = Angle(float(dec), u.deg) if _is_number(dec) else Angle(str(dec), u.deg)
        except (ValueError, TypeError, u.UnitsError) as exc:
            raise ConfigError(f"cannot read the cone centre {ra!r} {dec!r}: {forms}") from exc
        ra_d, dec_d = float(ra_a.deg), float(dec_a.deg)
        if not (0 <= ra_d <= 360 and -90 <= dec_d <= 90):
            raise ConfigError(f"bad cone centre {ra}, {dec}: need 0 <= RA <= 360 and "
                              "-90 <= Dec <= 90 (degrees)")
        centre = SkyCoord(ra_d * u.deg, dec_d * u.deg, frame="icrs")
        return centre, _radius(radius)
    if len(items) == 2:
        position, radius = items
        if isinstance(position, SkyCoord):
            return position.icrs, _radius(radius)
        text = str(position).strip()
        try:
            centre = SkyCoord(text, unit=(u.hourangle, u.deg), frame="icrs")
        except (ValueError, TypeError, u.UnitsError):
            try:
                centre = SkyCoord.from_name(text)
            except Exception as exc:  # noqa: BLE001 - NameResolveError, network errors
                raise ConfigError(
                    f"cannot resolve {text!r} to a position (not coordinates, and the name "
                    f"lookup through astropy failed: {str(exc).splitlines()[0][:120]}); give "
                    "RA DEC instead") from exc
        return centre.icrs, _radius(radius)
    raise ConfigError(f"bad cone {tuple(items)!r}: give (ra, dec, radius) or (position, radius)")


def _alias_of(model: str) -> str:
    m = re.match(r"^(?P<base>.+)-v\d+$", model)
    return m["base"] if m else model


def model_filter(name: str, available: Iterable[str], *, where: str = "this store",
                 warn: bool = True) -> set[str]:
    """The model names a ``--model`` value selects among ``available``.

    ``NAME-vN`` selects itself, an alias ``NAME`` every version ``NAME-vK``. A value that is
    neither an available model, an alias of one nor a registered model is an error.

    Parameters
    ----------
    name : str
        The requested model or alias.
    available : iterable of str
        Model names present (e.g. in the products catalog).
    where : str
        What ``available`` describes, for the message.
    warn : bool
        Log a warning for a registered model without products in ``available``.

    Returns
    -------
    set of str
        The selected names (empty for a registered model without products here).

    Raises
    ------
    ConfigError
        Unknown name; the message lists the models and aliases present and registered.
    """
    have = {str(m) for m in available if str(m)}
    text = str(name).strip()
    if text in have:
        return {text}
    by_alias = {m for m in have if _alias_of(m) == text and m != text}
    if by_alias:
        return by_alias
    registered: set[str] = set()
    try:
        from xsa_enhance.models.registry import list_models

        for e in list_models():
            registered |= {e.id, e.name}
    except Exception:  # noqa: BLE001 - an unreadable registry only narrows the choices
        logger.debug("model registry unreadable", exc_info=True)
    if text in registered:
        if warn:
            logger.warning("model %s has no products in %s", text, where)
        return set()
    aliases = sorted({_alias_of(m) for m in have} - have)
    choices = sorted(have)
    listing = ", ".join(choices) if choices else "none"
    alias_txt = f"; aliases: {', '.join(aliases)}" if aliases else ""
    raise ConfigError(f"unknown model {text!r}; models in {where}: {listing}{alias_txt}")


def _clamp_filter(clamp: str, values: np.ndarray) -> np.ndarray:
    """Rows whose clamp mode matches ``clamp`` (a bare mode matches the whole family)."""
    from xsa_enhance.models.normalise import ClampSpec

    text = str(clamp).strip().lower()
    try:
        wanted = ClampSpec.parse(text)
    except ConfigError as exc:
        raise ConfigError(f"--clamp: {exc}") from exc
    family_only = ":" not in text
    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            spec = ClampSpec.parse(str(v))
        except ConfigError:
            continue
        out[i] = spec.mode == wanted.mode if family_only else spec == wanted
    return out


def _obsids(obsid: str | Sequence[str]) -> set[str]:
    values = [obsid] if isinstance(obsid, str) else list(obsid)
    out = set()
    for v in values:
        try:
            out.add(validate_obsid(v))
        except ObservationError as exc:
            raise ConfigError(f"--obsid {v!r}: not an XMM-Newton observation id (10 digits, "
                              "e.g. 0123700101)") from exc
    return out


def _annotate(table: Table) -> None:
    """UCDs on the columns (VOTable / FITS exports write them)."""
    for name in table.colnames:
        ucd = COLUMN_UCDS.get(name)
        if ucd:
            table[name].meta["ucd"] = ucd


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
    wanted_obsids = _obsids(obsid) if obsid is not None else None
    centre_radius = parse_cone(cone) if cone is not None else None
    t_since = _parse_time(since, "--since") if since is not None else None
    t_after = _parse_time(observed_after, "--observed-after") if observed_after else None
    t_before = _parse_time(observed_before, "--observed-before") if observed_before else None
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
        keep &= _clamp_filter(clamp, np.asarray(table["clamp_mode"], dtype=str))
    if status is not None:
        keep &= np.asarray(table["status"], dtype=str) == status
    if t_since is not None and len(table):
        keep &= _after(table[_TIME_COLUMN[catalog]], t_since)
    if t_after is not None and len(table):
        keep &= _after(table["date_obs"], t_after)
    if t_before is not None and len(table):
        keep &= _after(table["date_obs"], t_before, before=True)
    if min_signif is not None:
        keep &= np.nan_to_num(np.asarray(table["signif"], dtype=float), nan=-np.inf) >= min_signif
    if min_rate is not None:
        keep &= np.nan_to_num(np.asarray(table["rate"], dtype=float), nan=-np.inf) >= min_rate
    out = table[keep]
    # a stable order whatever the order of the commits: by key (the runs log by time)
    order = list(CATALOG_KEYS[catalog]) or ["finished", "obsid"]
    if len(out):
        out.sort(order)
    _annotate(out)
    out.meta["catalog"] = catalog
    out.meta["store"] = store.url
    logger.debug("query %s: %d of %d rows", catalog, len(out), len(table))
    return out


def _plain(table: Table) -> Table:
    """A copy whose text columns are plain fixed-width unicode (for FITS/VOTable)."""
    out = table.copy(copy_data=True)
    for name in out.colnames:
        if out[name].dtype.kind in "OT":
            col = out[name]
            out[name] = np.asarray(col, dtype=str) if len(col) else np.zeros(0, dtype="U1")
            out[name].info.description = col.info.description
            out[name].info.meta = dict(col.info.meta or {})
        if out[name].dtype.kind == "U" and out[name].dtype.itemsize == 0:
            out[name] = out[name].astype("U1")
    _annotate(out)
    # astropy writers reject non-scalar meta values in some formats
    out.meta = {k: v for k, v in out.meta.items() if isinstance(v, (str, int, float))}
    return out


def _fits_bytes(table: Table) -> bytes:
    """FITS binary table with TUNITn (astropy), TCOMMn (descriptions) and TUCDn (UCDs)."""
    from astropy.io import fits

    buf = io.BytesIO()
    table.write(buf, format="fits")
    buf.seek(0)
    with fits.open(buf) as hdul:
        hdu = hdul[1]
        hdr = hdu.header
        for i, name in enumerate(table.colnames, start=1):
            desc = str(table[name].info.description or "")
            if desc:
                hdr[f"TCOMM{i}"] = desc  # long ones continue (CONTINUE cards)
            ucd = table[name].meta.get("ucd")
            if ucd:
                hdr[f"TUCD{i}"] = str(ucd)
        hdr["EXTNAME"] = str(table.meta.get("catalog", "CATALOG")).upper()
        out = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(data=hdu.data, header=hdr)]).writeto(out)
    return out.getvalue()


def format_table(table: Table, fmt: str) -> str | bytes:
    """Serialise a table in one of :data:`EXPORT_FORMATS` (text or bytes).

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    fmt : str
        ``table`` (aligned text), ``csv`` (plain CSV: read the obsids back as text,
        e.g. ``pandas.read_csv(f, dtype={"obsid": str})``), ``ecsv`` (CSV with an ECSV
        header: astropy reads types, units and descriptions back), ``json`` (list of
        records), ``votable``, ``fits`` or ``parquet`` (these three keep units and
        descriptions, read back by astropy without warnings).
    """
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    table = _plain(table)
    if fmt == "table":
        if len(table) == 0:
            return "(no rows) columns: " + ", ".join(table.colnames) + "\n"
        return "\n".join(table.pformat(max_lines=-1, max_width=-1)) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        table.write(buf, format="ascii.csv")
        return buf.getvalue()
    if fmt == "ecsv":
        buf = io.StringIO()
        table.write(buf, format="ascii.ecsv", delimiter=",")
        return buf.getvalue()
    if fmt == "json":
        records = []
        for row in table:
            rec = {}
            for name in table.colnames:
                value = row[name]
                value = value.item() if hasattr(value, "item") else value
                if isinstance(value, float) and not np.isfinite(value):
                    value = None
                rec[name] = value
            records.append(rec)
        return json.dumps(records, indent=1) + "\n"
    if fmt == "votable":
        from astropy.io.votable import from_table, writeto

        vot = from_table(table)
        for field in vot.get_first_table().fields:
            if field.name in TIME_COLUMNS:
                field.xtype = "timestamp"
        buf = io.BytesIO()
        writeto(vot, buf)
        return buf.getvalue()
    if fmt == "fits":
        return _fits_bytes(table)
    # parquet through astropy: units, descriptions and meta in its table metadata
    with tempfile.TemporaryDirectory(prefix="xsa-parquet-") as tmp:
        path = Path(tmp) / "table.parquet"
        table.write(path, format="parquet")
        return path.read_bytes()


def write_table(table: Table, out: str | Path | IO[Any], fmt: str) -> None:
    """Write a table to a path or an open stream in one of :data:`EXPORT_FORMATS`.

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    out : str or pathlib.Path or file-like
        Destination; binary formats need a binary stream.
    fmt : str
        Output format.
    """
    data = format_table(table, fmt)
    if isinstance(out, (str, Path)):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(out, mode) as fh:
            fh.write(data)
        return
    if isinstance(data, bytes):
        target = getattr(out, "buffer", out)
        target.write(data)
    else:
        out.write(data)
