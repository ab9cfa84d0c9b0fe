"""Cross-match a user's table of positions against a sky catalog of the product store.

The user's table (FITS, VOTable, CSV, ECSV or anything ``astropy.table.Table.read`` reads)
gives one position per row in two columns found by name (``ra``/``dec``, ``RAJ2000``/
``DEJ2000``, ``RA_ICRS``/``DE_ICRS``, ... in any case) or named by the caller. The catalog
rows near any of the positions are fetched through the spatial index
(:func:`xsa_enhance.store.spatial.near_rows`), the pairs within the radius are found with
``astropy.coordinates.search_around_sky``, and each pair becomes one output row: the user's
columns, the catalog's columns and the separation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import Table, hstack

from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.store import spatial
from xsa_enhance.store.zarr_store import ProductStore

__all__ = ["RA_DEC_NAMES", "parse_radius", "read_positions", "crossmatch"]

logger = logging.getLogger(__name__)

#: Column name pairs recognised as (RA, Dec), compared without regard to case, in order.
RA_DEC_NAMES: tuple[tuple[str, str], ...] = (
    ("ra", "dec"),
    ("raj2000", "dej2000"),
    ("raj2000", "decj2000"),
    ("_raj2000", "_dej2000"),
    ("ra_icrs", "de_icrs"),
    ("ra_icrs", "dec_icrs"),
    ("ra_deg", "dec_deg"),
    ("ra", "de"),
)

_FORMATS = {
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
    ".xml": "votable", ".vot": "votable", ".votable": "votable",
    ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
}


def parse_radius(text: str | u.Quantity) -> u.Quantity:
    """An angle from an astropy quantity string (``10arcsec``, ``0.5 arcmin``, ``0.01deg``).

    Raises
    ------
    ConfigError
        When the text is not an angle with a unit, or not in (0, 180] deg.
    """
    try:
        radius = u.Quantity(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"radius {text!r}: not a quantity (write e.g. 10arcsec or "
                          "0.5arcmin)") from exc
    if radius.unit == u.dimensionless_unscaled or not radius.unit.is_equivalent(u.deg):
        raise ConfigError(f"radius {text!r}: needs an angle unit (e.g. 10arcsec, 0.5arcmin)")
    if radius.isscalar is False or not (0 < radius.to_value(u.deg) <= 180):
        raise ConfigError(f"radius {text!r}: must be one angle in (0, 180] deg")
    return radius.to(u.arcsec)


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    return None


def _find(colnames: list[str], wanted: str) -> str | None:
    lower = {c.lower(): c for c in colnames}
    return wanted if wanted in colnames else lower.get(wanted.lower())


def read_positions(path: str | Path, *, ra_col: str | None = None, dec_col: str | None = None
                   ) -> tuple[Table, np.ndarray, np.ndarray]:
    """Read a table of positions.

    Parameters
    ----------
    path : str or pathlib.Path
        FITS, VOTable, CSV or ECSV file (format from the suffix, else guessed by astropy).
    ra_col, dec_col : str, optional
        Column names; by default the first pair of :data:`RA_DEC_NAMES` present.

    Returns
    -------
    table : astropy.table.Table
        The table as read.
    ra, dec : numpy.ndarray
        Positions in degrees (ICRS assumed); NaN where a value is masked. Columns with a unit
        are converted to degrees; text columns are read as sexagesimal (RA in hours unless it
        has a unit).

    Raises
    ------
    InputFileError
        Missing or unreadable file, missing columns, values that are not positions.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    fmt = _format_of(path)
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many kinds for a file it cannot parse
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"cannot read it as a table ({reason[:200]})") from exc
    names = list(table.colnames)
    if (ra_col is None) != (dec_col is None):
        raise ConfigError("give both --ra-col and --dec-col, or neither")
    if ra_col is not None and dec_col is not None:
        found = (_find(names, ra_col), _find(names, dec_col))
        if None in found:
            missing = ra_col if found[0] is None else dec_col
            raise InputFileError(path, f"no column {missing!r} (columns: {', '.join(names)})")
        ra_name, dec_name = found  # type: ignore[misc]
    else:
        for r, d in RA_DEC_NAMES:
            ra_name, dec_name = _find(names, r), _find(names, d)  # type: ignore[assignment]
            if ra_name and dec_name:
                break
        else:
            raise InputFileError(
                path, f"no RA/Dec columns (looked for {', '.join('/'.join(p) for p in RA_DEC_NAMES[:5])}; "
                f"columns: {', '.join(names) or 'none'}): name them with --ra-col/--dec-col")
    ra = _degrees(table, ra_name, path, hours=True)
    dec = _degrees(table, dec_name, path, hours=False)
    return table, ra, dec


def _degrees(table: Table, name: str, path: Path, *, hours: bool) -> np.ndarray:
    col = table[name]
    mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
    try:
        if col.dtype.kind in "USO":
            from astropy.coordinates import Angle

            unit = col.unit or (u.hourangle if hours else u.deg)
            text = np.where(mask, "0", np.asarray(col.astype(str)))
            values = Angle(text, unit=unit).deg
        elif col.unit is not None:
            values = u.Quantity(col).to_value(u.deg)
        else:
            values = np.asarray(col, dtype=np.float64)
    except (ValueError, TypeError, u.UnitsError) as exc:
        raise InputFileError(path, f"column {name!r} does not hold angles ({exc})") from exc
    values = np.array(values, dtype=np.float64)
    values[mask] = np.nan
    return values


def crossmatch(
    store: ProductStore | str | Path,
    positions: Table,
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    catalog: str,
    radius: u.Quantity | str,
    nearest: bool = False,
    use_index: bool = True,
) -> Table:
    """Match positions against a sky catalog of the store.

    Parameters
    ----------
    store : ProductStore or str or pathlib.Path
        The product store (opened read-only when a path is given).
    positions : astropy.table.Table
        The user's table (its columns are copied into the output).
    ra, dec : numpy.ndarray
        Its positions in degrees (ICRS); invalid ones (NaN, ``|dec| > 90``) never match.
    catalog : str
        A catalog with sky columns (:func:`xsa_enhance.store.spatial.sky_catalogs`).
    radius : astropy.units.Quantity or str
        Match radius (an angle, or a string for :func:`parse_radius`).
    nearest : bool
        Keep only the nearest catalog row of each position.
    use_index : bool
        Use the spatial index (default); False compares with every catalog row.

    Returns
    -------
    astropy.table.Table
        One row per pair: ``in_row`` (0-based row of the user's table), the user's columns,
        the catalog's columns (a name taken by both gets the suffix ``_in`` or
        ``_<catalog>``) and ``sep_arcsec``; sorted by ``in_row`` then separation.

    Raises
    ------
    ConfigError
        For a catalog without sky columns or a bad radius.
    """
    if not isinstance(store, ProductStore):
        store = ProductStore(store, mode="r")
    if spatial.sky_columns(catalog) is None:
        raise ConfigError(f"catalog {catalog!r} has no sky positions; cross-match one of "
                          f"{', '.join(spatial.sky_catalogs())}")
    radius = parse_radius(radius) if isinstance(radius, str) else parse_radius(radius)
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if len(ra) != len(positions) or len(dec) != len(positions):
        raise ValueError("ra and dec need one value per row of the table")
    cat = store.catalog(catalog)
    with np.errstate(invalid="ignore"):
        valid = np.nonzero(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))[0]
    if len(valid) < len(ra):
        logger.warning("%d of %d positions are not valid (NaN or |dec| > 90) and match nothing",
                       len(ra) - len(valid), len(ra))
    rad_deg = float(radius.to_value(u.deg))
    rows, cra, cdec = (spatial.near_rows(cat, ra[valid], dec[valid], rad_deg, use_index=use_index)
                       if len(valid) else (np.zeros(0, np.int64), np.zeros(0), np.zeros(0)))
    if len(rows):
        mine = SkyCoord(ra[valid] * u.deg, dec[valid] * u.deg)
        theirs = SkyCoord(cra * u.deg, cdec * u.deg)
        i_in, i_cat, sep, _ = search_around_sky(mine, theirs, radius)
        i_in, i_cat, sep = valid[i_in], rows[i_cat], sep.to_value(u.arcsec)
    else:
        i_in, i_cat, sep = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    order = np.lexsort((i_cat, sep, i_in))
    i_in, i_cat, sep = i_in[order], i_cat[order], sep[order]
    if nearest and len(i_in):
        first = np.ones(len(i_in), dtype=bool)
        first[1:] = i_in[1:] != i_in[:-1]
        i_in, i_cat, sep = i_in[first], i_cat[first], sep[first]
    uniq, inverse = np.unique(i_cat, return_inverse=True)
    theirs_rows = spatial.read_rows(cat, uniq)[inverse]
    ours = positions[i_in]
    ours.meta = {}
    theirs_rows.meta = {}
    out = hstack([ours, theirs_rows], table_names=["in", catalog],
                 uniq_col_name="{col_name}_{table_name}", metadata_conflicts="silent")
    out.add_column(i_in.astype(np.int64), name=_free("in_row", out.colnames), index=0)
    out[out.colnames[0]].description = "row of the input table (0-based)"
    name = _free("sep_arcsec", out.colnames)
    out[name] = sep * u.arcsec
    out[name].description = "angular separation between the input position and the catalog row"
    for col in out.itercols():  # FITS inputs are big-endian; some writers (parquet) refuse it
        if col.dtype.byteorder not in "=|" and col.dtype.isnative is False:
            out.replace_column(col.info.name, col.astype(col.dtype.newbyteorder("=")))
    out.meta.update({"catalog": catalog, "store": store.url,
                     "radius": f"{radius.to_value(u.arcsec):g} arcsec", "nearest": bool(nearest)})
    logger.info("crossmatch: %d pairs for %d of %d positions (%d candidate rows)", len(out),
                len(np.unique(i_in)), len(positions), len(rows))
    return out


def _free(name: str, taken: list[str]) -> str:
    while name in taken:
        name += "_xm"
    return name
