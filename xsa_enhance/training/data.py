"""Training data: random combinations of simulated components, cropped, streamed from Zarr.

The simulator (:mod:`xsa_enhance.simulate.training`) stores the extended, AGN and background
components of every training pair separately, each already Poisson-sampled, so that any sum of
components is a valid observation. As in the paper, a training sample is a random combination:
one extended source (with probability ``p_extended``), one AGN field (``p_agn``) and one
background image (always), drawn independently from the same split. A set written with the
optional ``points`` component (bright unabsorbed point sources) adds one such field with
probability ``p_points`` (default 0: the paper's mixture). The split (80/10/10) is by
component, so no component of the test set is ever seen in training.

Only the crop of each component is read from Zarr (chunked storage), so nothing is loaded as a
whole. Inputs and targets are returned normalised the way the inference engine normalises them
(counts -> rate -> clamp -> / clamp -> stretch); see :func:`normalise_rate`.

The clamp value follows the clamp mode the model is trained for (``clamp``), exactly as
:func:`xsa_enhance.models.normalise.clamp_value` chooses it at inference: ``constant`` the fixed
value, ``quantile:q`` the ``q`` quantile of the masked input rate of the *whole* frame (the
components' full frames are summed first, then cropped, so a crop without the bright source is
still normalised by the frame's value, as it would be in a real image), ``none`` the fixed
:data:`~xsa_enhance.models.normalise.HDR_CEILING`. Input and target are divided by the *input's*
value (times the output clamp ratio for the target), as in the follow-up talk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.models.networks import EXPOSURE_SCALE_S
from xsa_enhance.models.normalise import (
    DN_TARGET_CLAMP,
    INPUT_CLAMP,
    SR_TARGET_CLAMP,
    ClampSpec,
    clamp_value,
    stretch_forward,
    stretch_inverse,
)
from xsa_enhance.models.normalise import output_clamp_ratio as output_clamp_ratio_of
from xsa_enhance.simulate.images import ALL_COMPONENTS

__all__ = [
    "COMPONENTS",
    "INPUT_CLAMP",
    "SR_TARGET_CLAMP",
    "DN_TARGET_CLAMP",
    "PairSource",
    "Sample",
    "normalise_rate",
    "denormalise",
    "target_clamp_for",
    "open_pairs",
]

logger = logging.getLogger(__name__)

#: The simulator's component names (the paper's three, then the optional bright point sources).
COMPONENTS: tuple[str, ...] = ALL_COMPONENTS


def target_clamp_for(factor: int, ratio: float | None = None) -> float:
    """Constant target clamp for a model with upsampling ``factor`` (1 for DN, 2 for SR).

    ``ratio`` is the model's output clamp ratio (:func:`~xsa_enhance.models.normalise.
    output_clamp_ratio`); ``None`` gives the paper's constants.
    """
    if ratio is None:
        return SR_TARGET_CLAMP if factor == 2 else DN_TARGET_CLAMP
    return INPUT_CLAMP * output_clamp_ratio_of(factor, ratio)


def normalise_rate(rate: np.ndarray, *, clamp: float, stretch: str = "sqrt") -> np.ndarray:
    """Paper normalisation: clamp a rate image to ``[0, clamp]``, divide by it, stretch.

    Parameters
    ----------
    rate : numpy.ndarray
        Counts/s/pixel.
    clamp : float
        Clamp value (counts/s/pixel).
    stretch : {"linear", "sqrt", "asinh", "log"}
        Stretch applied after scaling to ``[0, 1]``.

    Returns
    -------
    numpy.ndarray
        float32 in ``[0, 1]``.
    """
    lin = np.clip(np.asarray(rate, dtype=np.float64) / clamp, 0.0, 1.0)
    return np.clip(stretch_forward(lin, stretch), 0.0, 1.0).astype(np.float32)


def denormalise(norm: np.ndarray, *, stretch: str = "sqrt") -> np.ndarray:
    """Undo the stretch only: normalised value -> linear ``rate / clamp`` in ``[0, 1]``."""
    y = np.clip(np.asarray(norm, dtype=np.float64), 0.0, 1.0)
    return np.clip(stretch_inverse(y, stretch), 0.0, 1.0)


@dataclass
class Sample:
    """One training sample (normalised, shape ``(C, h, w)`` input and ``(1, f*h, f*w)`` target)."""

    input: torch.Tensor
    target: torch.Tensor


def open_pairs(path: str) -> Any:
    """Open a simulator training set (:func:`xsa_enhance.simulate.training.open_training_set`)."""
    try:
        from xsa_enhance.simulate.training import open_training_set
    except ImportError as exc:  # pragma: no cover - the simulator is part of the package
        raise ConfigError(f"the simulator's training-set reader is not available: {exc}") from exc
    try:
        return open_training_set(path)
    except FileNotFoundError as exc:
        raise InputFileError(path, "no such training set") from exc


class PairSource:
    """Random component combinations and crops from one split of a training set.

    Parameters
    ----------
    training_set : TrainingSet
        As returned by :func:`open_pairs`.
    split : {"train", "val", "test"}
        Which components to draw from.
    crop : int or None
        Input crop side in 1x pixels (the target crop is ``factor * crop``); ``None`` for full
        frames.
    clamp_input, clamp_target : float, optional
        Constant clamps (default: the paper's values for the set's kind; the target's is
        ``clamp_input * output_clamp_ratio`` when a ratio is given).
    output_clamp_ratio : float, optional
        The model's output clamp ratio (default the paper's ``1 / factor**2``).
    stretch : str
        Stretch (paper: ``"sqrt"``).
    p_extended, p_agn : float
        Probabilities of including an extended source and an AGN field in a sample.
    p_points : float
        Probability of including a field of the ``points`` component (sets written with it).
    exposure_channel : bool
        Add the ``mask * exposure_s / 100 ks`` channel the published models took.
    min_mask_fraction : float
        Crops are placed where at least this fraction of input pixels is inside the mask.
    clamp : str
        Clamp mode the model is trained for (``constant``, ``quantile:q``, ``none``); for
        ``constant``, ``clamp_input`` / ``clamp_target`` apply, for the others the input value
        comes from each sample (see the module documentation).
    brightness : mapping of str to (p, low, high), optional
        Brightness augmentation (sets with expected targets only): with probability ``p`` a
        component's expected counts are multiplied by a factor drawn log-uniformly in
        ``[low, high]`` and its input is drawn anew from its expected input counts times the
        factor: for SR the stored ``input_expected``, for DN ``target * input_exposure /
        target_exposure`` (DN inputs and targets share one blurred image). Either way this is
        exactly the input of a brighter sky. E.g. ``{"extended": (0.5, 1,
        30), "background": (0.5, 0.7, 4)}``: clusters as bright as real cluster cores and the
        range of real backgrounds, beyond the simulator's paper-style 5-50 mean backgrounds.
    """

    def __init__(
        self,
        training_set: Any,
        split: str,
        *,
        crop: int | None = 64,
        clamp_input: float | None = None,
        clamp_target: float | None = None,
        output_clamp_ratio: float | None = None,
        stretch: str = "sqrt",
        p_extended: float = 0.8,
        p_agn: float = 0.8,
        p_points: float = 0.0,
        exposure_channel: bool = False,
        min_mask_fraction: float = 0.5,
        clamp: str = "constant",
        brightness: dict[str, tuple[float, float, float]] | None = None,
    ) -> None:
        self.ts = training_set
        self.clamp = ClampSpec.parse(clamp)
        self.ratio = output_clamp_ratio_of(int(training_set.factor), output_clamp_ratio)
        self.brightness = {str(k): tuple(float(x) for x in v) for k, v in (brightness or {}).items()}
        if self.brightness:
            expected = int(training_set.factor) == 1 or bool(
                getattr(training_set, "attrs", {}).get("input_expected", False))
            if getattr(training_set, "target_noise", "") != "none" or not expected:
                raise ConfigError(
                    "brightness augmentation needs a set with expected targets (`--target-noise "
                    "none`; an SR set must also hold the expected inputs, which sets written "
                    f"before they were kept lack); {getattr(training_set, 'path', 'the set')} is "
                    f"kind {training_set.kind!r} with target noise "
                    f"{getattr(training_set, 'target_noise', '?')!r}")
            for name, v in self.brightness.items():
                if name not in COMPONENTS or len(v) != 3 or not (0 <= v[0] <= 1) or not (
                        0 < v[1] <= v[2]):
                    raise ConfigError(f"brightness[{name!r}] must be (p, low, high) with a known "
                                      f"component, 0 <= p <= 1 and 0 < low <= high; got {v!r}")
        self.split = split
        self.factor = int(training_set.factor)
        self.crop = crop
        self.clamp_input = float(clamp_input if clamp_input is not None else INPUT_CLAMP)
        if clamp_target is None:
            clamp_target = (target_clamp_for(self.factor) if output_clamp_ratio is None else
                            self.clamp_input * output_clamp_ratio_of(self.factor, output_clamp_ratio))
        self.clamp_target = float(clamp_target)
        self.stretch = stretch
        self.p_extended = float(p_extended)
        self.p_agn = float(p_agn)
        self.p_points = float(p_points)
        self.exposure_channel = bool(exposure_channel)
        self.in_exp = float(training_set.input_exposure_s)
        self.out_exp = float(training_set.target_exposure_s)
        present = tuple(getattr(training_set, "components", COMPONENTS[:3]))
        if self.p_points > 0 and "points" not in present:
            raise ConfigError(
                f"p_points is {self.p_points} but training set "
                f"{getattr(training_set, 'path', '')} has no 'points' component "
                "(write it with `xsa-enhance simulate training-set --points`)"
            )
        self.comps = {name: training_set.component(name, split)
                      for name in COMPONENTS if name in present}
        self.n = {name: int(self.comps[name].input.shape[0]) if name in self.comps else 0
                  for name in COMPONENTS}
        if self.n["background"] == 0:
            raise InputFileError(str(getattr(training_set, "path", "training set")),
                                 f"split {split!r} has no background images")
        mask = np.asarray(training_set.mask)
        if mask.ndim == 3:
            mask = mask[0]
        shape_in = tuple(self.comps["background"].input.shape[1:])
        if mask.shape != shape_in:
            # a 2x mask: reduce to the 1x grid
            f = mask.shape[0] // shape_in[0]
            mask = mask.reshape(shape_in[0], f, shape_in[1], f).any(axis=(1, 3))
        self.mask = mask.astype(bool)
        self.shape_in = shape_in
        self._positions = self._valid_positions(min_mask_fraction)

    def _valid_positions(self, min_fraction: float) -> np.ndarray:
        if self.crop is None:
            return np.zeros((1, 2), dtype=np.int64)
        c = int(self.crop)
        ny, nx = self.shape_in
        if c > ny or c > nx:
            raise ConfigError(f"crop {c} is larger than the image {self.shape_in}")
        ii = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        sums = ii[c:, c:] - ii[:-c, c:] - ii[c:, :-c] + ii[:-c, :-c]
        ok = np.argwhere(sums >= min_fraction * c * c)
        if len(ok) == 0:
            ok = np.argwhere(sums >= sums.max())
        return ok

    def __len__(self) -> int:
        return self.n["background"]

    def draw(self, rng: np.random.Generator) -> tuple[dict[str, int | None], tuple[int, int]]:
        """Draw a component combination and a crop position."""
        combo: dict[str, int | None] = {
            "extended": int(rng.integers(self.n["extended"]))
            if self.n["extended"] and rng.random() < self.p_extended else None,
            "agn": int(rng.integers(self.n["agn"]))
            if self.n["agn"] and rng.random() < self.p_agn else None,
            "background": int(rng.integers(self.n["background"])),
        }
        if self.n["points"] and self.p_points > 0:  # no draw otherwise: old streams unchanged
            combo["points"] = (int(rng.integers(self.n["points"]))
                               if rng.random() < self.p_points else None)
        y0, x0 = (int(v) for v in self._positions[rng.integers(len(self._positions))])
        return combo, (y0, x0)

    def counts(
        self, combo: dict[str, int | None], pos: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Summed input and target counts (and the 1x mask) of a combination and crop."""
        inp, tgt, mask, _value = self._counts_and_value(combo, pos)
        return inp, tgt, mask

    def _counts_and_value(
        self, combo: dict[str, int | None], pos: tuple[int, int], *,
        scales: dict[str, float] | None = None, rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """:meth:`counts` plus the sample's input clamp value (counts/s/pixel)."""
        scales = scales or {}
        y0, x0 = pos
        f = self.factor
        if self.crop is None:
            sl_in = (slice(None), slice(None))
            sl_out = (slice(None), slice(None))
            mask = self.mask
        else:
            c = self.crop
            sl_in = (slice(y0, y0 + c), slice(x0, x0 + c))
            sl_out = (slice(f * y0, f * (y0 + c)), slice(f * x0, f * (x0 + c)))
            mask = self.mask[sl_in]
        inp = None
        tgt = None
        full = None
        for name, idx in combo.items():
            if idx is None:
                continue
            comp = self.comps[name]
            k = scales.get(name)
            if k is not None:
                assert rng is not None
                # a brighter sky: redraw the input from the expected input counts (SR: stored
                # beside the target; DN: the target scaled to the input exposure, same grid)
                whole_frame = self.clamp.mode == "quantile"  # the frame's quantile needs it
                sl_i = (idx,) if whole_frame else (idx, *sl_in)
                b = np.asarray(comp.target[(idx, *sl_out)], dtype=np.float64) * k
                if comp.input_expected is not None:
                    lam = np.asarray(comp.input_expected[sl_i], dtype=np.float64) * k
                elif whole_frame:
                    lam = (np.asarray(comp.target[idx], dtype=np.float64) * k
                           * (self.in_exp / self.out_exp))
                else:
                    lam = b * (self.in_exp / self.out_exp)
                a = rng.poisson(lam).astype(np.float64)
                if whole_frame:
                    full = a if full is None else full + a
                    a = a[sl_in]
            elif self.clamp.mode == "quantile":
                # the chunks are whole frames, so reading the frame costs no more than the crop
                whole = np.asarray(comp.input[idx], dtype=np.float64)
                full = whole if full is None else full + whole
                a = whole[sl_in]
                b = np.asarray(comp.target[(idx, *sl_out)], dtype=np.float64)
            else:
                a = np.asarray(comp.input[(idx, *sl_in)], dtype=np.float64)
                b = np.asarray(comp.target[(idx, *sl_out)], dtype=np.float64)
            inp = a if inp is None else inp + a
            tgt = b if tgt is None else tgt + b
        assert inp is not None and tgt is not None
        return inp, tgt, mask, self._input_value(full)

    def _input_value(self, full_counts: np.ndarray | None) -> float:
        """The input clamp value of a sample (counts/s/pixel) for this source's clamp mode."""
        if self.clamp.mode == "constant":
            return self.clamp_input
        if self.clamp.mode == "none":
            return clamp_value(np.zeros(1), self.clamp)
        assert full_counts is not None
        return clamp_value(full_counts * self.mask / self.in_exp, self.clamp, mask=self.mask)

    def sample(self, rng: np.random.Generator) -> Sample:
        """One normalised sample."""
        combo, pos = self.draw(rng)
        if not self.brightness:  # no extra draws: the streams of older runs stay the same
            return self.make(combo, pos)
        scales = {}
        for name, (p, low, high) in self.brightness.items():
            if combo.get(name) is not None and rng.random() < p:
                scales[name] = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        return self.make(combo, pos, scales=scales, rng=rng)

    def make(self, combo: dict[str, int | None], pos: tuple[int, int], *,
             scales: dict[str, float] | None = None,
             rng: np.random.Generator | None = None) -> Sample:
        """The normalised sample of a given combination and crop position.

        ``scales`` (component -> brightness factor, see ``brightness``) redraws those
        components' inputs with ``rng``.
        """
        inp, tgt, mask, value = self._counts_and_value(combo, pos, scales=scales, rng=rng)
        if self.clamp.mode == "constant":
            v_in, v_out = self.clamp_input, self.clamp_target
        else:
            v_in, v_out = value, value * self.ratio
        x = normalise_rate(inp * mask / self.in_exp, clamp=v_in, stretch=self.stretch)
        y = normalise_rate(tgt / self.out_exp, clamp=v_out, stretch=self.stretch)
        chans = [x]
        if self.exposure_channel:
            chans.append((mask * (self.in_exp / EXPOSURE_SCALE_S)).astype(np.float32))
        return Sample(
            input=torch.from_numpy(np.stack(chans)),
            target=torch.from_numpy(y[None]),
        )

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of ``batch_size`` random samples, ``(B, C, h, w)`` and ``(B, 1, H, W)``."""
        samples = [self.sample(rng) for _ in range(batch_size)]
        return (torch.stack([s.input for s in samples]), torch.stack([s.target for s in samples]))

    def iterate(self, seed: int, *, start_step: int = 0, batch_size: int = 1
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless stream of batches; batch ``k`` depends only on ``(seed, k)`` (resumable)."""
        step = start_step
        while True:
            rng = np.random.default_rng([int(seed), step])
            yield self.batch(rng, batch_size)
            step += 1
