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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from xsa_enhance.atomicio import atomic_path
from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.models.networks import load_grown
from xsa_enhance.models.normalise import HDR_GAIN
from xsa_enhance.training.config import PRESETS, TrainConfig, load_config, preset_config
from xsa_enhance.training.data import PairSource, denormalise, open_pairs
from xsa_enhance.training.losses import WeightedLoss, loss_from_config
from xsa_enhance.training.plots import plot_loss_curve
from xsa_enhance.training.weights import export_weights, network_for, read_state_dict, rescale_io

# The configuration, the plots and the weight export live in their own modules
# (training.config, training.plots, training.weights); their public names stay importable
# from here.
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

#: The names these helpers had here (tests and benchmarks use them).
_build, _rescale_io = network_for, rescale_io


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
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
        loss_fn = dataclasses.replace(loss_fn, linear_gain=HDR_GAIN, stretch="hdr")

    net = network_for(config).to(device)
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
                added = load_grown(net, read_state_dict(init_weights))
            except ValueError as exc:
                raise InputFileError(str(init_weights), f"cannot fine-tune from these weights: "
                                                        f"{exc}") from exc
            logger.info("fine-tuning from %s%s", init_weights,
                        f" (grown by {added} RRDB(s), same function)" if added else "")
            rescale = config.init_rescale_value()
            if rescale is not None:
                rescale_io(net, rescale)
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
