"""Shared by the pipeline tests that register tiny networks: weights and a one-observation archive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def tiny_weights(directory: Path, kind: str, seed: int) -> Path:
    """A 4-filter network of ``kind`` saved as a weight file (config: the constant clamp)."""
    import torch

    from xsa_enhance.models import build_network
    from xsa_enhance.models.registry import save_weights

    torch.manual_seed(seed)
    net = build_network(kind, filters=4, blocks=1, growth=4)
    path = directory / f"tiny-{kind}-{seed}.pt"
    save_weights(net, path, name=f"tiny-{kind}", kind=kind, config={}, card={})
    return path


def minimal_archive(root: Path) -> Iterator[object]:
    """A local archive serving one normal observation with minimal products (seed 83)."""
    from xsa_enhance.standin import LocalArchive
    from xsa_enhance.standin.products import minimal_products

    with LocalArchive(root, kinds=["normal"], seed=83, producer=minimal_products) as la:
        yield la
