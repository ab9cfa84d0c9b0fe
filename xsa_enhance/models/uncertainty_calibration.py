"""Calibration of the uncertainty of enhanced images: the tables, and fitting them.

The spread of the resampled outputs (``sigma_raw``) ignores the network's systematic errors, so
it is multiplied by a factor that depends on the output brightness (:func:`apply_calibration`),
fitted on simulations with a known truth (:func:`calibrate_uncertainty`,
:func:`fit_calibration_table`): within every brightness bin, 68.3 % of the pixels' true values
lie within ``output +- sigma``. The tables ship in ``uncertainty_calibration.json`` next to this
module (:data:`CALIBRATION_PATH`), keyed by ``"<weights sha256>:<clamp family>:<method>"``
(:func:`calibration_key`); :func:`lookup_calibration` finds one, :func:`write_calibration` adds
or replaces one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.atomicio import write_text_atomic
from xsa_enhance.models.uncertainty_resampling import resolve_method

__all__ = [
    "COVERAGE_1SIGMA",
    "CALIBRATION_PATH",
    "load_calibration",
    "calibration_key",
    "lookup_calibration",
    "apply_calibration",
    "coverage_by_bin",
    "fit_calibration_table",
    "simulated_pairs",
    "calibrate_uncertainty",
    "write_calibration",
]

logger = logging.getLogger(__name__)

#: Fraction of a normal distribution within +-1 sigma.
COVERAGE_1SIGMA: float = math.erf(1 / math.sqrt(2))
#: The shipped calibration tables.
CALIBRATION_PATH: Path = Path(__file__).with_name("uncertainty_calibration.json")
_CAL_FORMAT = "xsa-enhance-uncertainty-calibration/1"


def load_calibration(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read a calibration file (default: the shipped :data:`CALIBRATION_PATH`)."""
    p = Path(path) if path is not None else CALIBRATION_PATH
    if not p.is_file():
        return {"format": _CAL_FORMAT, "tables": {}}
    data = json.loads(p.read_text(encoding="utf-8"))
    data.setdefault("tables", {})
    return data


def calibration_key(sha256: str, clamp_family: str, method: str) -> str:
    """Key of a calibration table: ``"<weights sha256>:<clamp family>:<method>"``.

    Parameters
    ----------
    sha256 : str
        Digest of the weight file.
    clamp_family : str
        ``constant``, ``quantile`` or ``none``.
    method : str
        Resampling method (one of :data:`~xsa_enhance.models.uncertainty_resampling.METHODS`).

    Returns
    -------
    str
    """
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
    table = tables.get(calibration_key(model.sha256, fam, method))
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
    # uncertainty.py imports this module: import it here, not at the top
    from xsa_enhance.models.uncertainty import estimate_uncertainty, naive_sigma

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
        "key": calibration_key(model.sha256, fam, method),
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
    write_text_atomic(p, json.dumps(data, indent=1) + "\n")
    return p
