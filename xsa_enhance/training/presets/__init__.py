"""The shipped training presets: one YAML file of :class:`~xsa_enhance.training.config.TrainConfig`
keys per preset in this folder (importing this module does not import torch)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRESET_DIR", "preset_names"]

#: The folder holding the preset YAML files.
PRESET_DIR: Path = Path(__file__).resolve().parent


def preset_names() -> tuple[str, ...]:
    """Names of the shipped presets (the YAML files' stems), sorted."""
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
