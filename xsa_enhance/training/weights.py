"""Network weights of a training run: build the network of a configuration, read weights
(files, checkpoints, registered models), rescale for fine-tuning, export for inference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from xsa_enhance.errors import InputFileError
from xsa_enhance.models.normalise import ClampSpec
from xsa_enhance.training.config import TrainConfig
from xsa_enhance.training.data import open_pairs

__all__ = ["network_for", "read_state_dict", "rescale_io", "export_weights"]


def network_for(cfg: TrainConfig) -> torch.nn.Module:
    """A freshly initialised network of the configuration's kind and size."""
    from xsa_enhance.models.networks import build_network

    return build_network(cfg.kind, filters=cfg.filters, blocks=cfg.blocks, growth=cfg.growth,
                         exposure_channel=cfg.exposure_channel)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Network weights from a weight file, a training checkpoint or a registered model name.

    Raises
    ------
    InputFileError
        The file is missing, unreadable or holds no ``state_dict``.
    """
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


def rescale_io(net: torch.nn.Module, factor: float) -> None:
    """Scale the first convolution by ``factor`` and the last one by ``1 / factor``."""
    with torch.no_grad():
        net.conv_first.weight.mul_(factor)  # type: ignore[union-attr]
        net.conv_last.weight.div_(factor)  # type: ignore[union-attr]
        net.conv_last.bias.div_(factor)  # type: ignore[union-attr]


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
    net = network_for(cfg)
    src = run / ("best.pt" if which == "best" else "last.pt")
    net.load_state_dict(read_state_dict(src))
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
