"""Filters of the catalog queries: each value checked against what exists.

Every filter value is checked (obsid format, models and aliases, clamp syntax, sky ranges,
statuses, dates): a wrong value is a one-line :class:`~xsa_enhance.errors.ConfigError`
naming the valid choices, never an empty answer.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.time import Time

from xsa_enhance.errors import ConfigError, ObservationError
from xsa_enhance.obsid import validate_obsid

__all__ = ["STATUSES", "parse_time", "after", "parse_cone", "model_filter", "clamp_filter",
           "obsid_filter"]

logger = logging.getLogger(__name__)

#: Status values each catalog can hold (``--status`` accepts only these).
STATUSES: dict[str, tuple[str, ...]] = {
    "observations": ("ok", "skipped"),
    "runs": ("ok", "failed", "skipped"),
}


def parse_time(value: str, option: str = "--since") -> Time:
    """Read a date filter (ISO 8601, UTC).

    Parameters
    ----------
    value : str
        ``YYYY-MM-DD[THH:MM:SS]``.
    option : str
        The option it came from, for the message.

    Returns
    -------
    astropy.time.Time

    Raises
    ------
    ConfigError
        When the value is not a date.
    """
    from erfa import ErfaWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ErfaWarning)  # far-future dates are fine here
            return Time(str(value).strip(), scale="utc")
    except ValueError as exc:
        raise ConfigError(f"cannot read {option} {value!r} as a date "
                          "(use YYYY-MM-DD[THH:MM:SS], UTC)") from exc


def after(values: Iterable[object], t0: Time, *, before: bool = False) -> np.ndarray:
    """Rows whose ISO time is at or after ``t0`` (strictly before with ``before``).

    Parameters
    ----------
    values : iterable
        ISO 8601 UTC times; empty ones never match.
    t0 : astropy.time.Time
        The limit.
    before : bool
        Select the times strictly before ``t0`` instead.

    Returns
    -------
    numpy.ndarray
        Boolean mask.
    """
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


def clamp_filter(clamp: str, values: np.ndarray) -> np.ndarray:
    """Rows whose clamp mode matches ``clamp``.

    Parameters
    ----------
    clamp : str
        A family (``constant``, ``quantile``, ``none``: matches every mode of it) or an exact
        mode (``quantile:0.9999``).
    values : numpy.ndarray
        The rows' clamp modes.

    Returns
    -------
    numpy.ndarray
        Boolean mask.

    Raises
    ------
    ConfigError
        When ``clamp`` is not a clamp mode.
    """
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


def obsid_filter(obsid: str | Sequence[str]) -> set[str]:
    """The observation ids an ``--obsid`` filter names.

    Parameters
    ----------
    obsid : str or sequence of str
        One id or several.

    Returns
    -------
    set of str

    Raises
    ------
    ConfigError
        For a value that is not an XMM-Newton observation id (10 digits).
    """
    values = [obsid] if isinstance(obsid, str) else list(obsid)
    out = set()
    for v in values:
        try:
            out.add(validate_obsid(v))
        except ObservationError as exc:
            raise ConfigError(f"--obsid {v!r}: not an XMM-Newton observation id (10 digits, "
                              "e.g. 0123700101)") from exc
    return out


