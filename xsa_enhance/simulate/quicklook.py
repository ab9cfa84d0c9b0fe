"""A simulated field (all components summed) and its input/target quicklook PNG."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xsa_enhance.errors import InputFileError
from xsa_enhance.formats.quicklook import quicklook_png
from xsa_enhance.simulate.images import COMPONENTS, config_for_kind, simulate_component

__all__ = ["SimulatedField", "simulate_field", "write_quicklook"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatedField:
    """Input and target counts of one field (extended + AGN + background summed)."""

    kind: str
    seed: int
    input: np.ndarray
    target: np.ndarray
    input_exposure_s: float
    target_exposure_s: float
    meta: dict


def simulate_field(*, kind: str = "sr", seed: int = 0) -> SimulatedField:
    """Simulate one of each component and sum them into an input/target pair.

    Parameters
    ----------
    kind : {"sr", "dn"}
        Pair type.
    seed : int
        Random seed (component ``c`` uses ``SeedSequence([seed, c, 0])``, the same draw as
        sample 0 of a training set with this seed).
    """
    config = config_for_kind(kind)
    inp = None
    tgt = None
    meta = {}
    for ci, comp in enumerate(COMPONENTS):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, ci, 0]))
        pair = simulate_component(comp, rng, config)
        inp = pair.input if inp is None else inp + pair.input
        if pair.target is not None:
            tgt = pair.target if tgt is None else tgt + pair.target
        meta[comp] = pair.meta
    assert inp is not None and tgt is not None
    return SimulatedField(kind, int(seed), inp, tgt, config.input_exposure_s,
                          config.target_exposure_s, meta)


def write_quicklook(field: SimulatedField, path: Path) -> Path:
    """Write input and target rate images side by side (sqrt stretch) as a PNG.

    Both panels share one colour scale in counts/s per 4" pixel (the 2x target is shown per
    2" pixel times 4 so that a uniform surface brightness has the same colour), drawn by
    :func:`xsa_enhance.formats.quicklook.quicklook_png`.

    Parameters
    ----------
    field : SimulatedField
        The field.
    path : pathlib.Path
        Output PNG.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputFileError
        When the PNG cannot be written.
    """
    factor = field.target.shape[0] // field.input.shape[0]
    panels = [
        (f"input {field.input_exposure_s / 1000:.0f} ks (1x)",
         field.input / field.input_exposure_s),
        (f"target {field.target_exposure_s / 1000:.0f} ks ({factor}x)",
         field.target / field.target_exposure_s),
    ]
    ext = field.meta.get("extended", {}).get("kind", "?")
    title = f"simulated {field.kind} pair, seed {field.seed}: {ext} + AGN + background"
    try:
        return quicklook_png(panels, path, title=title, stretch=np.sqrt,
                             colorbar_label="count rate (ct/s per 4\" pixel), sqrt scale",
                             shared_colorbar=True, panel_size=(5.5, 5.6))
    except OSError as exc:
        raise InputFileError(path, f"cannot write PNG: {exc.strerror}") from None
