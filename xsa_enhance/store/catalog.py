"""Catalogs kept inside the Zarr product store.

A catalog is a Zarr group holding one 1-D array per column (variable-length UTF-8 strings
for text). Only the pipeline driver appends, and only after the products a row describes
are complete. An append resizes and writes every column first; the store then publishes
the new row counts of all catalogs touched by one commit in a single write of its root
attributes. Readers only ever read the published rows, so a run killed in the middle of an
append leaves the catalogs as they were (the stale tail is overwritten by the next append),
and rows committed together (an observation and its slices) appear together.

Columns added in later versions (:data:`LATE_COLUMNS`, e.g. the products' ``trained_clamp``
and ``clamp_mismatch``, the uncertainty summary ``uncertainty_samples``,
``flux_fraction_below_3sigma`` and ``median_significance``, or the physical columns
``input_exposure``, ``input_rate``, ``output_rate``, ``output_background`` and
``restored_rate``) may be missing from stores written before: they read as their fill value
(``""``, ``False``, ``0`` samples, NaN) and the first append creates them, filled for the
older rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import zarr
from astropy.table import Table

from xsa_enhance.errors import XsaError

__all__ = [
    "CATALOG_NAMES",
    "CATALOG_SCHEMAS",
    "Catalog",
    "CatalogCorruptError",
    "Column",
    "CATALOG_KEYS",
    "LATE_COLUMNS",
    "rows_from_table",
]

logger = logging.getLogger(__name__)


class CatalogCorruptError(XsaError):
    """A catalog group whose columns do not agree with its published row count."""


@dataclass(frozen=True)
class Column:
    """One catalog column.

    Parameters
    ----------
    name : str
        Column name.
    dtype : str
        ``"str"``, ``"f8"``, ``"i8"`` or ``"bool"``.
    unit : str
        Physical unit (astropy unit string, ``""`` for none).
    description : str
        What the column holds.
    fill : object, optional
        Value of rows that lack it (a late column read from an older catalog); default: the
        dtype's fill (``""``, NaN, -1, False).
    """

    name: str
    dtype: str
    unit: str
    description: str
    fill: object = None

    @property
    def fill_value(self) -> object:
        """The value of rows that lack this column."""
        return _FILL[self.dtype] if self.fill is None else self.fill


def _c(name: str, dtype: str, unit: str, description: str, fill: object = None) -> Column:
    return Column(name, dtype, unit, description, fill)


#: Column definitions of the catalogs (the JSON Schemas in ``schemas/`` mirror these).
CATALOG_SCHEMAS: dict[str, tuple[Column, ...]] = {
    "observations": (
        _c("obsid", "str", "", "XMM-Newton observation identifier (10 digits)"),
        _c("expidstr", "str", "", "EPIC-pn exposure identifier (e.g. S003)"),
        _c("ra_pnt", "f8", "deg", "pointing right ascension (RA_PNT)"),
        _c("dec_pnt", "f8", "deg", "pointing declination (DEC_PNT)"),
        _c("pa_pnt", "f8", "deg", "position angle of the pointing (PA_PNT)"),
        _c("filter", "str", "", "EPIC-pn filter"),
        _c("submode", "str", "", "EPIC-pn submode"),
        _c("date_obs", "str", "", "start of the exposure (DATE-OBS of the event list, "
                                  "ISO 8601)"),
        _c("ontime", "f8", "s", "sum of the CCD good time intervals (ONTIME)"),
        _c("clean_exposure", "f8", "s", "exposure left after flare filtering"),
        _c("flare_fraction", "f8", "", "fraction of the good time removed as flares"),
        _c("n_slices", "i8", "", "number of slice images stored"),
        _c("pps_version", "str", "", "PPS version of the harvested products"),
        _c("pps_proc_date", "str", "", "PPS processing date (ISO 8601)"),
        _c("harvest_status", "str", "", "downloaded or cached"),
        _c("harvest_time", "str", "", "when the products were harvested (UTC, ISO 8601)"),
        _c("status", "str", "", "ok or skipped"),
        _c("reason", "str", "", "why the observation was skipped, or why an ok observation has "
                                "no enhanced product (empty otherwise)"),
        _c("store_path", "str", "", "group of the observation in the store"),
        _c("run_id", "str", "", "run that committed the row"),
        _c("created", "str", "", "when the row was committed (UTC, ISO 8601)"),
    ),
    "slices": (
        _c("obsid", "str", "", "observation identifier"),
        _c("expidstr", "str", "", "exposure identifier"),
        _c("slice_id", "str", "", "slice key <expid>_<length>ks_<index>"),
        _c("length_ks", "i8", "ks", "nominal slice exposure (multiple of 10 ks)"),
        _c("n_slices", "i8", "", "number of slices of this length in the observation"),
        _c("index", "i8", "", "zero-based index of the slice among those of its length"),
        _c("start", "f8", "s", "start of the first good time interval (mission time, TT)"),
        _c("stop", "f8", "s", "end of the last good time interval (mission time, TT)"),
        _c("exposure", "f8", "s", "clean exposure of the slice"),
        _c("counts", "i8", "ct", "counts in the image (band, screened, inside the mask), "
                                 "collected in exposure"),
        _c("band", "str", "", "energy band of the image (PI range, eV)"),
        _c("store_path", "str", "", "group of the slice input in the store"),
        _c("run_id", "str", "", "run that committed the row"),
        _c("created", "str", "", "when the row was committed (UTC, ISO 8601)"),
    ),
    "products": (
        _c("obsid", "str", "", "observation identifier"),
        _c("expidstr", "str", "", "exposure identifier"),
        _c("slice_id", "str", "", "slice key of the input image"),
        _c("length_ks", "i8", "ks", "nominal exposure of the input slice"),
        _c("model", "str", "", "model name"),
        _c("kind", "str", "", "sr (super-resolution) or dn (de-noising)"),
        _c("weights_sha256", "str", "", "SHA-256 of the model weights"),
        _c("clamp_mode", "str", "", "constant or quantile"),
        _c("clamp_value", "f8", "ct/s", "clamp applied to the input rate image (per pixel)"),
        _c("trained_clamp", "str", "", "clamp mode the weights were trained for (their config "
                                       "clamp; empty: product made before it was recorded)"),
        _c("clamp_mismatch", "bool", "", "made with a clamp mode of another family than "
                                         "trained_clamp (allowed explicitly; false when "
                                         "trained_clamp is empty)"),
        _c("stretch", "str", "", "intensity stretch (linear, sqrt, asinh, log, hdr)"),
        _c("grid", "str", "", "output grid (1x: 4 arcsec pixels, 2x: 2 arcsec pixels)"),
        _c("input_counts", "f8", "ct", "counts of the input image inside the mask, collected in "
                                       "input_exposure (background included)"),
        _c("output_counts", "f8", "ct", "counts of the enhanced image inside its mask, for "
                                        "output_exposure (the model's target exposure, not the "
                                        "input's; background as in output_background)"),
        _c("output_exposure", "f8", "s", "exposure the enhanced image represents (the model's "
                                         "target exposure: output_counts refer to it)"),
        _c("uncertainty_samples", "i8", "", "resamples of the input behind the stored per-pixel "
                                            "uncertainty array (0: no uncertainty stored)",
           fill=0),
        _c("flux_fraction_below_3sigma", "f8", "", "fraction of the output flux in pixels whose "
                                                   "output / uncertainty < 3 (NaN without an "
                                                   "uncertainty)"),
        _c("median_significance", "f8", "", "median of output / uncertainty over the mask "
                                            "pixels with a non-zero uncertainty (NaN without "
                                            "one)"),
        _c("input_exposure", "f8", "s", "clean exposure of the input slice (input_counts refer "
                                        "to it; NaN: product made before it was recorded)"),
        _c("input_rate", "f8", "ct/s", "input_counts / input_exposure (NaN: not recorded)"),
        _c("output_rate", "f8", "ct/s", "output_counts / output_exposure, comparable with "
                                        "input_rate (NaN: not recorded)"),
        _c("output_background", "str", "", "whether the output counts include the background: "
                                           "included (DN, trained on targets with background) or "
                                           "excluded (SR, trained on background-free targets); "
                                           "empty: not recorded"),
        _c("restored_rate", "f8", "ct/s", "bright-source rate above the clamp added back to the "
                                          "output (part of output_rate; 0: none clipped or no "
                                          "restoration; NaN: not recorded)"),
        _c("store_path", "str", "", "group of the product in the store"),
        _c("software_version", "str", "", "xsa-enhance version that made the product"),
        _c("run_id", "str", "", "run that committed the row"),
        _c("created", "str", "", "when the product row was committed (UTC, ISO 8601)"),
    ),
    # sources detected on each stored slice image (model "input") and on each enhanced
    # product, measured on the slice's own counts (xsa_enhance.detect)
    "sources": (
        _c("obsid", "str", "", "observation identifier"),
        _c("expidstr", "str", "", "exposure identifier"),
        _c("slice_id", "str", "", "slice key of the input image"),
        _c("length_ks", "i8", "ks", "nominal exposure of the input slice"),
        _c("model", "str", "", "model whose output the detection ran on (input: the slice "
                               "itself)"),
        _c("kind", "str", "", "input, sr or dn"),
        _c("clamp_mode", "str", "", "clamp mode of the product (empty for input)"),
        _c("source_id", "i8", "", "source number within its image (1-based)"),
        _c("x", "f8", "pix", "1-based column of the 1x DET grid (ds9 convention)"),
        _c("y", "f8", "pix", "1-based row of the 1x DET grid (ds9 convention)"),
        _c("ra", "f8", "deg", "right ascension (ICRS) from the approximate sky WCS"),
        _c("dec", "f8", "deg", "declination (ICRS) from the approximate sky WCS"),
        _c("rate", "f8", "ct/s", "aperture-corrected background-subtracted count rate "
                                 "(input counts)"),
        _c("rate_err", "f8", "ct/s", "1-sigma error of rate"),
        _c("signif", "f8", "", "Gaussian-equivalent sigma of the Poisson probability of the "
                               "aperture counts given the annulus background (input counts)"),
        _c("det_signif", "f8", "", "the same statistic on the detection image (a score for "
                                   "model outputs)"),
        _c("extent", "f8", "arcsec", "Gaussian sigma beyond the PSF (0: point-like)"),
        _c("pointlike", "bool", "", "consistent with a point source"),
        _c("flags", "i8", "", "bits: 1 near chip gap / mask edge, 2 restored (clamped) core, "
                              "4 low uncertainty-based confidence, 8 extended"),
        _c("run_id", "str", "", "run that committed the row"),
        _c("created", "str", "", "when the row was committed (UTC, ISO 8601)"),
    ),
    "runs": (
        _c("run_id", "str", "", "run identifier"),
        _c("obsid", "str", "", "observation identifier"),
        _c("status", "str", "", "ok, failed or skipped"),
        _c("stage", "str", "", "stage that decided the status (select, harvest, events, enhance, store)"),
        _c("reason", "str", "", "why it failed or was skipped, or why an ok observation has no "
                                "enhanced product (empty otherwise)"),
        _c("n_slices", "i8", "", "slice images written in this run"),
        _c("n_products", "i8", "", "enhanced products written in this run"),
        _c("started", "str", "", "when the observation was submitted (UTC, ISO 8601)"),
        _c("finished", "str", "", "when its outcome was recorded (UTC, ISO 8601)"),
        _c("duration", "f8", "s", "wall time of its tasks"),
        _c("software_version", "str", "", "xsa-enhance version"),
    ),
}

#: The catalog names, in the order they are created.
CATALOG_NAMES: tuple[str, ...] = tuple(CATALOG_SCHEMAS)

#: Columns identifying a row uniquely in each catalog (``runs`` is a log: no key).
CATALOG_KEYS: dict[str, tuple[str, ...]] = {
    "observations": ("obsid", "expidstr"),
    "slices": ("obsid", "slice_id"),
    "products": ("obsid", "slice_id", "model", "clamp_mode"),
    "sources": ("obsid", "slice_id", "model", "clamp_mode", "source_id"),
    "runs": (),
}

#: Columns added after the first store format: stores written before lack them.
LATE_COLUMNS: dict[str, frozenset[str]] = {
    "observations": frozenset(),
    "slices": frozenset(),
    "products": frozenset({"trained_clamp", "clamp_mismatch", "uncertainty_samples",
                           "flux_fraction_below_3sigma", "median_significance",
                           "input_exposure", "input_rate", "output_rate", "output_background",
                           "restored_rate"}),
    "sources": frozenset(),
    "runs": frozenset(),
}

_CHUNK = 4096
_FILL = {"f8": np.nan, "i8": -1, "bool": False, "str": ""}


def _np_dtype(dtype: str) -> object:
    return str if dtype == "str" else np.dtype(dtype)


class Catalog:
    """A catalog group: 1-D column arrays; the published row count is kept by the store.

    Parameters
    ----------
    group : zarr.Group
        The catalog group (created with :meth:`create`).
    name : str
        Catalog name, one of :data:`CATALOG_NAMES`.
    nrows : int
        Published rows (from the store's root attributes); only these are ever read.
    """

    def __init__(self, group: zarr.Group, name: str, nrows: int) -> None:
        if name not in CATALOG_SCHEMAS:
            raise ValueError(f"unknown catalog {name!r}; expected one of {CATALOG_NAMES}")
        self.group = group
        self.name = name
        self.columns = CATALOG_SCHEMAS[name]
        self.key = CATALOG_KEYS[name]
        self.nrows = int(nrows)

    @classmethod
    def create(cls, parent: zarr.Group, name: str, *, group_name: str | None = None) -> "Catalog":
        """Create an empty catalog group under ``parent``.

        Parameters
        ----------
        parent : zarr.Group
            Group holding the catalogs.
        name : str
            Catalog name.
        group_name : str, optional
            Name of the new group (default ``name``).

        Returns
        -------
        Catalog
        """
        columns = CATALOG_SCHEMAS[name]
        group = parent.create_group(
            group_name or name,
            attributes={
                "catalog": name,
                "columns": [c.name for c in columns],
                "key": list(CATALOG_KEYS[name]),
            },
            overwrite=True,
        )
        for col in columns:
            _create_column(group, col, 0)
        return cls(group, name, 0)

    def _is_late_missing(self, name: str) -> bool:
        """A column added after this catalog was written (read as its fill value)."""
        if name not in LATE_COLUMNS.get(self.name, ()):
            return False
        try:
            self.group[name]
        except KeyError:
            return True
        return False

    def _column_array(self, name: str) -> zarr.Array:
        try:
            arr = self.group[name]
        except KeyError as exc:
            raise CatalogCorruptError(f"catalog {self.name}: column {name!r} missing") from exc
        return arr  # type: ignore[return-value]

    def _add_late_columns(self, rows_before: int) -> None:
        """Create the late columns an older catalog lacks, filled for its rows."""
        added = []
        for col in self.columns:
            if self._is_late_missing(col.name):
                _create_column(self.group, col, rows_before)
                added.append(col.name)
        if added:
            attrs = dict(self.group.attrs)
            cols = list(attrs.get("columns") or [])
            attrs["columns"] = cols + [c for c in added if c not in cols]
            self.group.attrs.update(attrs)
            logger.info("catalog %s: added columns %s (filled for %d older rows)", self.name,
                        ", ".join(added), rows_before)

    def column(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Return the published values of one column (only ``rows`` when given).

        ``rows`` are published row numbers; only the chunks holding them are read.
        """
        n = self.nrows
        n_out = n if rows is None else len(rows)
        if self._is_late_missing(name):
            col = next(c for c in self.columns if c.name == name)
            if col.dtype == "str":
                return np.full(n_out, col.fill_value, dtype=str)
            return np.full(n_out, col.fill_value, dtype=col.dtype)
        arr = self._column_array(name)
        if arr.shape[0] < n:
            raise CatalogCorruptError(
                f"catalog {self.name}: column {name!r} has {arr.shape[0]} rows, "
                f"{n} published"
            )
        if n_out == 0:
            kind = next(c.dtype for c in self.columns if c.name == name)
            return np.zeros(0, dtype="U1" if kind == "str" else kind)
        values = np.asarray(arr[:n] if rows is None else arr.get_coordinate_selection(rows))
        if values.dtype.kind == "T" or values.dtype == object:
            values = np.array(values.tolist(), dtype=str)
        return values

    def keys(self) -> set[tuple[str, ...]]:
        """Set of key tuples of the published rows (empty for a catalog without a key)."""
        if not self.key:
            return set()
        cols = [self.column(k) for k in self.key]
        return {tuple(str(v) for v in row) for row in zip(*cols)}

    def check_rows(self, rows: Sequence[Mapping[str, object]]) -> None:
        """Raise ValueError when a row lacks a column or names an unknown one."""
        names = {c.name for c in self.columns}
        for row in rows:
            missing = names - set(row)
            extra = set(row) - names
            if missing or extra:
                raise ValueError(
                    f"catalog {self.name}: row has missing columns {sorted(missing)} "
                    f"and unknown columns {sorted(extra)}"
                )

    def write_rows(self, rows: Sequence[Mapping[str, object]]) -> int:
        """Write rows after the published ones, *without* publishing them.

        The store publishes the new row count (of several catalogs at once) in one atomic
        metadata write; whatever an interrupted append left beyond the published rows is
        simply overwritten by the next one.

        Parameters
        ----------
        rows : sequence of mappings
            One mapping per row with a value for every column.

        Returns
        -------
        int
            The row count to publish.
        """
        if not rows:
            return self.nrows
        self.check_rows(rows)
        columns: dict[str, np.ndarray] = {}
        for col in self.columns:
            if col.dtype == "str":
                columns[col.name] = np.array([str(r[col.name]) for r in rows], dtype=object)
            else:
                columns[col.name] = np.array([r[col.name] for r in rows], dtype=col.dtype)
        return self.write_columns(columns)

    def write_columns(self, values: Mapping[str, np.ndarray]) -> int:
        """Append rows given column by column after the published ones, *without*
        publishing them (see :meth:`write_rows`).

        Every column array is extended; the ones in ``values`` get their new values, the
        others keep what their new rows hold (their fill value, unless an interrupted append
        left values there). :meth:`write_rows` gives every column.

        Parameters
        ----------
        values : mapping of str to numpy.ndarray
            New values of some columns, all of the same length (text columns as objects).

        Returns
        -------
        int
            The row count to publish.
        """
        lengths = {len(v) for v in values.values()}
        if len(lengths) != 1:
            raise ValueError(f"catalog {self.name}: columns of different lengths {lengths}")
        names = {c.name for c in self.columns}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"catalog {self.name}: unknown columns {sorted(unknown)}")
        n0 = self.nrows
        n1 = n0 + lengths.pop()
        self._add_late_columns(n0)
        for col in self.columns:
            arr = self._column_array(col.name)
            arr.resize((n1,))
            if col.name in values:
                arr[n0:n1] = values[col.name]
        logger.debug("catalog %s: wrote rows %d..%d", self.name, n0, n1)
        return n1

    def read(self, rows: Sequence[int] | np.ndarray | None = None) -> Table:
        """Return the published rows (or only ``rows``, in that order) as an astropy Table
        with units and descriptions.

        Raises
        ------
        IndexError
            A row number outside the published rows.
        """
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if len(rows) and (rows.min() < 0 or rows.max() >= self.nrows):
                raise IndexError(f"catalog {self.name}: rows outside 0..{self.nrows - 1}")
        table = Table()
        for col in self.columns:
            values = self.column(col.name, rows)
            table[col.name] = values
            if col.unit:
                table[col.name].unit = col.unit
            table[col.name].description = col.description
        table.meta["catalog"] = self.name
        return table

    def rows(self) -> list[dict[str, object]]:
        """The published rows as plain mappings."""
        return rows_from_table(self.read())


def _create_column(group: zarr.Group, col: Column, nrows: int) -> zarr.Array:
    """A column array of ``nrows`` fill values."""
    return group.create_array(
        col.name,
        shape=(nrows,),
        chunks=(_CHUNK,),
        dtype=_np_dtype(col.dtype),
        fill_value=col.fill_value,
        dimension_names=["row"],
        attributes={"unit": col.unit, "description": col.description},
    )


def rows_from_table(table: Table) -> list[dict[str, object]]:
    """Convert an astropy Table back into row mappings (plain Python values)."""
    out: list[dict[str, object]] = []
    for row in table:
        out.append({name: row[name].item() if hasattr(row[name], "item") else row[name]
                    for name in table.colnames})
    return out
