"""Model weights of a run: resolved once in the driver, before anything is harvested.

:func:`resolve_models` turns the configured names (aliases, versions, weight files) and clamp
modes into one :class:`ModelInfo` per (weights, clamp) pair; the tasks load the weights by
reference and check the sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xsa_enhance.errors import XsaError

__all__ = ["ModelInfo", "resolve_models"]


@dataclass
class ModelInfo:
    """Weights resolved by the driver for one clamp (the tasks load them by reference and
    check the sha).

    Attributes
    ----------
    ref : str
        What the tasks load: the resolved registry id (``xmm-superres-v5``) or the file path.
    name : str
        The weights id (product keys and catalog rows use it).
    kind : str
        ``sr`` or ``dn``.
    sha256 : str
        Digest of the weights.
    clamp : str
        The clamp these weights run with ("" when resolved without one).
    source : str
        The configured name (an alias such as ``xmm-superres``, a version or a path).
    trained_clamp : str
        The clamp mode the weights were trained for (their config ``clamp``).
    clamp_mismatch : bool
        Whether ``clamp`` is of another family (only with ``enhance.allow_clamp_mismatch``).
    """

    ref: str
    name: str
    kind: str
    sha256: str
    clamp: str = ""
    source: str = ""
    trained_clamp: str = "constant"
    clamp_mismatch: bool = False


#: The aliases of the shipped models (the default ``enhance.models``).
_STANDARD_ALIASES: tuple[str, ...] = ("xmm-superres", "xmm-denoise")


def resolve_models(
    refs: tuple[str, ...] | list[str],
    clamps: tuple[str, ...] | list[str] | None = None,
    *,
    require: bool = False,
    allow_clamp_mismatch: bool = False,
) -> tuple[list[ModelInfo], list[str]]:
    """Resolve the weights of every (model, clamp) pair once in the driver.

    An alias (``xmm-superres``) gets, for each clamp, the newest weights trained for that
    clamp mode, so one alias under two clamps may give two different weights; an explicit
    version or a weight file is checked against each clamp's mode. Each weights file is
    loaded once to learn its name, kind and sha256.

    Parameters
    ----------
    refs : sequence of str
        Registry aliases, versions or weight paths.
    clamps : sequence of str, optional
        Clamp modes every model runs with (default: ``constant``).
    require : bool
        Raise when weights are not installed (missing or unreadable file, empty registry)
        instead of noting it.
    allow_clamp_mismatch : bool
        Accept explicit versions and files whose trained clamp mode differs (recorded in
        :attr:`ModelInfo.clamp_mismatch`).

    Returns
    -------
    models : list of ModelInfo
        One per (model, clamp) pair that has weights (pairs resolving to the same weights
        and clamp appear once).
    notes : list of str
        One line per model that could not be loaded.

    Raises
    ------
    ConfigError
        An unknown model name, an alias without weights for one of the clamp modes, or an
        explicit version / file trained for another mode (unless ``allow_clamp_mismatch``):
        one line.
    """
    from xsa_enhance.errors import ConfigError
    from xsa_enhance.models import load_model
    from xsa_enhance.models.registry import (
        clamp_family,
        clamp_mismatch_message,
        is_model_path,
        list_models,
        resolve_model,
    )

    clamp_list = [str(c) for c in (clamps if clamps else ("constant",))]
    flag = "set enhance.allow_clamp_mismatch: true"
    models: list[ModelInfo] = []
    notes: list[str] = []
    loaded: dict[str, Any] = {}  # ref -> LoadedModel or the note of its failure
    seen: set[tuple[str, str]] = set()
    registry_empty: bool | None = None
    for ref in refs:
        ref = str(ref)
        path = is_model_path(ref)
        for clamp in clamp_list:
            family = clamp_family(clamp)
            if path:
                target = ref
            else:
                try:
                    target = resolve_model(ref, clamp=clamp).id
                except ConfigError as exc:
                    if registry_empty is None:
                        registry_empty = not list_models()
                    if not registry_empty or require or ref not in _STANDARD_ALIASES:
                        # an unknown name stops the run before anything is harvested; only
                        # the standard aliases may lack weights (an empty registry)
                        if registry_empty and ref not in _STANDARD_ALIASES:
                            raise ConfigError(
                                f"unknown model {ref!r}: no weights are registered; known "
                                f"aliases: {', '.join(_STANDARD_ALIASES)} (install weights "
                                "with `xsa-enhance model register`, or give a .pt path)"
                            ) from exc
                        raise
                    note = f"model {ref} not available ({exc}); its products are not made"
                    if note not in notes:
                        notes.append(note)
                    continue
            if target not in loaded:
                try:
                    m = load_model(target)
                except XsaError as exc:
                    if require:
                        raise
                    loaded[target] = f"model {ref} not available ({exc}); its products are not made"
                else:
                    loaded[target] = m
            m = loaded[target]
            if isinstance(m, str):
                if m not in notes:
                    notes.append(m)
                continue
            mismatch = m.clamp_family != family
            if mismatch and not allow_clamp_mismatch:
                raise ConfigError(clamp_mismatch_message(
                    m.name, m.clamp_family, family,
                    alias=None if path else resolve_model(ref).name, flag=flag))
            key = (m.name, clamp)
            if key in seen:
                continue
            seen.add(key)
            models.append(ModelInfo(ref=target, name=m.name, kind=m.kind, sha256=m.sha256,
                                    clamp=clamp, source=ref, trained_clamp=str(m.clamp),
                                    clamp_mismatch=bool(mismatch)))
    if refs and not models:
        notes.append(
            "no trained model is installed: only the un-enhanced slice images were written "
            "(install weights with `xsa-enhance model register`)"
        )
    return models, notes
