"""The inference engine: counts image in, enhanced counts image out.

For each frame (:func:`enhance`, or many frames at once with :func:`enhance_batch`):

1. ``rate = counts / exposure_s * mask`` (counts/s/pixel, zero outside the detector);
2. normalise: clamp, scale and stretch into [0, 1] (:mod:`~xsa_enhance.models.normalise`);
   with an exposure channel the second channel is ``mask * exposure_s / 100 ks``;
3. pad the frame to the model's ``pad_shape`` (416 x 416 for the 403 x 411 grid), centred
   (2 rows above, 3 below, 6 columns left, 7 right), with zeros by default (``pad_mode=
   "reflect"`` mirrors instead); the pixels near the grid edge are outside the detector mask,
   so zero padding continues the image naturally;
4. run the network, whole frames or tiles of ``tile`` x ``tile`` input pixels, each cut with
   ``overlap`` extra pixels of context on every side (default: the network's receptive-field
   radius, 64 pixels for 4 RRDBs), so tiles are seamless: every output pixel sees exactly the
   input it would see in an untiled pass. Tiles near the frame edge are shifted inwards so all
   windows have the same size and batch together (``batch_size`` windows per forward pass,
   across frames in :func:`enhance_batch`);
5. crop the padding, denormalise with the output clamp value (input value / factor**2), add the
   clamped-away bright-source flux back (:mod:`~xsa_enhance.models.restore`), multiply by the
   model's *target* exposure and by the output-grid mask.

Weights are trained for one clamp mode family (``constant``, ``quantile``, ``none``; the
model's config ``clamp``); run with a clamp of another family they invent sources, so
:func:`enhance_batch` refuses that unless ``allow_clamp_mismatch=True``, and every product
records ``trained_clamp`` and ``clamp_mismatch`` in its attributes.

CPU inference runs in float32 and is deterministic (same input, same output, bit for bit).
On CUDA, ``precision="auto"`` uses autocast bf16 when the GPU supports it (fp16 otherwise).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from xsa_enhance._version import __version__
from xsa_enhance.errors import XsaError
from xsa_enhance.instrument.grid import GRID_1X, DetGrid, grid_for_factor
from xsa_enhance.models.networks import EXPOSURE_SCALE_S
from xsa_enhance.models.normalise import ClampSpec, NormInfo, denormalise, normalise
from xsa_enhance.models.registry import LoadedModel, clamp_mismatch_message
from xsa_enhance.models.restore import restore_flux

__all__ = ["CAVEATS", "ClampMismatchError", "EnhancedImage", "ImageError", "enhance",
           "enhance_batch", "pad_frame", "plan_tiles"]

logger = logging.getLogger(__name__)

#: Caveats carried in every product's attributes.
CAVEATS: str = (
    "Deep-learning output: may contain hallucinated or suppressed features; not for "
    "photometry of faint sources. Bright-source flux above the clamp is restored at the input "
    "resolution (see 'restored' mask). Models are for EPIC-pn, 0.5-2 keV, full frame, "
    "~20 ks inputs."
)

Precision = Literal["auto", "fp32", "bf16", "fp16"]


class ImageError(XsaError, ValueError):
    """An image that cannot be enhanced (shape, exposure, mask, non-finite pixels).

    Both an :class:`~xsa_enhance.errors.XsaError` (executors record it per observation, the
    CLI prints one line) and a ``ValueError``.
    """


class ClampMismatchError(ImageError):
    """Weights run with a clamp of a family they were not trained for (one-line message)."""


@dataclass
class EnhancedImage:
    """An enhanced image and its provenance.

    Parameters
    ----------
    counts : numpy.ndarray
        float32 counts on the output grid, for ``exposure_s`` (the model's target exposure).
    exposure_s : float
        Exposure the counts correspond to.
    grid : DetGrid or None
        ``GRID_1X`` (DN) or ``GRID_2X`` (SR) for standard frames; None for other shapes.
    mask : numpy.ndarray
        Boolean detector mask on the output grid.
    restored : numpy.ndarray
        Boolean map of output pixels that received restored bright-source flux.
    attrs : dict
        Provenance: model, weights_sha256, clamp_mode, clamp_value, trained_clamp,
        clamp_mismatch, stretch, software_version, input_exposure_s, target_exposure_s,
        restoration summary... With an uncertainty also ``uncertainty_method``,
        ``uncertainty_n_samples``, ``uncertainty_seed``, ``uncertainty_calibration``...
    uncertainty : numpy.ndarray or None
        Per-pixel 1-sigma uncertainty of ``counts`` (float32, same grid and units, 0 outside
        the mask; :func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`), or None when
        not computed (``enhance(..., uncertainty=True)`` sets it).
    """

    counts: np.ndarray
    exposure_s: float
    grid: DetGrid | None
    mask: np.ndarray
    restored: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    uncertainty: np.ndarray | None = None

    def with_uncertainty(self, result: Any) -> "EnhancedImage":
        """Attach an :class:`~xsa_enhance.models.uncertainty.UncertaintyResult` of these
        counts: sets :attr:`uncertainty` to its sigma and adds its ``uncertainty_*``
        provenance to :attr:`attrs`. Returns self."""
        sigma = np.asarray(result.sigma, dtype=np.float32)
        if sigma.shape != self.counts.shape:
            raise ValueError(f"uncertainty shape {sigma.shape} differs from the output "
                             f"shape {self.counts.shape}")
        self.uncertainty = sigma
        self.attrs.update({k: v for k, v in dict(result.attrs).items()
                           if k.startswith("uncertainty_")})
        return self

    def significance(self) -> np.ndarray:
        """``counts / uncertainty`` (float32, 0 where the uncertainty is 0)."""
        if self.uncertainty is None:
            raise ValueError("no uncertainty computed (enhance(..., uncertainty=True))")
        from xsa_enhance.models.uncertainty import significance_map

        return significance_map(self.counts, self.uncertainty)

    @property
    def rate(self) -> np.ndarray:
        """Counts per second per output pixel."""
        return self.counts / self.exposure_s


def pad_frame(
    image: np.ndarray, shape: tuple[int, int], *, mode: Literal["constant", "reflect"] = "constant"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the last two axes of an image, centred, to at least ``shape``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(..., H, W)`` array.
    shape : tuple of int
        Target ``(H, W)``; axes already larger are left alone.
    mode : {"constant", "reflect"}
        Zero padding or mirror padding.

    Returns
    -------
    padded : numpy.ndarray
    offset : tuple of int
        ``(top, left)``: where the original image starts in the padded one.
    """
    h, w = image.shape[-2:]
    ph, pw = max(0, shape[0] - h), max(0, shape[1] - w)
    top, left = ph // 2, pw // 2
    pads = [(0, 0)] * (image.ndim - 2) + [(top, ph - top), (left, pw - left)]
    if mode not in ("constant", "reflect"):
        raise ValueError(f"unknown pad mode {mode!r}; expected 'constant' or 'reflect'")
    return np.pad(image, pads, mode=mode), (top, left)


def _plan_axis(n: int, core: int | None, margin: int) -> list[tuple[int, int, int]]:
    """(core_start, core_end, window_start) along one axis; window size is fixed."""
    if core is None or core + 2 * margin >= n:
        return [(0, n, 0)]
    win = core + 2 * margin
    out = []
    for a in range(0, n, core):
        b = min(a + core, n)
        s = min(max(a - margin, 0), n - win)
        out.append((a, b, s))
    return out


def plan_tiles(
    shape: tuple[int, int], *, tile: int | None, overlap: int
) -> tuple[tuple[int, int], list[tuple[slice, slice, slice, slice]]]:
    """Cut a frame into equal windows whose cores tile the frame.

    Parameters
    ----------
    shape : tuple of int
        Frame ``(H, W)``.
    tile : int or None
        Core size in pixels (None: one window, the whole frame).
    overlap : int
        Context pixels on each side of a core.

    Returns
    -------
    window_shape : tuple of int
        ``(h, w)`` of every window.
    tiles : list
        ``(win_y, win_x, core_y, core_x)`` slices: the window in the frame and the core
        within the window (cores partition the frame).
    """
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    ys = _plan_axis(shape[0], tile, overlap)
    xs = _plan_axis(shape[1], tile, overlap)
    wh = shape[0] if len(ys) == 1 else tile + 2 * overlap  # type: ignore[operator]
    ww = shape[1] if len(xs) == 1 else tile + 2 * overlap  # type: ignore[operator]
    tiles = []
    for ya, yb, ys0 in ys:
        for xa, xb, xs0 in xs:
            tiles.append((slice(ys0, ys0 + wh), slice(xs0, xs0 + ww),
                          slice(ya - ys0, yb - ys0), slice(xa - xs0, xb - xs0)))
    return (wh, ww), tiles


def _network_device(net: torch.nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext(), "fp32"
    if precision == "auto":
        if device.type != "cuda":
            return nullcontext(), "fp32"
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ValueError(f"unknown precision {precision!r}; expected auto, fp32, bf16 or fp16")
    return torch.autocast(device_type=device.type, dtype=dtype), precision


def _run_network(
    net: torch.nn.Module,
    frames: list[np.ndarray],
    *,
    factor: int,
    tile: int | None,
    overlap: int,
    batch_size: int,
    precision: str,
) -> tuple[list[np.ndarray], str]:
    """Run ``net`` over equally shaped ``(C, H, W)`` frames; returns ``(H f, W f)`` outputs."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape = frames[0].shape[-2:]
    (wh, ww), tiles = plan_tiles(shape, tile=tile, overlap=overlap)
    device = _network_device(net)
    ctx, used = _autocast(device, precision)
    outputs = [np.zeros((shape[0] * factor, shape[1] * factor), dtype=np.float32) for _ in frames]
    jobs = [(i, t) for i in range(len(frames)) for t in tiles]
    f = factor
    with torch.inference_mode():
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            batch = np.stack([frames[i][:, wy, wx] for i, (wy, wx, _, _) in chunk])
            xb = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
            with ctx:
                yb = net(xb)
            yb = yb.float().cpu().numpy()
            for k, (i, (wy, wx, cy, cx)) in enumerate(chunk):
                oy = slice((wy.start + cy.start) * f, (wy.start + cy.stop) * f)
                ox = slice((wx.start + cx.start) * f, (wx.start + cx.stop) * f)
                outputs[i][oy, ox] = yb[k, 0, cy.start * f:cy.stop * f, cx.start * f:cx.stop * f]
    logger.debug("ran %d windows of %dx%d in batches of %d (%s)", len(jobs), wh, ww,
                 batch_size, used)
    return outputs, used


def _default_mask(shape: tuple[int, int]) -> np.ndarray:
    if shape == GRID_1X.shape:
        try:
            from xsa_enhance.instrument.mask import detector_mask  # type: ignore[import-not-found]
        except ImportError:
            logger.warning("no mask given and instrument.mask is unavailable; using all pixels")
        else:
            return np.asarray(detector_mask(GRID_1X), dtype=np.float64)
    return np.ones(shape, dtype=np.float64)


def _checked_frame(counts: Any, exposure_s: float, mask: Any | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Counts and mask as float64 arrays, or an :class:`ImageError` naming what is wrong."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ImageError(f"counts must be a 2-D image, got shape {c.shape}")
    if not (math.isfinite(float(exposure_s)) and float(exposure_s) > 0):
        raise ImageError(f"exposure must be a positive number of seconds, got {exposure_s!r}")
    m = _default_mask(c.shape) if mask is None else np.asarray(mask, dtype=np.float64)
    if m.shape != c.shape:
        raise ImageError(f"mask shape {m.shape} differs from the image shape {c.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(m))):
        raise ImageError(f"counts or mask contain {int(np.count_nonzero(~np.isfinite(c)))} + "
                         f"{int(np.count_nonzero(~np.isfinite(m)))} non-finite (NaN/Inf) pixels")
    return c, m


def _prepare(counts: Any, exposure_s: float, mask: Any | None, model: LoadedModel,
             spec: ClampSpec, stretch: str, pad_mode: str):
    c, m = _checked_frame(counts, exposure_s, mask)
    rate = c / float(exposure_s) * m
    x, info = normalise(rate, spec, stretch, mask=m)
    chans = [x]
    if model.exposure_channel:
        chans.append((m * float(exposure_s) / EXPOSURE_SCALE_S).astype(np.float32))
    stack = np.stack(chans)
    padded, offset = pad_frame(stack, model.pad_shape, mode=pad_mode)  # type: ignore[arg-type]
    if model.exposure_channel and pad_mode == "reflect":
        padded[1] = pad_frame(chans[1], model.pad_shape, mode="constant")[0]
    return rate, m, info, padded.astype(np.float32), offset


def enhance_batch(
    counts: Sequence[np.ndarray],
    exposures_s: Sequence[float],
    masks: Sequence[np.ndarray | None] | None,
    model: LoadedModel,
    *,
    clamp: "str | ClampSpec | None" = None,
    stretch: str | None = None,
    restore: bool = True,
    device: str | torch.device | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    precision: Precision = "auto",
    pad_mode: Literal["constant", "reflect"] = "constant",
    allow_clamp_mismatch: bool = False,
) -> list[EnhancedImage]:
    """Enhance several frames, batching their tiles together.

    Parameters
    ----------
    counts : sequence of numpy.ndarray
        Counts images on the 1x grid (normally ``GRID_1X``, shape (411, 403)).
    exposures_s : sequence of float
        Their exposures in seconds.
    masks : sequence of numpy.ndarray or None, or None
        Detector masks (non-zero inside); None uses ``instrument.mask.detector_mask`` for
        standard frames, all pixels otherwise.
    model : LoadedModel
        From :func:`~xsa_enhance.models.registry.load_model`.
    clamp : str or ClampSpec, optional
        ``constant`` / ``quantile:q`` / ``none`` (default: the model's own clamp).
    stretch : str, optional
        Stretch (default: the model's, normally sqrt).
    restore : bool
        Add the flux above the clamp back (:mod:`~xsa_enhance.models.restore`).
    device : str or torch.device, optional
        Move the network there first (default: where it is).
    tile : int, optional
        Tile core size in input pixels (default: whole frames).
    overlap : int, optional
        Context per side (default: the receptive-field radius; smaller values make seams).
    batch_size : int
        Windows per forward pass.
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``auto``: fp32 on CPU, bf16 (or fp16) autocast on CUDA.
    pad_mode : {"constant", "reflect"}
        Padding to the model's frame size.
    allow_clamp_mismatch : bool
        Run even when ``clamp`` is of another family than the one the model was trained for
        (recorded as ``clamp_mismatch`` in the attributes).

    Returns
    -------
    list of EnhancedImage

    Raises
    ------
    ClampMismatchError
        ``clamp`` is of another family than the model's and ``allow_clamp_mismatch`` is
        False (an :class:`ImageError`, so an XsaError and a ValueError).
    """
    n = len(counts)
    if len(exposures_s) != n or (masks is not None and len(masks) != n):
        raise ImageError("counts, exposures_s and masks must have the same length")
    if n == 0:
        return []
    spec = ClampSpec.parse(clamp if clamp is not None else model.clamp)
    trained = model.clamp_family
    mismatch = spec.mode != trained
    if mismatch:
        if not allow_clamp_mismatch:
            raise ClampMismatchError(clamp_mismatch_message(
                model.name, trained, spec.mode, flag="allow_clamp_mismatch=True"))
        logger.warning("%s was trained for clamp mode %r but runs with %r (allowed): its "
                       "output may contain invented sources", model.name, trained, spec.mode)
    stretch = stretch or model.stretch
    net = model.network
    if device is not None:
        net.to(torch.device(device))
    radius = model.receptive_radius
    if overlap is None:
        overlap = radius
    elif tile is not None and overlap < radius:
        logger.warning("overlap %d < receptive radius %d: tile seams will show", overlap, radius)
    f = model.factor
    preps = [_prepare(counts[i], exposures_s[i], None if masks is None else masks[i], model,
                      spec, stretch, pad_mode) for i in range(n)]
    for i, p in enumerate(preps):
        if abs(exposures_s[i] - model.input_exposure_s) > 0.5 * model.input_exposure_s and not \
                model.exposure_channel:
            logger.warning("frame %d: exposure %.0f s is far from the %.0f s the model %s was "
                           "trained on", i, exposures_s[i], model.input_exposure_s, model.name)
    # group frames by padded shape so that windows can be batched
    outs: list[np.ndarray | None] = [None] * n
    used = "fp32"
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(preps):
        by_shape.setdefault(p[3].shape, []).append(i)
    for idx in by_shape.values():
        res, used = _run_network(net, [preps[i][3] for i in idx], factor=f, tile=tile,
                                 overlap=overlap, batch_size=batch_size, precision=precision)
        for i, r in zip(idx, res):
            outs[i] = r
    results = []
    for i, (rate, m, info, _padded, (top, left)) in enumerate(preps):
        ny, nx = rate.shape
        y = outs[i][top * f:(top + ny) * f, left * f:(left + nx) * f]  # type: ignore[index]
        out_info = info.for_output(f, model.output_clamp_ratio)
        out_rate = denormalise(y, out_info)
        if restore:
            out_rate, restored, summary = restore_flux(out_rate, rate, info.value, factor=f,
                                                       mask=m)
            rest = summary.as_dict()
        else:
            restored = np.zeros(out_rate.shape, dtype=bool)
            rest = {"restored_rate": 0.0, "restored_pixels": 0, "restored_fraction": 0.0}
        mask_out = np.repeat(np.repeat(m > 0, f, axis=0), f, axis=1)
        counts_out = (out_rate * model.target_exposure_s * mask_out).astype(np.float32)
        grid = grid_for_factor(f) if (ny, nx) == GRID_1X.shape else None
        attrs: dict[str, Any] = {
            "model": model.name,
            "model_kind": model.kind,
            "weights_sha256": model.sha256,
            "clamp_mode": info.mode,
            "clamp_value": info.value,
            "clamp_value_output": out_info.value,
            "output_clamp_ratio": model.output_clamp_ratio,
            "clamp_quantile": info.q,
            "trained_clamp": str(model.clamp),
            "clamp_mismatch": bool(mismatch),
            "stretch": info.stretch,
            "software_version": __version__,
            "input_exposure_s": float(exposures_s[i]),
            "model_input_exposure_s": model.input_exposure_s,
            "target_exposure_s": model.target_exposure_s,
            "factor": f,
            "grid": grid.name if grid is not None else f"{ny * f}x{nx * f}",
            "restore": bool(restore),
            **rest,
            "pad_mode": pad_mode,
            "tile": tile,
            "overlap": overlap if tile is not None else None,
            "precision": used,
            "device": str(_network_device(net)),
            "backend": getattr(net, "backend", "torch"),
            "caveats": CAVEATS,
        }
        results.append(EnhancedImage(counts=counts_out, exposure_s=model.target_exposure_s,
                                     grid=grid, mask=mask_out, restored=restored & mask_out,
                                     attrs=attrs))
    return results


def enhance(
    counts: np.ndarray,
    exposure_s: float,
    mask: np.ndarray | None,
    model: LoadedModel,
    *,
    clamp: "str | ClampSpec | None" = None,
    stretch: str | None = None,
    restore: bool = True,
    device: str | torch.device | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    precision: Precision = "auto",
    pad_mode: Literal["constant", "reflect"] = "constant",
    allow_clamp_mismatch: bool = False,
    uncertainty: bool = False,
    uncertainty_samples: int = 8,
    uncertainty_seed: int | None = 0,
    uncertainty_method: str = "auto",
    uncertainty_calibration: Any = "auto",
) -> EnhancedImage:
    """Enhance one counts image with an SR or DN model.

    Parameters
    ----------
    counts : numpy.ndarray
        Counts on the 1x grid (normally ``GRID_1X``, shape (411, 403)).
    exposure_s : float
        Exposure of the image in seconds.
    mask : numpy.ndarray or None
        Detector mask (non-zero inside); None: ``instrument.mask.detector_mask`` for standard
        frames, all pixels otherwise.
    model : LoadedModel
        From :func:`~xsa_enhance.models.registry.load_model`.
    clamp, stretch, restore, device, tile, overlap, batch_size, precision, pad_mode
        See :func:`enhance_batch` (``clamp`` defaults to the model's own). ``batch_size``
        defaults to 4; with ``uncertainty`` to 1 on CPU and 4 on a GPU.
    allow_clamp_mismatch : bool
        Run with a clamp of another family than the model's (see :func:`enhance_batch`).
    uncertainty : bool
        Also estimate the per-pixel 1-sigma uncertainty of the output
        (:func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`: the network run on
        ``uncertainty_samples`` resamplings of the counts, in the same batch as the output;
        about ``uncertainty_samples + 1`` times the cost) and return it as
        ``result.uncertainty``, with its provenance in ``result.attrs``.
    uncertainty_samples, uncertainty_seed, uncertainty_method, uncertainty_calibration
        ``n_samples`` (>= 2), ``seed``, ``method`` and ``calibration`` of
        :func:`~xsa_enhance.models.uncertainty.estimate_uncertainty`.

    Returns
    -------
    EnhancedImage
        Counts on the model's output grid for its target exposure, masked, with provenance
        (and ``uncertainty`` when asked for).
    """
    kwargs: dict[str, Any] = dict(
        clamp=clamp, stretch=stretch, restore=restore, device=device, tile=tile,
        overlap=overlap, precision=precision, pad_mode=pad_mode,
        allow_clamp_mismatch=allow_clamp_mismatch,
    )
    if not uncertainty:
        return enhance_batch([counts], [exposure_s], [mask], model,
                             batch_size=4 if batch_size is None else batch_size, **kwargs)[0]
    # uncertainty.py imports this module: import it here, not at the top
    from xsa_enhance.models.uncertainty import estimate_uncertainty

    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    _checked_frame(counts, exposure_s, mask)  # before the counts are resampled
    result = estimate_uncertainty(
        counts, exposure_s, mask, model, n_samples=int(uncertainty_samples),
        method=uncertainty_method, seed=uncertainty_seed,
        calibration=uncertainty_calibration, **kwargs,
    )
    return result.output.with_uncertainty(result)
