"""The methods a real-data evaluation scores: the input, classical baselines and models.

Each is a :class:`MethodSpec`: a :data:`Predictor` ``(counts_1x, exposure_s, mask_1x) -> rate``
with its output grid factor. :func:`baseline_methods` builds the input itself and the classical
methods of :mod:`xsa_enhance.training.baselines`; :func:`model_methods` each model run with
each clamp mode.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsa_enhance.errors import ConfigError

__all__ = [
    "DEFAULT_CLAMPS",
    "BASELINE_METHODS",
    "Predictor",
    "MethodSpec",
    "baseline_methods",
    "model_methods",
]

#: Clamp modes every model is run with by default.
DEFAULT_CLAMPS: tuple[str, ...] = ("constant", "quantile:0.9999", "none")
#: Classical methods scored next to the input (all on the 1x grid, background included).
BASELINE_METHODS: tuple[str, ...] = ("gaussian", "wavelet", "richardson_lucy")

#: A predictor: ``(counts_1x, exposure_s, mask_1x) -> rate`` on its output grid.
Predictor = Callable[[np.ndarray, float, np.ndarray], np.ndarray]


@dataclass
class MethodSpec:
    """A method to evaluate: a predictor with its output grid.

    Attributes
    ----------
    label : str
        Row label in the report (``gaussian``, ``xmm-denoise-v3``).
    clamp : str or None
        Clamp mode (None for the input and classical methods).
    factor : int
        Output grid factor: 1 (DN, classical) or 2 (SR, background-free).
    predict : Predictor
        ``(counts, exposure_s, mask) -> rate`` on the output grid.
    meta : dict
        Model name, weights digest, the clamp the weights were trained for.
    """

    label: str
    clamp: str | None
    factor: int
    predict: Predictor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique key: ``label`` or ``label [clamp]``."""
        return self.label if self.clamp is None else f"{self.label} [{self.clamp}]"


def _enhance_kwargs(enhance_fn: Callable[..., Any]) -> dict[str, Any]:
    """``allow_clamp_mismatch=True`` when :func:`enhance` accepts it (newer engines)."""
    try:
        params = inspect.signature(enhance_fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return {}
    return {"allow_clamp_mismatch": True} if "allow_clamp_mismatch" in params else {}


def model_methods(models: Sequence[tuple[Any, str]]) -> list[MethodSpec]:
    """Load each model once and build a :class:`MethodSpec` per (model, clamp) pair.

    Parameters
    ----------
    models : sequence of (str or LoadedModel, str)
        Registered name, weight file or loaded model, and the clamp spec to run it with.

    Returns
    -------
    list of MethodSpec
        In the given order. An alias (``xmm-denoise``) resolves to the newest weights trained
        for each clamp mode; an explicit version or weight file is run as given with each
        clamp, and ``allow_clamp_mismatch=True`` is passed to
        :func:`~xsa_enhance.models.inference.enhance` when it has that keyword, so that a
        clamp other than the one the weights were trained for is evaluated, not refused.
    """
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.models.normalise import ClampSpec
    from xsa_enhance.models.registry import LoadedModel, load_model

    extra = _enhance_kwargs(enhance)
    cache: dict[tuple[str, str], Any] = {}
    out = []
    for model, clamp in models:
        spec = str(ClampSpec.parse(clamp))
        if isinstance(model, LoadedModel):
            loaded = model
        else:
            key = (os.fspath(model), ClampSpec.parse(clamp).mode)
            if key not in cache:
                # an alias resolves to the weights trained for this clamp mode; an explicit
                # version or file is evaluated as given, even with another mode
                cache[key] = load_model(key[0], clamp=spec, allow_clamp_mismatch=True)
            loaded = cache[key]

        def predict(counts: np.ndarray, exposure_s: float, mask: np.ndarray,
                    _m: Any = loaded, _c: str = spec) -> np.ndarray:
            res = enhance(counts, exposure_s, mask, _m, clamp=_c, **extra)
            return np.asarray(res.counts, dtype=np.float64) / float(res.exposure_s)

        out.append(MethodSpec(label=loaded.name, clamp=spec, factor=int(loaded.factor),
                              predict=predict,
                              meta={"model": loaded.name, "kind": loaded.kind,
                                    "weights_sha256": loaded.sha256,
                                    "trained_clamp": str(getattr(loaded, "clamp", "constant")),
                                    "target_exposure_s": loaded.target_exposure_s}))
    return out


def baseline_methods(names: Sequence[str]) -> list[MethodSpec]:
    """The input itself (label ``input``) and the named classical methods, on the 1x grid.

    Parameters
    ----------
    names : sequence of str
        Classical methods of :data:`xsa_enhance.training.baselines.BASELINES`.

    Returns
    -------
    list of MethodSpec
        ``input`` first, then one per name, in the given order.

    Raises
    ------
    ConfigError
        An unknown method name.
    """
    from xsa_enhance.training.baselines import BASELINES, run_baselines

    out = [MethodSpec("input", None, 1,
                      lambda c, e, m: np.asarray(c, dtype=np.float64) / e * (m > 0))]
    for name in names:
        if name not in BASELINES:
            raise ConfigError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")

        def predict(c: np.ndarray, e: float, m: np.ndarray, _n: str = name) -> np.ndarray:
            return run_baselines(c, e, m, factor=1, names=(_n,))[_n]

        out.append(MethodSpec(name, None, 1, predict))
    return out
