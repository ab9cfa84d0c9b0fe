"""Data types of the events stage: configuration, event lists, slices and images.

A newcomer's map of the stage:

- :class:`EventsConfig` -- every option (screening expression, band, slice lengths, flare
  thresholds, grids), validated, loadable from a YAML/JSON mapping with :meth:`from_dict`.
- :class:`ObservationMeta` -- the header facts of one exposure (obsid, pointing, filter, ...).
- :class:`EventList` -- the columns read from a PIEVLI file plus its CCD GTIs.
- :class:`Slice` -- a piece of the clean exposure (its GTIs and exact exposure).
- :class:`SliceImage` -- counts on the DET grid for one slice, with the mask and metadata.
- :class:`ProcessedObservation` -- everything :func:`~xsa_enhance.events.process_event_list`
  produces for one exposure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from xsa_enhance.errors import ConfigError
from xsa_enhance.events.expression import DEFAULT_EXPRESSION, Expression, parse_expression
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X, DetGrid

__all__ = [
    "DEFAULT_LIGHTCURVE_EXPRESSION",
    "EventsConfig",
    "ObservationMeta",
    "EventList",
    "Slice",
    "SliceImage",
    "ProcessedObservation",
]

#: Selection of the standard pn flare light curve: single events at 10-12 keV.
DEFAULT_LIGHTCURVE_EXPRESSION: str = "PATTERN == 0 && PI > 10000 && PI < 12000"

_GRIDS = {"1x": GRID_1X, "2x": GRID_2X}


@dataclass(frozen=True)
class EventsConfig:
    """Options of the events stage.

    Parameters
    ----------
    expression : str
        Screening expression (SAS-like, see :mod:`xsa_enhance.events.expression`). Default:
        the paper's ``PI > 300 && RAWY > 12 && PATTERN <= 4 && ((FLAG == 0) || ((FLAG &
        0x10000) != 0))``.
    band : (int, int)
        Energy band in eV, ``PI in [lo:hi]`` (both bounds included, as evselect's ``[a:b]``).
    slice_lengths_ks : tuple of float or "all"
        Slice lengths in ks. ``"all"``: every multiple ``k * slice_unit_ks`` up to the clean
        exposure (40 ks -> 10, 20, 30, 40). Lengths above the clean exposure give no slice.
    slice_unit_ks : float
        The slice unit for ``"all"`` (10 ks).
    include_full : bool
        Also make the image of the whole clean exposure (``length_ks=None``).
    flare_threshold : float
        Threshold in counts/s of the light curve built from the events when no FBKTSR is
        given (the standard pn value 0.4).
    fbktsr_threshold : float or None
        Threshold for the FBKTSR ``RATE``; ``None`` uses the file's ``FLCUTTHR`` keyword.
    flare_min_gti_s : float
        Good intervals shorter than this are dropped (tabgtigen ``mingtisize``, 50 s).
    lightcurve_bin_s : float
        Bin size of the light curve built from the events (100 s).
    lightcurve_expression : str
        Event selection of that light curve (PATTERN==0, 10 < PI < 12 keV).
    grids : tuple of str
        Grids to bin on: ``"1x"`` (always made, 403x411 of 4") and optionally ``"2x"``.
    """

    expression: str = DEFAULT_EXPRESSION
    band: tuple[int, int] = (500, 2000)
    slice_lengths_ks: tuple[float, ...] | str = "all"
    slice_unit_ks: float = 10.0
    include_full: bool = True
    flare_threshold: float = 0.4
    fbktsr_threshold: float | None = None
    flare_min_gti_s: float = 50.0
    lightcurve_bin_s: float = 100.0
    lightcurve_expression: str = DEFAULT_LIGHTCURVE_EXPRESSION
    grids: tuple[str, ...] = ("1x",)

    def __post_init__(self) -> None:
        # expressions: parse now so that a bad config fails before any file is read
        object.__setattr__(self, "_expr", parse_expression(self.expression))
        object.__setattr__(self, "_lc_expr", parse_expression(self.lightcurve_expression))
        try:
            lo, hi = (int(v) for v in self.band)
        except (TypeError, ValueError):
            raise ConfigError(f"events.band must be two integers in eV, got {self.band!r}") from None
        if not 0 <= lo <= hi:
            raise ConfigError(f"events.band must satisfy 0 <= lo <= hi, got {self.band!r}")
        object.__setattr__(self, "band", (lo, hi))
        lengths = self.slice_lengths_ks
        if isinstance(lengths, str):
            if lengths.lower() != "all":
                raise ConfigError(
                    f"events.slice_lengths_ks must be 'all' or a list of lengths in ks, got {lengths!r}"
                )
            object.__setattr__(self, "slice_lengths_ks", "all")
        else:
            try:
                vals = tuple(float(v) for v in lengths)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"events.slice_lengths_ks must be 'all' or numbers in ks, got {lengths!r}"
                ) from None
            if any(not (math.isfinite(v) and v > 0) for v in vals):
                raise ConfigError(f"events.slice_lengths_ks must be positive, got {lengths!r}")
            if len(set(vals)) != len(vals):
                raise ConfigError(f"events.slice_lengths_ks has duplicates: {lengths!r}")
            object.__setattr__(self, "slice_lengths_ks", tuple(sorted(vals)))
        for name in ("slice_unit_ks", "flare_threshold", "lightcurve_bin_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"events.{name} must be a positive number, got {v!r}")
        if not (isinstance(self.flare_min_gti_s, (int, float)) and self.flare_min_gti_s >= 0):
            raise ConfigError(f"events.flare_min_gti_s must be >= 0, got {self.flare_min_gti_s!r}")
        if self.fbktsr_threshold is not None and not (
            isinstance(self.fbktsr_threshold, (int, float)) and self.fbktsr_threshold > 0
        ):
            raise ConfigError(
                f"events.fbktsr_threshold must be a positive number or null, got {self.fbktsr_threshold!r}"
            )
        grids = (self.grids,) if isinstance(self.grids, str) else tuple(self.grids)
        bad = [g for g in grids if g not in _GRIDS]
        if bad:
            raise ConfigError(f"events.grids: unknown grid(s) {bad}; choose from {sorted(_GRIDS)}")
        if "1x" not in grids:
            grids = ("1x",) + grids
        object.__setattr__(self, "grids", tuple(dict.fromkeys(grids)))

    # ------------------------------------------------------------------ helpers
    @property
    def screening(self) -> Expression:
        """The parsed screening expression (without the band)."""
        return self._expr  # type: ignore[attr-defined]

    @property
    def lightcurve_selection(self) -> Expression:
        """The parsed selection of the flare light curve built from the events."""
        return self._lc_expr  # type: ignore[attr-defined]

    @property
    def band_expression(self) -> str:
        """The band as a selection expression, ``PI in [lo:hi]``."""
        return f"PI in [{self.band[0]}:{self.band[1]}]"

    @property
    def full_expression(self) -> str:
        """Screening and band combined, as recorded in the image headers."""
        return f"({self.expression}) && {self.band_expression}"

    def grid(self, name: str) -> DetGrid:
        """The :class:`DetGrid` named ``"1x"`` or ``"2x"``."""
        return _GRIDS[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the options (for provenance and YAML)."""
        out = asdict(self)
        out["band"] = list(self.band)
        out["grids"] = list(self.grids)
        if not isinstance(self.slice_lengths_ks, str):
            out["slice_lengths_ks"] = list(self.slice_lengths_ks)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EventsConfig":
        """Build a config from a mapping (e.g. the ``events:`` section of a YAML file).

        Parameters
        ----------
        data : mapping or None
            Option names as in the constructor; unknown names are an error.

        Returns
        -------
        EventsConfig

        Raises
        ------
        ConfigError
            Unknown option or invalid value.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"events config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"events config: unknown option(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(data)
        for key in ("band", "grids"):
            if key in kwargs and isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        if isinstance(kwargs.get("slice_lengths_ks"), list):
            kwargs["slice_lengths_ks"] = tuple(kwargs["slice_lengths_ks"])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - guarded by the name check
            raise ConfigError(f"events config: {exc}") from None


@dataclass(frozen=True)
class ObservationMeta:
    """Header facts of one EPIC-pn exposure.

    Attributes
    ----------
    obsid, expidstr : str
        Observation (10 digits) and exposure (``S003``) identifiers.
    instrume, datamode, submode, filter : str
        ``EPN``, ``IMAGING``, ``PrimeFullWindow[Extended]``, ``Thin1``/``Medium``/``Thick``.
    ra_pnt, dec_pnt, pa_pnt : float
        Mean pointing (deg) and position angle (deg).
    date_obs, date_end : str
        Exposure start and end (UTC, ISO).
    tstart, tstop, ontime : float
        Mission times (s) and the header ONTIME (s).
    extra : dict
        Further keywords kept for provenance and the sky WCS (``RA_NOM``, ``REFXCRVL``, ...).
    """

    obsid: str
    expidstr: str
    instrume: str = "EPN"
    datamode: str = "IMAGING"
    submode: str = ""
    filter: str = ""
    ra_pnt: float = float("nan")
    dec_pnt: float = float("nan")
    pa_pnt: float = float("nan")
    date_obs: str = ""
    date_end: str = ""
    tstart: float = float("nan")
    tstop: float = float("nan")
    ontime: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class EventList:
    """Columns of a PIEVLI ``EVENTS`` table and its good time intervals.

    Attributes
    ----------
    path : str
        The file read.
    meta : ObservationMeta
        Header facts.
    columns : dict of str to ndarray
        Native-endian 1-D arrays keyed by upper-case column name, sorted by ``TIME``.
    ccd_gtis : dict of int to ndarray
        ``STDGTInn`` intervals per CCD, each ``(n, 2)`` float64 ``[start, stop)``.
    gtis : ndarray
        The intervals in which every CCD with a GTI table was recording (their intersection).
    """

    path: str
    meta: ObservationMeta
    columns: dict[str, np.ndarray]
    ccd_gtis: dict[int, np.ndarray]
    gtis: np.ndarray

    def __len__(self) -> int:
        return len(self.columns["TIME"]) if "TIME" in self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name.upper()]

    @property
    def n_events(self) -> int:
        """Number of events."""
        return len(self)

    @property
    def exposure_s(self) -> float:
        """Sum of :attr:`gtis` in seconds."""
        return float(np.sum(self.gtis[:, 1] - self.gtis[:, 0])) if len(self.gtis) else 0.0


@dataclass(frozen=True)
class Slice:
    """A piece of the clean exposure.

    Attributes
    ----------
    length_ks : float or None
        Nominal length in ks; ``None`` for the whole clean exposure.
    n_slices : int
        Number of slices of this length in the observation.
    index : int
        0-based position of this slice among them (in time order).
    gtis : ndarray
        ``(n, 2)`` float64 ``[start, stop)`` intervals of the slice (subset of the clean GTIs).
    """

    length_ks: float | None
    n_slices: int
    index: int
    gtis: np.ndarray

    @property
    def exposure_s(self) -> float:
        """Exact exposure: the sum of the slice's GTIs in seconds."""
        return float(np.sum(self.gtis[:, 1] - self.gtis[:, 0])) if len(self.gtis) else 0.0

    @property
    def start(self) -> float:
        """Start of the first GTI."""
        return float(self.gtis[0, 0])

    @property
    def stop(self) -> float:
        """End of the last GTI."""
        return float(self.gtis[-1, 1])

    @property
    def label(self) -> str:
        """``"<len>ks_<n>_<i>"`` or ``"full"``, as used in file names."""
        if self.length_ks is None:
            return "full"
        return f"{_fmt_ks(self.length_ks)}ks_{self.n_slices}_{self.index}"


def _fmt_ks(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass
class SliceImage:
    """Counts image of one slice on the DET grid.

    Attributes
    ----------
    obsid, expidstr : str
        Identifiers.
    length_ks : float or None
        Nominal slice length (``None``: the whole clean exposure).
    n_slices, index : int
        Number of slices of this length and this slice's 0-based index.
    gtis : ndarray
        ``(n, 2)`` GTIs of the slice.
    exposure_s : float
        Exact exposure (sum of ``gtis``).
    counts : ndarray of int32
        Counts, shape ``grid.shape`` ``(ny, nx)``, *not* masked.
    mask : ndarray of bool
        Detector mask on ``grid`` (``True``: the pixel can record events).
    grid : DetGrid
        The grid of ``counts``.
    band : (int, int)
        PI band in eV.
    expression : str
        Screening expression (without the band).
    counts_2x, mask_2x : ndarray or None
        The same on the 2x grid when requested.
    meta : ObservationMeta or None
        Header facts (pointing for the sky WCS, filter, dates).
    """

    obsid: str
    expidstr: str
    length_ks: float | None
    n_slices: int
    index: int
    gtis: np.ndarray
    exposure_s: float
    counts: np.ndarray
    mask: np.ndarray
    grid: DetGrid
    band: tuple[int, int]
    expression: str
    counts_2x: np.ndarray | None = None
    mask_2x: np.ndarray | None = None
    meta: ObservationMeta | None = None

    @property
    def rate(self) -> np.ndarray:
        """Count rate in counts/s/pixel (``counts / exposure_s``, float32, unmasked)."""
        if self.exposure_s <= 0:
            raise ValueError(f"slice {self.label} of {self.obsid} has no exposure")
        return (self.counts / self.exposure_s).astype(np.float32)

    @property
    def label(self) -> str:
        """``"<len>ks_<n>_<i>"`` or ``"full"``."""
        return Slice(self.length_ks, self.n_slices, self.index, self.gtis).label

    @property
    def filename(self) -> str:
        """Conventional file name ``<obsid>_<exp>ks_<nslices>_<i>.fits`` (``<obsid>_full.fits``)."""
        return f"{self.obsid}_{self.label}.fits"

    @property
    def total_counts(self) -> int:
        """Sum of :attr:`counts`."""
        return int(self.counts.sum(dtype=np.int64))


@dataclass
class ProcessedObservation:
    """The output of :func:`~xsa_enhance.events.process_event_list` for one exposure.

    Attributes
    ----------
    meta : ObservationMeta
        Header facts (``obsid``, ``ra_pnt`` ... are also properties here).
    ccd_gtis : ndarray
        Intervals in which all CCDs were recording.
    clean_gtis : ndarray
        ``ccd_gtis`` minus the flares.
    clean_exposure_s : float
        Sum of ``clean_gtis``.
    flare_fraction : float
        ``1 - clean / ccd`` exposure.
    flare_source : str
        ``"FBKTSR"`` or ``"events"`` (light curve built from the event list).
    n_events, n_screened : int
        Events read, and events passing screening and band inside the clean GTIs and on
        the 1x grid.
    slices : list of SliceImage
        The whole-exposure image first (when configured), then the slices by length and index.
    config : EventsConfig
        The options used.
    """

    meta: ObservationMeta
    ccd_gtis: np.ndarray
    clean_gtis: np.ndarray
    clean_exposure_s: float
    flare_fraction: float
    flare_source: str
    n_events: int
    n_screened: int
    slices: list[SliceImage]
    config: EventsConfig

    obsid = property(lambda self: self.meta.obsid, doc="Observation identifier.")
    expidstr = property(lambda self: self.meta.expidstr, doc="Exposure identifier (S003).")
    ra_pnt = property(lambda self: self.meta.ra_pnt, doc="Pointing RA (deg).")
    dec_pnt = property(lambda self: self.meta.dec_pnt, doc="Pointing Dec (deg).")
    pa_pnt = property(lambda self: self.meta.pa_pnt, doc="Position angle (deg).")
    filter = property(lambda self: self.meta.filter, doc="Filter name.")
    submode = property(lambda self: self.meta.submode, doc="pn sub-mode.")
    date_obs = property(lambda self: self.meta.date_obs, doc="Exposure start (UTC).")
    date_end = property(lambda self: self.meta.date_end, doc="Exposure end (UTC).")
    ontime = property(lambda self: self.meta.ontime, doc="Header ONTIME (s).")

    @property
    def full_image(self) -> SliceImage | None:
        """The image of the whole clean exposure, if it was made."""
        for img in self.slices:
            if img.length_ks is None:
                return img
        return None

    def images(self, length_ks: float) -> list[SliceImage]:
        """The slice images of one length, in time order."""
        return [s for s in self.slices if s.length_ks is not None and math.isclose(s.length_ks, length_ks)]
