"""Normalisation of rate images for the networks: clamping and stretches, with exact inverses.

The forward chain (paper sec. 2.3, DESIGN.md sec. 7) is::

    rate (counts/s/pixel) -> clip to [0, value] -> / value -> stretch -> clip to [0, 1]

and :func:`denormalise` undoes each step (inverse stretch, times ``value``). Values above the
clamp are lost by the forward chain; :mod:`xsa_enhance.models.restore` puts that flux back
after inference.

Clamp modes (:class:`ClampSpec`)
--------------------------------
``constant``
    The paper's constants: 0.0022336 counts/s/pixel (200 mean backgrounds, 200 x 1.1168e-5)
    for inputs and de-noising targets, 0.0005584 (= / 4) for super-resolution targets, whose
    pixels are four times smaller. ``constant:V`` sets another value for the input.
``quantile:q``
    Per image: the ``q`` quantile (e.g. 0.9999) of the rate over the pixels inside the mask
    (all pixels when no mask is given). This is the follow-up talk's clamp that keeps bright
    sources visible.
``none``
    The high-dynamic-range normalisation: no per-image value at all. The rate is divided by
    a fixed ceiling (:data:`HDR_CEILING`, 2 counts/s/pixel, far above any un-piled-up pixel)
    and models trained for this mode use the ``hdr`` stretch, which equals the constant
    clamp's sqrt stretch (scaled by ``1 / HDR_GAIN``) up to the constant clamp and continues
    logarithmically above it, so bright cores are enhanced too instead of being clipped and
    restored at the input resolution. Only pixels above the ceiling are clipped (and
    restored).

The value of a network *output* cannot come from the (unknown) target; it is the input value
times the model's *output clamp ratio* (:func:`output_clamp_ratio`, :meth:`NormInfo.for_output`).
The paper's ratio is ``1 / factor**2`` (0.25 for SR, the ratio of its constants: the flux of one
input pixel spreads over ``factor**2`` output pixels). That is right for flat, extended emission
but not for point sources: a PSF that shrinks with the pixel puts the *same* fraction of a
source's flux into its central pixel, so an SR target's point-source peaks are about as high
per pixel as the input's and a ratio of 0.25 clips them at a quarter of that (the talk's
"clamping broke the input-target PSF relation"). Models trained with ``output_clamp_ratio: 1``
(``xmm-superres-v4`` on) keep those peaks. A value that would be zero or non-finite (an empty
image) falls back to the constant.

Stretches
---------
``linear`` ``y = x``; ``sqrt`` ``y = sqrt(x)`` (the paper's choice); ``asinh``
``y = asinh(x / a) / asinh(1 / a)`` with ``a = 0.02``; ``log`` ``y = log(a x + 1) / log(a + 1)``
with ``a = 1000``; ``hdr`` (for the ``none`` clamp mode) ``y = g(x / k) / g(1 / k)`` with
``k = INPUT_CLAMP / HDR_CEILING`` and ``g(u) = sqrt(u)`` for ``u <= 1``, ``1 + ln(u) / 2``
above (continuous with its first derivative at the knee ``u = 1``, i.e. at the constant clamp).
The log stretch is normalised by ``log(a + 1)`` (astropy's current
``LogStretch``) rather than ``log(a)`` so that it maps [0, 1] onto [0, 1] exactly and has an
exact inverse; the two differ by a factor 0.99986. All functions accept numpy arrays and torch
tensors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xsa_enhance.errors import ConfigError

__all__ = [
    "MEAN_BACKGROUND_RATE",
    "INPUT_CLAMP",
    "DN_TARGET_CLAMP",
    "SR_TARGET_CLAMP",
    "ASINH_A",
    "LOG_A",
    "HDR_CEILING",
    "HDR_KNEE",
    "HDR_GAIN",
    "STRETCHES",
    "ClampSpec",
    "NormInfo",
    "stretch_forward",
    "stretch_inverse",
    "clamp_value",
    "output_clamp_ratio",
    "normalise",
    "denormalise",
]

logger = logging.getLogger(__name__)

#: The paper's mean background, counts/s per 4 arcsec pixel (0.5-2 keV).
MEAN_BACKGROUND_RATE: float = 1.1168e-5
#: Constant clamp of inputs (20 ks, 1x grid), counts/s/pixel (= 200 mean backgrounds).
INPUT_CLAMP: float = 0.0022336
#: Constant clamp of de-noising targets (1x grid), counts/s/pixel.
DN_TARGET_CLAMP: float = 0.0022336
#: Constant clamp of super-resolution targets (2x grid), counts/s/pixel (= INPUT_CLAMP / 4).
SR_TARGET_CLAMP: float = 0.0005584
#: Softening of the asinh stretch.
ASINH_A: float = 0.02
#: Scale of the log stretch.
LOG_A: float = 1000.0
#: Fixed rate ceiling of the ``none`` clamp mode, counts/s/pixel (~900 constant clamps: 40,000
#: counts in one pixel in 20 ks, beyond the pile-up limit of EPIC-pn full frame).
HDR_CEILING: float = 2.0
#: Knee of the ``hdr`` stretch on the ``rate / HDR_CEILING`` scale (the constant clamp).
HDR_KNEE: float = INPUT_CLAMP / HDR_CEILING
#: ``g(1 / HDR_KNEE)``: below the knee, ``hdr`` values are the sqrt stretch of the constant
#: clamp divided by this gain.
HDR_GAIN: float = 1.0 + 0.5 * math.log(1.0 / HDR_KNEE)
#: Names of the supported stretches.
STRETCHES: tuple[str, ...] = ("linear", "sqrt", "asinh", "log", "hdr")

ClampMode = Literal["constant", "quantile", "none"]


@dataclass(frozen=True)
class ClampSpec:
    """How to choose the clamp value of an image.

    Parameters
    ----------
    mode : {"constant", "quantile", "none"}
        See the module documentation.
    q : float, optional
        Quantile in (0, 1] for ``mode="quantile"``.
    value : float, optional
        Input clamp for ``mode="constant"`` (default: the paper's 0.0022336).
    """

    mode: ClampMode
    q: float | None = None
    value: float | None = None

    @classmethod
    def parse(cls, text: "str | ClampSpec") -> "ClampSpec":
        """Parse ``"constant"``, ``"constant:V"``, ``"quantile:q"`` or ``"none"``.

        Parameters
        ----------
        text : str or ClampSpec
            The specification (a ClampSpec is returned unchanged).

        Returns
        -------
        ClampSpec

        Raises
        ------
        ConfigError
            For anything else, naming the text and the accepted forms.
        """
        if isinstance(text, ClampSpec):
            return text
        s = str(text).strip().lower()
        forms = "expected 'constant', 'constant:VALUE', 'quantile:Q' with 0 < Q <= 1, or 'none'"
        name, _, arg = s.partition(":")
        try:
            if name == "none" and not arg:
                return cls("none")
            if name == "constant":
                if not arg:
                    return cls("constant")
                v = float(arg)
                if not (math.isfinite(v) and v > 0):
                    raise ValueError
                return cls("constant", value=v)
            if name == "quantile":
                q = float(arg) if arg else 0.9999
                if not (0.0 < q <= 1.0):
                    raise ValueError
                return cls("quantile", q=q)
        except ValueError:
            pass
        raise ConfigError(f"invalid clamp {text!r}: {forms}")

    def __str__(self) -> str:
        if self.mode == "quantile":
            return f"quantile:{self.q:g}"
        if self.mode == "constant" and self.value is not None:
            return f"constant:{self.value:g}"
        return self.mode


@dataclass(frozen=True)
class NormInfo:
    """What :func:`normalise` did, enough for :func:`denormalise` to undo it.

    Parameters
    ----------
    mode : str
        Clamp mode (``"constant"``, ``"quantile"``, ``"none"``).
    value : float
        Clamp value in counts/s/pixel (the rate that maps to 1 before the stretch).
    stretch : str
        Stretch name.
    q : float, optional
        The quantile, for quantile clamps.
    """

    mode: str
    value: float
    stretch: str
    q: float | None = None

    def for_output(self, factor: int, ratio: float | None = None) -> "NormInfo":
        """The info for a network output on a grid ``factor`` times finer.

        Parameters
        ----------
        factor : int
            Output grid factor (1 for DN, 2 for SR).
        ratio : float, optional
            Output clamp value / input clamp value (default the paper's ``1 / factor**2``,
            :func:`output_clamp_ratio`).
        """
        r = output_clamp_ratio(factor, ratio)
        return NormInfo(self.mode, self.value * r, self.stretch, self.q)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for product attributes)."""
        return {"clamp_mode": self.mode, "clamp_value": self.value, "stretch": self.stretch,
                "clamp_quantile": self.q}


def _xp(x: Any):
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np
    import torch

    if isinstance(x, torch.Tensor):
        return torch
    return np


def _check_stretch(stretch: str) -> str:
    if stretch not in STRETCHES:
        raise ConfigError(f"unknown stretch {stretch!r}; expected one of {', '.join(STRETCHES)}")
    return stretch


def stretch_forward(x: Any, stretch: str) -> Any:
    """Apply a stretch to values in [0, 1] (numpy array or torch tensor).

    Parameters
    ----------
    x : array or tensor
        Values in [0, 1].
    stretch : {"linear", "sqrt", "asinh", "log"}
        The stretch.

    Returns
    -------
    array or tensor
        Stretched values in [0, 1], same type as ``x``.
    """
    _check_stretch(stretch)
    xp = _xp(x)
    if stretch == "linear":
        return x * 1.0
    if stretch == "sqrt":
        return xp.sqrt(x)
    if stretch == "asinh":
        return xp.arcsinh(x / ASINH_A) / math.asinh(1.0 / ASINH_A)
    if stretch == "hdr":
        u = x / HDR_KNEE
        if xp is np:
            u = np.asarray(u, dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                low = np.sqrt(np.clip(u, 0.0, None))
                high = 1.0 + 0.5 * np.log(np.maximum(u, 1.0))
        else:
            low = u.clamp(min=0.0).sqrt()
            high = 1.0 + 0.5 * u.clamp(min=1.0).log()
        return xp.where(u <= 1.0, low, high) / HDR_GAIN
    return xp.log1p(LOG_A * x) / math.log1p(LOG_A)


def stretch_inverse(y: Any, stretch: str) -> Any:
    """Exact inverse of :func:`stretch_forward` on [0, 1].

    Parameters
    ----------
    y : array or tensor
        Stretched values in [0, 1].
    stretch : {"linear", "sqrt", "asinh", "log"}
        The stretch.

    Returns
    -------
    array or tensor
        Linear values in [0, 1], same type as ``y``.
    """
    _check_stretch(stretch)
    xp = _xp(y)
    if stretch == "linear":
        return y * 1.0
    if stretch == "sqrt":
        return y * y
    if stretch == "asinh":
        return ASINH_A * xp.sinh(y * math.asinh(1.0 / ASINH_A))
    if stretch == "hdr":
        u = y * HDR_GAIN
        if xp is np:
            u = np.asarray(u, dtype=np.float64)
            high = np.exp(2.0 * (np.maximum(u, 1.0) - 1.0))
        else:
            high = (2.0 * (u.clamp(min=1.0) - 1.0)).exp()
        return xp.where(u <= 1.0, u * u, high) * HDR_KNEE
    return xp.expm1(y * math.log1p(LOG_A)) / LOG_A


def output_clamp_ratio(factor: int, ratio: float | None = None) -> float:
    """Output clamp value over input clamp value of a model.

    Parameters
    ----------
    factor : int
        Output grid factor (1 for DN, 2 for SR).
    ratio : float, optional
        The model's own ratio (its config key ``output_clamp_ratio``); ``None`` gives the
        paper's ``1 / factor**2`` (SR 0.25, DN 1).

    Returns
    -------
    float
        A positive, finite ratio.

    Raises
    ------
    ConfigError
        A ratio that is not a positive finite number.
    """
    if ratio is None:
        return 1.0 / float(factor) ** 2
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"output_clamp_ratio must be a number, got {ratio!r}") from None
    if not (math.isfinite(r) and r > 0):
        raise ConfigError(f"output_clamp_ratio must be positive and finite, got {ratio!r}")
    return r


def _constant_for(role: str, factor: int, spec: ClampSpec) -> float:
    base = spec.value if spec.value is not None else INPUT_CLAMP
    if role == "input":
        return base
    if spec.value is None:
        return SR_TARGET_CLAMP if factor == 2 else (DN_TARGET_CLAMP if factor == 1 else
                                                     INPUT_CLAMP / factor**2)
    return base / factor**2


def clamp_value(
    rate: np.ndarray,
    clamp: "str | ClampSpec",
    *,
    mask: np.ndarray | None = None,
    role: Literal["input", "target"] = "input",
    factor: int = 1,
) -> float:
    """The clamp value (counts/s/pixel) of an image.

    Parameters
    ----------
    rate : numpy.ndarray
        Rate image in counts/s/pixel.
    clamp : str or ClampSpec
        Clamp specification.
    mask : numpy.ndarray, optional
        Pixels to consider for quantiles (non-zero = inside).
    role : {"input", "target"}
        Whether the image is a network input or a training target; only matters for the
        constant clamp (SR targets use 0.0005584).
    factor : int
        Grid factor of a target (1 for DN, 2 for SR).

    Returns
    -------
    float
        A positive, finite value.
    """
    spec = ClampSpec.parse(clamp)
    if spec.mode == "constant":
        return float(_constant_for(role, factor, spec))
    if spec.mode == "none":
        return HDR_CEILING
    data = np.asarray(rate, dtype=np.float64)
    if mask is not None:
        data = data[np.asarray(mask) != 0]
    data = data[np.isfinite(data)]
    if data.size == 0:
        value = float("nan")
    else:
        value = float(np.quantile(data, spec.q))
    if not (math.isfinite(value) and value > 0):
        fallback = _constant_for(role, factor, ClampSpec("constant"))
        logger.warning(
            "%s clamp of an image without positive values gives %r; using the constant %g",
            spec, value, fallback,
        )
        value = fallback
    return value


def normalise(
    rate: np.ndarray,
    clamp: "str | ClampSpec",
    stretch: str = "sqrt",
    *,
    mask: np.ndarray | None = None,
    role: Literal["input", "target"] = "input",
    factor: int = 1,
) -> tuple[np.ndarray, NormInfo]:
    """Clamp, scale and stretch a rate image into [0, 1].

    Parameters
    ----------
    rate : numpy.ndarray
        Rate image (counts/s/pixel), already multiplied by the detector mask.
    clamp : str or ClampSpec
        ``"constant"``, ``"quantile:q"``, ``"none"`` (see :class:`ClampSpec`).
    stretch : {"linear", "sqrt", "asinh", "log"}
        The stretch (paper: sqrt).
    mask, role, factor
        See :func:`clamp_value`.

    Returns
    -------
    x : numpy.ndarray
        float32 image in [0, 1].
    info : NormInfo
        Clamp mode, value and stretch, for :func:`denormalise`.
    """
    spec = ClampSpec.parse(clamp)
    _check_stretch(stretch)
    value = clamp_value(rate, spec, mask=mask, role=role, factor=factor)
    r = np.nan_to_num(np.asarray(rate, dtype=np.float64), nan=0.0, posinf=value, neginf=0.0)
    lin = np.clip(r, 0.0, value) / value
    x = np.clip(stretch_forward(lin, stretch), 0.0, 1.0).astype(np.float32)
    return x, NormInfo(spec.mode, value, stretch, spec.q)


def denormalise(x: Any, info: NormInfo) -> Any:
    """Invert :func:`normalise`: inverse stretch, then times the clamp value.

    Parameters
    ----------
    x : array or tensor
        Normalised values (clipped to [0, 1] first).
    info : NormInfo
        From :func:`normalise` (use :meth:`NormInfo.for_output` for network outputs).

    Returns
    -------
    array or tensor
        Rate in counts/s/pixel (float64 for numpy input).
    """
    xp = _xp(x)
    if xp is np:
        y = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    else:
        y = x.clamp(0.0, 1.0)
    return stretch_inverse(y, info.stretch) * info.value
