"""Training configuration: :class:`TrainConfig`, the shipped presets and :func:`load_config`.

A preset is a YAML file in ``xsa_enhance/training/presets/``; a preset (or a configuration
file) may name another preset as its base with a ``preset`` key and give only the changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.models.normalise import HDR_GAIN, ClampSpec, output_clamp_ratio
from xsa_enhance.training.losses import FLUX_TERMS, LINEAR_TERMS, loss_from_config
from xsa_enhance.training.presets import preset_names

__all__ = ["TrainConfig", "PRESETS", "load_config", "preset_config"]

#: Names of the shipped presets (YAML files in ``xsa_enhance/training/presets/``).
PRESETS: tuple[str, ...] = preset_names()


@dataclass
class TrainConfig:
    """Configuration of one training run (the YAML keys are these field names).

    Parameters
    ----------
    kind : {"sr", "dn"}
        Which model.
    train_set : str
        Path of the simulator training set (Zarr) for training and validation.
    filters, blocks, growth : int
        Network size (paper: 32, 4, 32).
    exposure_channel : bool
        Give the network the exposure channel.
    crop : int
        Input crop side in 1x pixels.
    batch_size : int
        Samples per step (paper: 1).
    lr : float
        Adam learning rate (paper: 1e-4); betas 0.9, 0.999.
    loss : str or mapping
        Loss spec (see :func:`xsa_enhance.training.losses.loss_from_config`).
    stretch : str
        Normalisation stretch (paper: sqrt).
    p_extended, p_agn : float
        Probability of including an extended source / an AGN field in a sample.
    p_points : float
        Probability of including a field of bright point sources (training sets written with
        the ``points`` component; 0 = the paper's mixture).
    output_clamp_ratio : float or None
        Target clamp over input clamp (None: the paper's ``1 / factor**2``, SR 0.25; 1 keeps
        the peaks of point sources, whose PSF shrinks with the pixel; see
        :func:`xsa_enhance.models.normalise.output_clamp_ratio`). Stored in the exported
        weights' config, so that inference denormalises the output the same way.
    steps : int
        Total optimiser steps.
    val_every : int
        Steps between validations (and checkpoints).
    n_val : int
        Number of fixed validation crops.
    val_crop : int
        Side of the validation crops (input pixels).
    log_every : int
        Steps between training-loss log lines.
    seed : int
        Seed of weights, batches and validation crops.
    max_minutes : float or None
        Wall-clock limit; the run stops cleanly (validating and checkpointing) when reached.
    num_threads : int or None
        ``torch.set_num_threads`` (None: leave torch's default).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    grad_clip : float or None
        Clip the global gradient norm to this value before each optimiser step (None: no
        clipping).
    clamp : str
        The clamp mode the model is trained for and recorded in its weights (``constant``,
        ``quantile:q``, ``none``; see :class:`~xsa_enhance.training.data.PairSource`). The
        ``none`` mode goes with the ``hdr`` stretch.
    brightness : mapping or None
        Brightness augmentation of de-noising sets with expected targets, component ->
        ``[p, low, high]`` (see :class:`~xsa_enhance.training.data.PairSource`).
    init_rescale : float, "hdr" or None
        When fine-tuning (``init_weights``), multiply the first convolution by this factor and
        divide the last one by it, so that the network computes on inputs scaled by ``1 /
        factor`` exactly what it computed before, scaled by ``1 / factor``. ``"hdr"`` is
        :data:`~xsa_enhance.models.normalise.HDR_GAIN`: a constant-clamp model fine-tuned
        for the ``none`` mode then starts as the constant-clamp model below the constant clamp.
    """

    kind: str = "sr"
    train_set: str = ""
    filters: int = 32
    blocks: int = 4
    growth: int = 32
    exposure_channel: bool = False
    crop: int = 96
    batch_size: int = 1
    lr: float = 1e-4
    loss: Any = "lc"
    stretch: str = "sqrt"
    p_extended: float = 0.8
    p_agn: float = 0.8
    p_points: float = 0.0
    output_clamp_ratio: float | None = None
    steps: int = 10000
    val_every: int = 500
    n_val: int = 16
    val_crop: int = 128
    log_every: int = 50
    seed: int = 1
    max_minutes: float | None = None
    num_threads: int | None = None
    device: str = "auto"
    grad_clip: float | None = None
    clamp: str = "constant"
    init_rescale: float | str | None = None
    brightness: dict[str, list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def init_rescale_value(self) -> float | None:
        """``init_rescale`` as a number (``"hdr"`` resolved), or None."""
        if self.init_rescale is None:
            return None
        if self.init_rescale == "hdr":
            return HDR_GAIN
        try:
            v = float(self.init_rescale)
        except (TypeError, ValueError):
            raise ConfigError(f"init_rescale must be a number or 'hdr', got "
                              f"{self.init_rescale!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"init_rescale must be positive, got {self.init_rescale!r}")
        return v

    def validate(self) -> None:
        """Raise :class:`ConfigError` on inconsistent values."""
        if self.kind not in ("sr", "dn"):
            raise ConfigError(f"kind must be 'sr' or 'dn', got {self.kind!r}")
        for name in ("filters", "blocks", "growth", "crop", "batch_size", "steps", "val_every",
                     "n_val", "val_crop", "log_every"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        for name in ("p_extended", "p_agn", "p_points"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got "
                                  f"{getattr(self, name)!r}")
        if self.output_clamp_ratio is not None:
            output_clamp_ratio(2 if self.kind == "sr" else 1, self.output_clamp_ratio)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        spec = ClampSpec.parse(self.clamp)
        if spec.mode == "none" and self.stretch != "hdr":
            raise ConfigError(f"clamp 'none' needs the 'hdr' stretch, config has {self.stretch!r}")
        if spec.mode != "none" and self.stretch == "hdr":
            raise ConfigError(f"the 'hdr' stretch is for clamp 'none', config has {self.clamp!r}")
        self.init_rescale_value()
        loss = loss_from_config(self.loss)
        linear = (LINEAR_TERMS | FLUX_TERMS) & set(loss.weights)
        if linear and self.stretch not in ("sqrt", "hdr"):
            raise ConfigError(
                f"linear-scale loss terms {sorted(linear)} assume the "
                f"sqrt stretch, config has stretch {self.stretch!r}"
            )
        if FLUX_TERMS & set(loss.weights) and spec.mode == "quantile":
            raise ConfigError(
                f"loss terms {sorted(FLUX_TERMS & set(loss.weights))} measure flux in units of "
                f"the constant clamp; with {self.clamp!r} each frame has its own unit")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive, got {self.grad_clip!r}")
        f = 2 if self.kind == "sr" else 1
        if min(self.crop, self.val_crop) * f < loss.min_side:
            raise ConfigError(
                f"loss {loss.name!r} needs target images of at least {loss.min_side} pixels; "
                f"crop {self.crop} / val_crop {self.val_crop} give {min(self.crop, self.val_crop) * f}"
            )


def load_config(path: str | os.PathLike[str] | None = None, *, preset: str | None = None,
                overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a training configuration from a YAML file and/or a preset, then apply overrides.

    Parameters
    ----------
    path : path-like, optional
        YAML file with :class:`TrainConfig` keys (applied on top of the preset).
    preset : {"paper", "small"}, optional
        Start from a shipped preset.
    overrides : mapping, optional
        Final values (e.g. from command-line options); ``None`` values are ignored.

    Returns
    -------
    TrainConfig
    """
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(preset_config(preset))
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text())
        except OSError as exc:
            raise InputFileError(p, f"cannot read config: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise InputFileError(p, f"not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputFileError(p, "config must be a mapping of keys to values")
        if "preset" in loaded:
            base = preset_config(str(loaded.pop("preset")))
            base.update(values if preset is not None else {})
            values = {**base, **values}
        values.update(loaded)
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = v
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training config key(s) {unknown}; known: {sorted(known)}")
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


def preset_config(name: str) -> dict[str, Any]:
    """The values of a shipped preset (``paper`` or ``small``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    text = resources.files("xsa_enhance.training").joinpath("presets", f"{name}.yaml").read_text()
    data = dict(yaml.safe_load(text) or {})
    base = data.pop("preset", None)
    if base is not None:  # a preset written as changes to another one
        if base == name:
            raise ConfigError(f"preset {name!r} names itself as its base")
        data = {**preset_config(str(base)), **data}
    return data
