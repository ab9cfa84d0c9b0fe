"""Per-pixel uncertainty of enhanced images: the input's Poisson noise run through the network.

An enhanced image (:class:`~xsa_enhance.models.inference.EnhancedImage`) is one draw of a
noisy estimator: another 20 ks of the same sky would give other counts and another output.
:func:`estimate_uncertainty` measures that spread directly. It draws ``n_samples`` independent
resamplings of the input counts, runs them through the *same* network (one
:func:`~xsa_enhance.models.inference.enhance_batch` call, so the windows of all resamples are
batched; the cost is about ``n_samples + 1`` enhancements) and returns the per-pixel standard
deviation of the outputs, in the units and on the grid of the output (counts for the model's
target exposure, zero outside the mask).

Resampling methods (``method``; the measured comparison is in ``docs/uncertainty.md``):

``poisson-bootstrap`` (the default for SR)
    Parametric bootstrap: Poisson draws around a smoothed estimate of the expected counts
    (a mask-normalised Gaussian of ``smooth_px`` input pixels). Every resample is a genuine
    20 ks Poisson image of the same (estimated) sky, so the network sees inputs like those it
    was trained on.
``poisson-counts``
    Poisson draws around the counts themselves. Given the counts, the spread of a draw is the
    counts' own Poisson variance (no correction factor), but each resample carries the noise
    of the original *and* of the draw (twice the variance of a real 20 ks image).
``poisson-model`` (DN only; the default for DN)
    Parametric bootstrap around the network's own estimate: Poisson draws around the DN
    output scaled back to the input exposure (the denoised expected counts). The outputs'
    spread then matches the network's true output noise (measured against many independent
    draws of the known sky) within about 5 %, where the other methods overestimate it by
    1.3-1.8x. Same cost; the output is computed first, in its own pass.
``thinning``
    Binomial thinning of the counts to half the exposure (each count kept with probability
    1/2; exactly a Poisson image of half the exposure), run with ``exposure_s / 2``. Given the
    counts, the variance of the thinned *rate* equals that of the original rate, so the
    spread needs no correction for a linear network; the network sees 10 ks inputs.

The spread alone ignores the network's systematic errors (bias, clamping, invented or
suppressed features), so the raw ``sigma_raw`` is multiplied by a calibration factor that
depends on the output brightness, fitted on simulations with a known truth
(:func:`calibrate_uncertainty`): within every brightness bin, 68.3 % of the pixels' true values
(the expected, noiseless target) lie within ``output +- sigma``. The tables ship in
``uncertainty_calibration.json`` next to this module, keyed by weights sha256 and clamp
family; unknown weights fall back to the raw spread with a logged warning.

What sigma does *not* capture: features the network invents (or suppresses) *consistently*
for every resampling of the same sky, e.g. a hallucinated source that is stable under the
input's noise, or errors from a wrong sky model (real data unlike the simulations). The
calibration absorbs these only on average, per brightness bin, for simulated skies.

Refit a table (one line per weights/clamp; rewrites only that entry)::

    python -m xsa_enhance.models.uncertainty fit xmm-denoise-v3 \\
        /work/train/work/train_dn.zarr --clamp constant

The resampling lives in :mod:`~xsa_enhance.models.uncertainty_resampling`, the calibration
tables and their fit in :mod:`~xsa_enhance.models.uncertainty_calibration`, the ``python -m``
entry in :mod:`~xsa_enhance.models.uncertainty_fit`; their public names are re-exported here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xsa_enhance.models.uncertainty_calibration import (
    CALIBRATION_PATH,
    COVERAGE_1SIGMA,
    apply_calibration,
    calibrate_uncertainty,
    calibration_key,
    coverage_by_bin,
    fit_calibration_table,
    load_calibration,
    lookup_calibration,
    simulated_pairs,
    write_calibration,
)
from xsa_enhance.models.uncertainty_resampling import (
    DEFAULT_METHOD,
    METHODS,
    resample_counts,
    resolve_method,
)

__all__ = [
    "METHODS",
    "DEFAULT_METHOD",
    "COVERAGE_1SIGMA",
    "resolve_method",
    "CALIBRATION_PATH",
    "UncertaintyResult",
    "resample_counts",
    "estimate_uncertainty",
    "naive_sigma",
    "significance_map",
    "peak_significance",
    "load_calibration",
    "lookup_calibration",
    "apply_calibration",
    "fit_calibration_table",
    "coverage_by_bin",
    "simulated_pairs",
    "calibrate_uncertainty",
    "write_calibration",
]

logger = logging.getLogger(__name__)


@dataclass
class UncertaintyResult:
    """Per-pixel 1-sigma uncertainty of an enhanced image.

    Parameters
    ----------
    sigma : numpy.ndarray
        float32, output grid, counts for the model's target exposure (like
        ``EnhancedImage.counts``); calibrated when a calibration was applied; 0 outside the
        mask.
    mean : numpy.ndarray
        Mean of the resampled outputs (float32, same grid and units).
    n_samples : int
        Number of resamples.
    method : str
        Resampling method.
    sigma_raw : numpy.ndarray
        The spread of the resampled outputs before calibration.
    output : EnhancedImage or None
        The enhancement of the actual counts (computed in the same batch unless given).
    attrs : dict
        Provenance: method, n_samples, seed, smooth_px, calibration (key, source), model,
        weights_sha256, clamp_mode, units.
    """

    sigma: np.ndarray
    mean: np.ndarray
    n_samples: int
    method: str
    sigma_raw: np.ndarray
    output: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def significance(self, counts: np.ndarray | None = None) -> np.ndarray:
        """``output / sigma`` (see :func:`significance_map`); default: this result's output."""
        if counts is None:
            if self.output is None:
                raise ValueError("no output stored; pass the enhanced counts")
            counts = self.output.counts
        return significance_map(counts, self.sigma)



def estimate_uncertainty(
    counts: np.ndarray,
    exposure_s: float,
    mask: np.ndarray | None,
    model: Any,
    *,
    clamp: Any = None,
    n_samples: int = 8,
    method: str = "auto",
    seed: int | np.random.SeedSequence | None = 0,
    calibration: "str | dict[str, Any] | None | bool" = "auto",
    output: Any = None,
    smooth_px: float = 1.0,
    **enhance_kwargs: Any,
) -> UncertaintyResult:
    """Per-pixel 1-sigma uncertainty of the enhancement of one counts image.

    Parameters
    ----------
    counts : numpy.ndarray
        Counts on the 1x grid (as for :func:`~xsa_enhance.models.inference.enhance`).
    exposure_s : float
        Exposure of the counts (s).
    mask : numpy.ndarray or None
        Detector mask (None: as :func:`~xsa_enhance.models.inference.enhance`).
    model : LoadedModel
        From :func:`~xsa_enhance.models.registry.load_model`.
    clamp : str or ClampSpec, optional
        Clamp (default: the model's own); also selects the calibration table.
    n_samples : int
        Resamples (>= 2). The relative error of sigma is about ``1 / sqrt(2 (n - 1))``:
        27 % for 8.
    method : str
        ``"auto"`` (:data:`DEFAULT_METHOD`: ``poisson-model`` for DN, ``poisson-bootstrap``
        for SR) or one of :data:`METHODS` (see the module documentation).
    seed : int, SeedSequence or None
        Seed of the resampling (same seed, same sigma, bit for bit on CPU).
    calibration : "auto", dict, None or False
        ``"auto"``: the shipped table for the model's weights, clamp family and method (raw
        spread with a warning if none); a table dict (from :func:`fit_calibration_table`);
        None / False: the raw spread.
    output : EnhancedImage, optional
        The enhancement of ``counts`` if already computed; otherwise it is computed in the
        same batch as the resamples and returned as ``result.output``.
    smooth_px : float
        Smoothing of the rate estimate of ``poisson-bootstrap`` (input pixels).
    **enhance_kwargs
        Passed to :func:`~xsa_enhance.models.inference.enhance_batch` (stretch, restore,
        device, tile, overlap, batch_size, precision, pad_mode, allow_clamp_mismatch).
        ``batch_size`` defaults to 1 on CPU (faster for whole frames) and 4 on a GPU.

    Returns
    -------
    UncertaintyResult
    """
    from xsa_enhance.models.inference import ImageError, _default_mask, enhance_batch

    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to measure a spread, got {n_samples}")
    method = resolve_method(method, model)
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ImageError(f"counts must be a 2-D image, got shape {c.shape}")
    m = _default_mask(c.shape) if mask is None else np.asarray(mask, dtype=np.float64)
    if "batch_size" not in enhance_kwargs:
        # whole frames one at a time are faster on CPU (1.07 against 1.52 s per DN frame
        # with 4 per pass, measured on one thread); GPUs gain from batching
        enhance_kwargs["batch_size"] = 1 if _device_type(model, enhance_kwargs) == "cpu" else 4
    rng = np.random.default_rng(seed)
    expected = None
    if method == "poisson-model":
        if model.factor != 1:
            raise ValueError("method 'poisson-model' needs a DN model (factor 1): an SR output "
                             "is background-free with a sharper PSF, not the input's "
                             "expected counts")
        if output is None:
            output = enhance_batch([c], [float(exposure_s)], [m], model, clamp=clamp,
                                   **enhance_kwargs)[0]
        # the network's estimate of the expected counts, at the input exposure
        expected = output.counts * (float(exposure_s) / float(model.target_exposure_s))
    samples, efac = resample_counts(c, m, method=method, n_samples=n_samples, rng=rng,
                                    smooth_px=smooth_px, expected=expected)
    frames = list(samples)
    exposures = [float(exposure_s) * efac] * n_samples
    if output is None:
        frames.insert(0, c)
        exposures.insert(0, float(exposure_s))
    outs = enhance_batch(frames, exposures, [m] * len(frames), model, clamp=clamp,
                         **enhance_kwargs)
    if output is None:
        output, outs = outs[0], outs[1:]
    stack = np.stack([o.counts for o in outs]).astype(np.float64)
    mask_out = np.asarray(output.mask, dtype=bool)
    sigma_raw = (stack.std(axis=0, ddof=1) * mask_out).astype(np.float32)
    mean = (stack.mean(axis=0) * mask_out).astype(np.float32)
    from xsa_enhance.models.normalise import ClampSpec

    fam = ClampSpec.parse(clamp if clamp is not None else model.clamp).mode
    source = "none"
    table: dict[str, Any] | None = None
    if isinstance(calibration, dict):
        table, source = calibration, "given"
    elif calibration == "auto":
        table = lookup_calibration(model, clamp, method)
        source = "shipped" if table is not None else "none (no table for these weights)"
    elif calibration not in (None, False):
        raise ValueError(f"calibration must be 'auto', a table dict, None or False, "
                         f"got {calibration!r}")
    sigma = apply_calibration(sigma_raw, output.counts, table) * mask_out
    attrs = {
        "uncertainty_method": method,
        "uncertainty_n_samples": int(n_samples),
        "uncertainty_seed": seed if isinstance(seed, int) or seed is None else str(seed),
        "uncertainty_smooth_px": float(smooth_px) if method == "poisson-bootstrap" else None,
        "uncertainty_calibration": source,
        "uncertainty_calibration_key": (calibration_key(model.sha256, fam, method)
                                        if table is not None else None),
        "uncertainty_units": "counts per output pixel for target_exposure_s, 1 sigma",
        "model": model.name,
        "weights_sha256": model.sha256,
        "clamp_mode": fam,
        "target_exposure_s": float(model.target_exposure_s),
    }
    return UncertaintyResult(sigma=sigma.astype(np.float32), mean=mean, n_samples=n_samples,
                             method=method, sigma_raw=sigma_raw, output=output, attrs=attrs)


def _device_type(model: Any, enhance_kwargs: dict[str, Any]) -> str:
    import torch

    dev = enhance_kwargs.get("device")
    if dev is not None:
        return torch.device(dev).type
    for p in model.network.parameters():
        return p.device.type
    return "cpu"


def naive_sigma(counts: np.ndarray, exposure_s: float, mask: np.ndarray | None, *,
                factor: int, target_exposure_s: float) -> np.ndarray:
    """The naive baseline: ``sqrt(input counts)`` scaled to the output exposure and grid.

    An output pixel of a ``factor`` x ``factor`` split of an input pixel gets
    ``sqrt(N) / factor**2 * target_exposure_s / exposure_s`` (float32, counts).
    """
    c = np.clip(np.asarray(counts, dtype=np.float64), 0, None)
    if mask is not None:
        c = c * (np.asarray(mask) > 0)
    s = np.sqrt(c) * (target_exposure_s / exposure_s) / factor ** 2
    if factor > 1:
        s = np.repeat(np.repeat(s, factor, axis=0), factor, axis=1)
    return s.astype(np.float32)


def significance_map(output: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``output / sigma`` (float32); 0 where sigma is 0 (outside the mask)."""
    o = np.asarray(output, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, o / np.where(s > 0, s, 1.0), 0.0)
    return z.astype(np.float32)


def peak_significance(
    output: np.ndarray,
    sigma: np.ndarray,
    peaks_yx: Sequence[Sequence[float]] | np.ndarray,
    *,
    annulus: tuple[float, float] = (4.0, 8.0),
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Score peaks: ``(output[peak] - median(output in annulus)) / sigma[peak]``.

    Parameters
    ----------
    output, sigma : numpy.ndarray
        Enhanced counts and their 1-sigma uncertainty (same grid).
    peaks_yx : array-like, shape (n, 2)
        Peak positions in output pixels (rounded to the nearest pixel).
    annulus : tuple of float
        Inner and outer radius (output pixels) of the local-background annulus.
    mask : numpy.ndarray, optional
        Only annulus pixels inside the mask count (default: where sigma > 0).

    Returns
    -------
    numpy.ndarray
        One score per peak (NaN for a peak outside the image, with zero sigma, or with no
        annulus pixels).
    """
    out = np.asarray(output, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)
    good = (sig > 0) if mask is None else (np.asarray(mask) > 0)
    r1, r2 = float(annulus[0]), float(annulus[1])
    if not (0 <= r1 < r2):
        raise ValueError(f"annulus must be (r1, r2) with 0 <= r1 < r2, got {annulus}")
    pk = np.atleast_2d(np.asarray(peaks_yx, dtype=np.float64))
    ny, nx = out.shape
    R = int(math.ceil(r2))
    dy, dx = np.mgrid[-R:R + 1, -R:R + 1]
    rr = np.hypot(dy, dx)
    ring = (rr >= r1) & (rr <= r2)
    scores = np.full(len(pk), np.nan)
    for i, (y, x) in enumerate(pk):
        iy, ix = int(round(y)), int(round(x))
        if not (0 <= iy < ny and 0 <= ix < nx) or sig[iy, ix] <= 0:
            continue
        yy, xx = iy + dy[ring], ix + dx[ring]
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        yy, xx = yy[ok], xx[ok]
        sel = good[yy, xx]
        if not np.any(sel):
            continue
        bkg = float(np.median(out[yy[sel], xx[sel]]))
        scores[i] = (out[iy, ix] - bkg) / sig[iy, ix]
    return scores



if __name__ == "__main__":  # pragma: no cover
    from xsa_enhance.models.uncertainty_fit import main

    raise SystemExit(main())
