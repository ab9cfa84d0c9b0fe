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
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

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

#: Resampling methods of :func:`estimate_uncertainty`.
METHODS: tuple[str, ...] = ("poisson-bootstrap", "poisson-counts", "thinning", "poisson-model")
#: Default method per model kind, chosen by measurement (docs/uncertainty.md).
DEFAULT_METHOD: dict[str, str] = {"dn": "poisson-model", "sr": "poisson-bootstrap"}
#: Fraction of a normal distribution within +-1 sigma.
COVERAGE_1SIGMA: float = math.erf(1 / math.sqrt(2))
#: The shipped calibration tables.
CALIBRATION_PATH: Path = Path(__file__).with_name("uncertainty_calibration.json")
_CAL_FORMAT = "xsa-enhance-uncertainty-calibration/1"


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


# --------------------------------------------------------------------------------------------
# resampling


def _smooth(counts: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Mask-normalised Gaussian smoothing (no bleeding across chip gaps / the mask edge)."""
    if sigma_px <= 0:
        return counts * (mask > 0)
    m = (mask > 0).astype(np.float64)
    num = ndimage.gaussian_filter(counts * m, sigma_px, mode="constant")
    den = ndimage.gaussian_filter(m, sigma_px, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-6, num / np.maximum(den, 1e-12), 0.0)
    return out * m


def resample_counts(
    counts: np.ndarray,
    mask: np.ndarray,
    *,
    method: str,
    n_samples: int,
    rng: np.random.Generator,
    smooth_px: float = 1.0,
    expected: np.ndarray | None = None,
) -> tuple[list[np.ndarray], float]:
    """Independent resamplings of a counts image.

    Parameters
    ----------
    counts, mask : numpy.ndarray
        Input counts and detector mask (1x grid).
    method : str
        One of :data:`METHODS`.
    n_samples : int
        Number of resamples.
    rng : numpy.random.Generator
    smooth_px : float
        Gaussian sigma (input pixels) of the rate estimate of ``poisson-bootstrap``.
    expected : numpy.ndarray, optional
        The expected counts to draw around for ``poisson-model`` (required there).

    Returns
    -------
    samples : list of numpy.ndarray
        float64 counts images.
    exposure_factor : float
        Exposure of the resamples over that of the input (0.5 for thinning, else 1).
    """
    c = np.clip(np.asarray(counts, dtype=np.float64), 0, None) * (mask > 0)
    if method == "poisson-bootstrap":
        lam = _smooth(c, mask, smooth_px)
        return [rng.poisson(lam).astype(np.float64) for _ in range(n_samples)], 1.0
    if method == "poisson-model":
        if expected is None:
            raise ValueError("method 'poisson-model' needs the expected counts")
        lam = np.clip(np.asarray(expected, dtype=np.float64), 0, None) * (mask > 0)
        return [rng.poisson(lam).astype(np.float64) for _ in range(n_samples)], 1.0
    if method == "poisson-counts":
        return [rng.poisson(c).astype(np.float64) for _ in range(n_samples)], 1.0
    if method == "thinning":
        ci = np.round(c).astype(np.int64)
        return [rng.binomial(ci, 0.5).astype(np.float64) for _ in range(n_samples)], 0.5
    raise ValueError(f"unknown uncertainty method {method!r}; expected one of {METHODS}")


def resolve_method(method: str, model: Any) -> str:
    """``"auto"`` -> :data:`DEFAULT_METHOD` of the model's kind; other names are checked."""
    if method == "auto":
        return DEFAULT_METHOD.get(str(model.kind), "poisson-bootstrap")
    if method not in METHODS:
        raise ValueError(f"unknown uncertainty method {method!r}; expected 'auto' or one of "
                         f"{METHODS}")
    return method


# --------------------------------------------------------------------------------------------
# calibration tables


def load_calibration(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read a calibration file (default: the shipped :data:`CALIBRATION_PATH`)."""
    p = Path(path) if path is not None else CALIBRATION_PATH
    if not p.is_file():
        return {"format": _CAL_FORMAT, "tables": {}}
    data = json.loads(p.read_text(encoding="utf-8"))
    data.setdefault("tables", {})
    return data


def _cal_key(sha256: str, clamp_family: str, method: str) -> str:
    return f"{sha256}:{clamp_family}:{method}"


def lookup_calibration(
    model: Any, clamp: Any = None, method: str = "auto", *,
    path: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """The calibration table of a model's weights for a clamp family and method, or None.

    Tables are keyed by ``"<weights sha256>:<clamp family>:<method>"``; None (and a logged
    warning) when the weights, clamp family or method have no table: the sigma is then the
    uncalibrated spread.
    """
    from xsa_enhance.models.normalise import ClampSpec

    fam = ClampSpec.parse(clamp if clamp is not None else model.clamp).mode
    method = resolve_method(method, model)
    tables = load_calibration(path)["tables"]
    table = tables.get(_cal_key(model.sha256, fam, method))
    if table is None:
        logger.warning(
            "no uncertainty calibration for %s (sha256 %s..., clamp %s, method %s): sigma is "
            "the uncalibrated spread of the resampled outputs (refit with `python -m "
            "xsa_enhance.models.uncertainty fit`)", model.name, model.sha256[:12], fam, method)
    return table


def _bin_index(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin of each value for interior ``edges`` (len(edges) + 1 bins)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")


def apply_calibration(sigma_raw: np.ndarray, output: np.ndarray,
                      table: dict[str, Any] | None) -> np.ndarray:
    """Calibrated sigma: ``factor[bin] * sigma_raw``, or ``floor[bin]`` where the spread is 0.

    The bin is that of the output brightness (counts per output pixel at the target
    exposure) in the table's interior ``edges`` (bin ``i`` holds ``edges[i-1] <= v <
    edges[i]``); ``floor`` (optional, counts) is the sigma of pixels whose resampled outputs
    were all equal (e.g. clipped at zero in every resample), where no factor can help.
    """
    s = np.asarray(sigma_raw, dtype=np.float64)
    if table is None:
        return s.astype(np.float32)
    b = _bin_index(np.asarray(output, dtype=np.float64), table["edges"])
    k = np.asarray(table["factors"], dtype=np.float64)[b]
    fl = np.asarray(table.get("floors", [0.0] * len(table["factors"])), dtype=np.float64)[b]
    return np.where(s > 0, k * s, fl).astype(np.float32)


# --------------------------------------------------------------------------------------------
# the estimate


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
        "uncertainty_calibration_key": (_cal_key(model.sha256, fam, method)
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


# --------------------------------------------------------------------------------------------
# fitting the calibration on simulations


def coverage_by_bin(output: np.ndarray, truth: np.ndarray, sigma: np.ndarray,
                    edges: Sequence[float], *, k: float = 1.0) -> np.ndarray:
    """Fraction of pixels with ``|output - truth| <= k sigma`` in each output-brightness bin
    (1-D arrays of the pixels to use; NaN for an empty bin)."""
    b = _bin_index(output, edges)
    hit = np.abs(output - truth) <= k * sigma
    cov = np.full(len(edges) + 1, np.nan)
    for i in range(len(edges) + 1):
        sel = b == i
        if np.any(sel):
            cov[i] = float(np.mean(hit[sel]))
    return cov


def _brightness_edges(output: np.ndarray, n_bins: int) -> list[float]:
    """Interior edges at the output-brightness quantiles (duplicates removed)."""
    q = np.quantile(output, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges: list[float] = []
    for v in q:
        if not edges or v > edges[-1] * (1 + 1e-6) + 1e-12:
            edges.append(float(v))
    return edges


def fit_calibration_table(output: np.ndarray, truth: np.ndarray, sigma_raw: np.ndarray, *,
                          n_bins: int = 10, target: float = COVERAGE_1SIGMA,
                          edges: Sequence[float] | None = None) -> dict[str, Any]:
    """Fit per-brightness-bin factors (and floors) so ``target`` of the truths are within
    ``output +- sigma``.

    In each bin (quantiles of ``output`` unless ``edges`` are given) the factor is the
    ``target`` quantile of ``|output - truth| / sigma_raw`` over the pixels with a spread,
    and the floor is the ``target`` quantile of ``|output - truth|`` over the pixels with
    zero spread (0 when none), so that both kinds of pixel are covered.

    Parameters
    ----------
    output, truth, sigma_raw : numpy.ndarray
        1-D arrays over the pixels (inside the mask) of the fitting images.

    Returns
    -------
    dict
        ``{"edges", "factors", "floors", "n_pixels", "target_coverage"}``.
    """
    o = np.asarray(output, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    s = np.asarray(sigma_raw, dtype=np.float64).ravel()
    if edges is None:
        edges = _brightness_edges(o, n_bins)
    b = _bin_index(o, edges)
    err = np.abs(o - t)
    factors, floors, npix = [], [], []
    for i in range(len(edges) + 1):
        sel = b == i
        spread = sel & (s > 0)
        flat = sel & ~(s > 0)
        k = float(np.quantile(err[spread] / s[spread], target)) if np.any(spread) else 1.0
        fl = float(np.quantile(err[flat], target)) if np.any(flat) else 0.0
        factors.append(k)
        floors.append(fl)
        npix.append(int(np.count_nonzero(sel)))
    return {"edges": [float(e) for e in edges], "factors": factors, "floors": floors,
            "n_pixels": npix, "target_coverage": float(target)}


def simulated_pairs(training_set_path: str | os.PathLike[str], split: str, n_images: int, *,
                    seed: int, p_points: float | None = None
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float, float]]:
    """Full-frame ``(input counts, true target counts, 1x mask, input exposure, target
    exposure)`` of random component combinations of a training-set split.

    The truth is the set's target, which is the expected (noiseless) counts for sets written
    with ``target_noise="none"`` (a warning is logged otherwise). ``p_points`` is the
    probability of adding a bright point-source field (default 0.5 when the set has them).
    """
    from xsa_enhance.training.data import PairSource, open_pairs

    ts = open_pairs(str(training_set_path))
    if ts.target_noise != "none":
        logger.warning("%s has Poisson-sampled targets: the 'truth' is noisy", ts.path)
    if p_points is None:
        p_points = 0.5 if "points" in ts.components else 0.0
    src = PairSource(ts, split, crop=None, p_points=p_points)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        combo, pos = src.draw(rng)
        inp, tgt, mask = src.counts(combo, pos)
        out.append((inp * mask, tgt, mask, src.in_exp, src.out_exp))
    return out


def _gather(model: Any, pairs: list, *, clamp: Any, n_samples: int, method: str, seed: int,
            smooth_px: float = 1.0, **kw: Any) -> dict[str, np.ndarray]:
    """Per-pixel output, truth, raw sigma and naive sigma over the masked pixels of pairs."""
    cols: dict[str, list[np.ndarray]] = {"output": [], "truth": [], "sigma": [], "naive": []}
    ss = np.random.SeedSequence(seed)
    for (inp, tgt, mask, t_in, t_out), child in zip(pairs, ss.spawn(len(pairs))):
        res = estimate_uncertainty(inp, t_in, mask, model, clamp=clamp, n_samples=n_samples,
                                   method=method, seed=child, calibration=None,
                                   smooth_px=smooth_px, **kw)
        m = res.output.mask
        scale = float(model.target_exposure_s) / t_out
        cols["output"].append(res.output.counts[m])
        cols["truth"].append((tgt * scale)[m])
        cols["sigma"].append(res.sigma_raw[m])
        cols["naive"].append(naive_sigma(inp, t_in, mask, factor=model.factor,
                                         target_exposure_s=model.target_exposure_s)[m])
    return {k: np.concatenate(v).astype(np.float64) for k, v in cols.items()}


def calibrate_uncertainty(
    model: Any,
    training_set_path: str | os.PathLike[str],
    *,
    clamp: Any = None,
    n_images: int = 6,
    n_samples: int = 8,
    seed: int = 0,
    method: str = "auto",
    split: str = "val",
    n_bins: int = 10,
    **enhance_kwargs: Any,
) -> dict[str, Any]:
    """Fit the calibration table of a model on simulated pairs with a known truth.

    Parameters
    ----------
    model : LoadedModel or str
        Loaded weights, or a name for :func:`~xsa_enhance.models.registry.load_model`.
    training_set_path : path-like
        A training set written with ``target_noise="none"`` (expected targets).
    clamp : str, optional
        Clamp (default: the model's); the table is keyed by its family.
    n_images, n_samples, seed, method, split, n_bins
        Fitting images (random component combinations of ``split``), resamples per image,
        seed, resampling method, brightness bins.

    Returns
    -------
    dict
        The table (``edges``, ``factors``, ``floors``, ``n_pixels``, ...) plus ``key``, the
        fit's provenance and the coverage on the fitting pixels before/after calibration.
    """
    from xsa_enhance.models.normalise import ClampSpec
    from xsa_enhance.models.registry import load_model

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model, clamp=clamp)
    method = resolve_method(method, model)
    fam = ClampSpec.parse(clamp if clamp is not None else model.clamp).mode
    t0 = time.perf_counter()
    # the mixture the weights were trained on (bright point-source fields: model card)
    p_points = (model.card.get("training") or {}).get("p_points")
    pairs = simulated_pairs(training_set_path, split, n_images, seed=seed,
                            p_points=None if p_points is None else float(p_points))
    d = _gather(model, pairs, clamp=clamp, n_samples=n_samples, method=method, seed=seed + 1,
                **enhance_kwargs)
    table = fit_calibration_table(d["output"], d["truth"], d["sigma"], n_bins=n_bins)
    cal = apply_calibration(d["sigma"], d["output"], table)
    table.update({
        "key": _cal_key(model.sha256, fam, method),
        "model": model.name,
        "weights_sha256": model.sha256,
        "clamp": fam,
        "method": method,
        "n_samples": int(n_samples),
        "fit": {"training_set": str(training_set_path), "split": split,
                "n_images": int(n_images), "seed": int(seed), "p_points": p_points,
                "seconds": round(time.perf_counter() - t0, 1)},
        "coverage_fit_raw": [round(float(v), 4) for v in
                             coverage_by_bin(d["output"], d["truth"], d["sigma"],
                                             table["edges"])],
        "coverage_fit_calibrated": [round(float(v), 4) for v in
                                    coverage_by_bin(d["output"], d["truth"], cal,
                                                    table["edges"])],
    })
    return table


def write_calibration(table: dict[str, Any],
                      path: str | os.PathLike[str] | None = None) -> Path:
    """Add (or replace) one table in a calibration file (default: the shipped one)."""
    p = Path(path) if path is not None else CALIBRATION_PATH
    data = load_calibration(p)
    data["format"] = _CAL_FORMAT
    data["tables"][table["key"]] = table
    data["tables"] = dict(sorted(data["tables"].items()))
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xsa_enhance.models.uncertainty fit MODEL TRAINING_SET [options]``."""
    ap = argparse.ArgumentParser(prog="python -m xsa_enhance.models.uncertainty")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit and store the calibration table of a model")
    f.add_argument("model")
    f.add_argument("training_set")
    f.add_argument("--clamp", default=None)
    f.add_argument("--n-images", type=int, default=6)
    f.add_argument("--n-samples", type=int, default=8)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--method", default="auto", choices=("auto", *METHODS))
    f.add_argument("--out", default=None, help="calibration file (default: the shipped one)")
    f.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    table = calibrate_uncertainty(a.model, a.training_set, clamp=a.clamp, n_images=a.n_images,
                                  n_samples=a.n_samples, seed=a.seed, method=a.method)
    path = write_calibration(table, a.out)
    print(f"{table['key']} -> {path}")
    print("factors", [round(v, 3) for v in table["factors"]])
    print("coverage raw       ", table["coverage_fit_raw"])
    print("coverage calibrated", table["coverage_fit_calibrated"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
