"""The training loop: Adam, best-validation checkpoint, resume, fine-tuning, metrics log.

A run directory holds:

- ``config.yaml``: the resolved configuration;
- ``last.pt``: the latest checkpoint (model, optimiser, step, best validation loss), written at
  every validation; ``--resume`` continues from it;
- ``best.pt``: the model weights (a plain ``state_dict``) with the best validation loss;
- ``metrics.jsonl``: one JSON object per logged step (``train``) and per validation (``val``);
- ``loss_curve.png``: training and validation loss against step.

Batches are a pure function of ``(seed, step)`` (see :meth:`PairSource.iterate`), so a resumed
run sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.models.networks import load_grown
from xsa_enhance.models.normalise import HDR_GAIN, ClampSpec, output_clamp_ratio
from xsa_enhance.training.data import PairSource, denormalise, open_pairs
from xsa_enhance.training.losses import LINEAR_TERMS, WeightedLoss, loss_from_config

__all__ = [
    "TrainConfig",
    "TrainResult",
    "PRESETS",
    "load_config",
    "preset_config",
    "select_device",
    "train",
    "plot_loss_curve",
    "export_weights",
]

logger = logging.getLogger(__name__)

#: Names of the shipped presets (YAML files in ``xsa_enhance/training/presets/``).
PRESETS: tuple[str, ...] = ("paper", "small", "small-v2", "small-v3", "small-v4",
                            "small-v4-quantile", "small-v4-none", "small-v3-quantile",
                            "small-v3-none")


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
        if LINEAR_TERMS & set(loss.weights) and self.stretch not in ("sqrt", "hdr"):
            raise ConfigError(
                f"linear-scale loss terms {sorted(LINEAR_TERMS & set(loss.weights))} assume the "
                f"sqrt stretch, config has stretch {self.stretch!r}"
            )
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


def select_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    run_dir: Path
    steps_done: int
    best_step: int
    best_val_loss: float
    best_weights: Path
    wall_s: float
    stopped_by_time: bool


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _build(cfg: TrainConfig) -> torch.nn.Module:
    from xsa_enhance.models.networks import build_network

    return build_network(cfg.kind, filters=cfg.filters, blocks=cfg.blocks, growth=cfg.growth,
                         exposure_channel=cfg.exposure_channel)


def _load_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        # a registered model name
        try:
            from xsa_enhance.models.registry import load_model
        except ImportError as exc:  # pragma: no cover
            raise InputFileError(p, "no such weights file") from exc
        loaded = load_model(str(path))
        net = getattr(loaded, "network", None) or getattr(loaded, "model", None)
        if net is None:
            raise InputFileError(p, "registered model has no network")
        return net.state_dict()
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise InputFileError(p, f"cannot load weights: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a file written by models.registry.save_weights
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a training checkpoint (last.pt)
    if not isinstance(obj, dict):
        raise InputFileError(p, "not a state_dict")
    return obj


class _RawOutput:
    """Capture the network's output before its final clamp to [0, 1] (training only).

    The networks clamp their output, which zeroes the gradient wherever the raw output leaves
    [0, 1]; an SR model whose outputs all go negative on the many empty target pixels then
    never recovers (observed: constant validation loss). Training therefore uses a
    straight-through clamp: the forward value is the clamped output, the gradient is that of the
    raw output. Inference is unchanged.
    """

    def __init__(self, net: torch.nn.Module, kind: str) -> None:
        self.kind = kind
        self.value: torch.Tensor | None = None
        self.handle = net.conv_last.register_forward_hook(self._hook)  # type: ignore[union-attr]

    def _hook(self, _module: torch.nn.Module, _inp: Any, out: torch.Tensor) -> None:
        self.value = out

    def __call__(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        clamped = net(x)
        raw = self.value
        if raw is None:  # pragma: no cover - every network has conv_last
            return clamped
        if self.kind == "dn":
            raw = raw + x[:, :1]
        return raw + (clamped - raw).detach()


def _validation_batches(source: PairSource, cfg: TrainConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.default_rng([int(cfg.seed), 999_999_937])
    out = []
    for _ in range(cfg.n_val):
        s = source.sample(rng)
        out.append((s.input[None], s.target[None]))
    return out


@torch.no_grad()
def _validate(net: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
              loss_fn: WeightedLoss, device: torch.device, stretch: str,
              with_input: bool = False) -> dict[str, float]:
    net.eval()
    losses = []
    mse_lin = []
    for x, y in batches:
        pred = net(x.to(device))
        losses.append(float(loss_fn(pred, y.to(device))))
        p_lin = denormalise(pred.cpu().numpy(), stretch=stretch)
        y_lin = denormalise(y.numpy(), stretch=stretch)
        mse_lin.append(float(np.mean((p_lin - y_lin) ** 2)))
    net.train()
    mse = float(np.mean(mse_lin))
    if with_input:
        mse_in = []
        for x, y in batches:
            xin = denormalise(x[:, :1].numpy(), stretch=stretch)
            if y.shape[-1] != x.shape[-1]:
                f = y.shape[-1] // x.shape[-1]
                xin = np.repeat(np.repeat(xin, f, axis=-2), f, axis=-1)
            mse_in.append(float(np.mean((xin - denormalise(y.numpy(), stretch=stretch)) ** 2)))
        m_in = float(np.mean(mse_in))
        extra = {"val_input_psnr_linear": float(10 * math.log10(1.0 / m_in)) if m_in > 0
                 else float("inf")}
    else:
        extra = {}
    return {"val_loss": float(np.mean(losses)),
            "val_psnr_linear": float(10 * math.log10(1.0 / mse)) if mse > 0 else float("inf"),
            **extra}


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plot_loss_curve(metrics_log: str | os.PathLike[str], png: str | os.PathLike[str]) -> Path:
    """Plot training and validation loss against step from a ``metrics.jsonl`` file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr_s, tr_l, va_s, va_l = [], [], [], []
    for line in Path(metrics_log).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("type") == "train":
            tr_s.append(rec["step"])
            tr_l.append(rec["loss"])
        elif rec.get("type") == "val":
            va_s.append(rec["step"])
            va_l.append(rec["val_loss"])
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if tr_s:
        ax.plot(tr_s, tr_l, lw=0.8, alpha=0.7, label="train (running mean)")
    if va_s:
        ax.plot(va_s, va_l, "o-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out)
    plt.close(fig)
    return out


def _rescale_io(net: torch.nn.Module, factor: float) -> None:
    """Scale the first convolution by ``factor`` and the last one by ``1 / factor``."""
    with torch.no_grad():
        net.conv_first.weight.mul_(factor)  # type: ignore[union-attr]
        net.conv_last.weight.div_(factor)  # type: ignore[union-attr]
        net.conv_last.bias.div_(factor)  # type: ignore[union-attr]


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    init_weights: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a model.

    Parameters
    ----------
    config : TrainConfig
        The run's configuration.
    run_dir : path-like
        Output folder (created).
    resume : bool
        Continue from ``run_dir/last.pt`` (model, optimiser, step, best validation loss).
    init_weights : path-like or str, optional
        Fine-tune: start from these weights (a file, a checkpoint or a registered model name)
        instead of a fresh initialisation. Ignored when resuming.
    progress : callable, optional
        Called as ``progress(step, total_steps, figures)`` after each logged step.

    Returns
    -------
    TrainResult
    """
    config.validate()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    device = select_device(config.device)
    _seed_everything(config.seed)
    ts = open_pairs(config.train_set)
    if str(getattr(ts, "kind", config.kind)) != config.kind:
        raise ConfigError(
            f"training set {config.train_set} is of kind {ts.kind!r}, config asks for {config.kind!r}"
        )
    src_kwargs = dict(stretch=config.stretch, p_extended=config.p_extended, p_agn=config.p_agn,
                      p_points=config.p_points, exposure_channel=config.exposure_channel,
                      output_clamp_ratio=config.output_clamp_ratio, clamp=config.clamp,
                      brightness={k: tuple(v) for k, v in (config.brightness or {}).items()})
    train_src = PairSource(ts, "train", crop=config.crop, **src_kwargs)
    val_src = PairSource(ts, "val", crop=config.val_crop, **src_kwargs)
    loss_fn = loss_from_config(config.loss)
    if config.stretch == "hdr":
        loss_fn = dataclasses.replace(loss_fn, linear_gain=HDR_GAIN)

    net = _build(config).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999))
    step = 0
    best_val = float("inf")
    best_step = -1
    ckpt = run / "last.pt"
    log_path = run / "metrics.jsonl"
    if resume:
        if not ckpt.is_file():
            raise InputFileError(ckpt, "nothing to resume: no checkpoint in the run directory")
        state = torch.load(ckpt, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        best_val = float(state["best_val"])
        best_step = int(state["best_step"])
        logger.info("resumed %s at step %d (best val %.5g at %d)", run, step, best_val, best_step)
        # drop log lines written after the checkpoint
        if log_path.is_file():
            keep = [ln for ln in log_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= step]
            log_path.write_text("".join(k + "\n" for k in keep))
    else:
        if init_weights is not None:
            try:
                added = load_grown(net, _load_state(init_weights))
            except ValueError as exc:
                raise InputFileError(str(init_weights), f"cannot fine-tune from these weights: "
                                                        f"{exc}") from exc
            logger.info("fine-tuning from %s%s", init_weights,
                        f" (grown by {added} RRDB(s), same function)" if added else "")
            rescale = config.init_rescale_value()
            if rescale is not None:
                _rescale_io(net, rescale)
                logger.info("input scaled by 1/%.4g, output by 1/%.4g", rescale, rescale)
        log_path.write_text("")
    cfg_dump = asdict(config)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg_dump, sort_keys=False))

    val_batches = _validation_batches(val_src, config)
    t_start = time.monotonic()
    deadline = t_start + 60 * config.max_minutes if config.max_minutes else None
    stopped_by_time = False
    running: list[float] = []
    batches = train_src.iterate(config.seed, start_step=step, batch_size=config.batch_size)
    forward = _RawOutput(net, config.kind)
    net.train()

    def checkpoint(at: int) -> None:
        nonlocal best_val, best_step
        figures = _validate(net, val_batches, loss_fn, device, config.stretch,
                            with_input=(at == 0))
        improved = figures["val_loss"] < best_val
        if improved:
            best_val, best_step = figures["val_loss"], at
            _save_atomic({k: v.detach().cpu() for k, v in net.state_dict().items()},
                         run / "best.pt")
        _save_atomic({"model": net.state_dict(), "optimizer": opt.state_dict(), "step": at,
                      "best_val": best_val, "best_step": best_step}, ckpt)
        rec = {"type": "val", "step": at, **figures, "best": improved,
               "elapsed_s": round(time.monotonic() - t_start, 2)}
        with log_path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        logger.info("step %d: val loss %.5f (best %.5f at %d)", at, figures["val_loss"],
                    best_val, best_step)
        if progress is not None:
            progress(at, config.steps, figures)

    if step == 0:
        checkpoint(0)
    while step < config.steps:
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        pred = forward(net, x)
        loss = loss_fn(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), float(config.grad_clip))
        opt.step()
        step += 1
        running.append(float(loss.detach()))
        if step % config.log_every == 0:
            rec = {"type": "train", "step": step, "loss": float(np.mean(running)),
                   "elapsed_s": round(time.monotonic() - t_start, 2)}
            running = []
            with log_path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            if progress is not None:
                progress(step, config.steps, {"loss": rec["loss"]})
        timed_out = deadline is not None and time.monotonic() >= deadline
        if step % config.val_every == 0 or step == config.steps or timed_out:
            checkpoint(step)
        if timed_out:
            stopped_by_time = True
            logger.warning("wall-clock limit of %s min reached at step %d", config.max_minutes, step)
            break
    if best_step < 0 or not (run / "best.pt").is_file():
        checkpoint(step)
    plot_loss_curve(log_path, run / "loss_curve.png")
    return TrainResult(run_dir=run, steps_done=step, best_step=best_step,
                       best_val_loss=best_val, best_weights=run / "best.pt",
                       wall_s=time.monotonic() - t_start, stopped_by_time=stopped_by_time)


def export_weights(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    name: str,
    card: Mapping[str, Any] | None = None,
    which: str = "best",
) -> str:
    """Write a run's weights as an inference weight file (:func:`models.registry.save_weights`).

    Parameters
    ----------
    run_dir : path-like
        A training run directory (``config.yaml`` and ``best.pt`` / ``last.pt``).
    out_path : path-like
        The ``.pt`` file to write (a ``.sha256`` sidecar is written next to it).
    name : str
        Model name stored in the file.
    card : mapping, optional
        Model card (JSON-serialisable); the training config is added under ``training``.
    which : {"best", "last"}
        Best-validation or latest weights.

    Returns
    -------
    str
        sha256 of the written file.
    """
    from xsa_enhance.models.registry import save_weights

    run = Path(run_dir)
    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        raise InputFileError(run, "not a training run directory (no config.yaml)")
    values = yaml.safe_load(cfg_path.read_text()) or {}
    cfg = TrainConfig(**values)
    net = _build(cfg)
    src = run / ("best.pt" if which == "best" else "last.pt")
    net.load_state_dict(_load_state(src))
    ts = open_pairs(cfg.train_set)
    config = {
        "input_exposure_s": float(ts.input_exposure_s),
        "target_exposure_s": float(ts.target_exposure_s),
        "stretch": cfg.stretch,
        "clamp": str(ClampSpec.parse(cfg.clamp)),
    }
    if cfg.output_clamp_ratio is not None:
        config["output_clamp_ratio"] = float(cfg.output_clamp_ratio)
    full_card = dict(card or {})
    full_card.setdefault("training", {k: v for k, v in values.items() if k != "extra"})
    return save_weights(net, out_path, name=name, kind=cfg.kind, config=config, card=full_card)
