"""Evaluation of a model against its input, the classical methods and the reference work.

For every test image (a random combination of test-split components, full frame, fixed seed)
the input, the model's output and each classical method's output are scored against the target
with the metrics of :mod:`xsa_enhance.training.metrics` on the linear scale: rates divided by the
paper's *constant* target clamp and clipped to ``[0, 1]`` (whatever clamp the model runs with,
so that figures stay comparable). The SR input is nearest-neighbour upsampled.

Metrics are also broken down by region type, defined from the noiseless component targets:

- ``point_sources``: pixels where the AGN component exceeds 5 mean backgrounds;
- ``faint_extended``: extended emission between 0.5 and 20 mean backgrounds, away from AGN;
- ``background``: pixels where both components are below 0.1 mean backgrounds.

:func:`evaluate` writes ``figures.json``, ``report.md`` and PNG panels into a folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.models.normalise import INPUT_CLAMP, MEAN_BACKGROUND_RATE
from xsa_enhance.training.baselines import run_baselines
from xsa_enhance.training.data import PairSource, open_pairs, target_clamp_for
from xsa_enhance.training.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    compute_metrics,
    region_metrics,
    upsample_nearest,
)

__all__ = [
    "REFERENCE",
    "TARGETS",
    "Predictor",
    "EvaluationReport",
    "region_masks",
    "evaluate",
    "model_predictor",
]

logger = logging.getLogger(__name__)

#: A predictor: ``(counts_1x, exposure_s, mask_1x) -> rate`` on the output grid (counts/s/px).
Predictor = Callable[[np.ndarray, float, np.ndarray], np.ndarray]

#: Reference work (Sweere et al. 2022), input -> prediction. SR: simulated test set;
#: DN: real data, fine-tuned model (DESIGN.md sec. 7).
REFERENCE: dict[str, dict[str, dict[str, float]]] = {
    "sr": {
        "input": {"l1": 0.01096, "psnr": 33.525, "poisson": 0.08285, "ssim": 0.8248,
                  "ms_ssim": 0.9499, "fsim": 0.8657, "haarpsi": 0.5312},
        "model": {"l1": 0.006508, "psnr": 38.034, "poisson": 0.04997, "ssim": 0.907,
                  "ms_ssim": 0.9846, "fsim": 0.8688, "haarpsi": 0.697},
    },
    "dn": {
        "input": {"l1": 0.006528, "psnr": 39.349, "ms_ssim": 0.9922, "haarpsi": 0.8879},
        "model": {"l1": 0.004408, "psnr": 42.693, "ms_ssim": 0.9939, "haarpsi": 0.9253},
    },
}

#: Acceptance targets of the shipped models (issue 6).
TARGETS: dict[str, dict[str, Any]] = {
    "sr": {"min_psnr_gain_db": 4.5, "beat": ("richardson_lucy", "gaussian"),
           "all_metrics_improve": True},
    "dn": {"min_psnr_gain_db": 3.0, "beat": ("wavelet", "gaussian"),
           "all_metrics_improve": False},
}


@dataclass
class EvaluationReport:
    """Figures of one evaluation.

    Attributes
    ----------
    kind : str
        ``"sr"`` or ``"dn"``.
    methods : dict
        Method -> metric -> mean over images (``input``, ``model``, the baselines).
    std : dict
        Method -> metric -> standard deviation over images.
    regions : dict
        Method -> region -> figure -> mean over images.
    per_image : list of dict
        Method -> metric for each image.
    targets : dict
        Each acceptance check with its measured value and whether it passed.
    meta : dict
        Model, weights digest, test set, split, seed, clamp, number of images.
    out_dir : pathlib.Path or None
        Where the files were written.
    """

    kind: str
    methods: dict[str, dict[str, float]]
    std: dict[str, dict[str, float]]
    regions: dict[str, dict[str, dict[str, float]]]
    per_image: list[dict[str, dict[str, float]]]
    targets: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``figures.json`` holds)."""
        return {"kind": self.kind, "meta": self.meta, "methods": self.methods, "std": self.std,
                "regions": self.regions, "targets": self.targets,
                "reference": REFERENCE.get(self.kind, {}), "per_image": self.per_image}


def region_masks(components: dict[str, np.ndarray | None], mask: np.ndarray, *, factor: int
                 ) -> dict[str, np.ndarray]:
    """Region masks on the output grid from noiseless component target *rates*.

    Parameters
    ----------
    components : dict
        ``extended`` and ``agn`` target rates (counts/s per output pixel) or None when absent.
    mask : numpy.ndarray
        Output-grid detector mask.
    factor : int
        Output grid factor (the mean background per pixel is divided by ``factor**2``).

    Returns
    -------
    dict of str to numpy.ndarray
        ``background``, ``faint_extended``, ``point_sources``.
    """
    m = np.asarray(mask) > 0
    mu = MEAN_BACKGROUND_RATE / factor**2
    zero = np.zeros(m.shape)
    ext = components.get("extended")
    agn = components.get("agn")
    ext = zero if ext is None else np.asarray(ext, dtype=np.float64)
    agn = zero if agn is None else np.asarray(agn, dtype=np.float64)
    point = m & (agn >= 5 * mu)
    faint = m & (ext >= 0.5 * mu) & (ext < 20 * mu) & (agn < 0.5 * mu)
    bkg = m & (ext < 0.1 * mu) & (agn < 0.1 * mu)
    return {"background": bkg, "faint_extended": faint, "point_sources": point}


def model_predictor(model: Any, *, clamp: str | None = None, stretch: str | None = None
                    ) -> Predictor:
    """A :data:`Predictor` running :func:`xsa_enhance.models.inference.enhance`."""
    from xsa_enhance.models.inference import enhance

    def predict(counts: np.ndarray, exposure_s: float, mask: np.ndarray) -> np.ndarray:
        out = enhance(counts, exposure_s, mask, model, clamp=clamp, stretch=stretch)
        return np.asarray(out.counts, dtype=np.float64) / float(out.exposure_s)

    return predict


def _linear(rate: np.ndarray, clamp: float) -> np.ndarray:
    return np.clip(np.asarray(rate, dtype=np.float64) / clamp, 0.0, 1.0)


def _check_targets(kind: str, methods: dict[str, dict[str, float]]) -> dict[str, Any]:
    t = TARGETS[kind]
    inp, mod = methods["input"], methods["model"]
    gain = mod["psnr"] - inp["psnr"]
    checks: dict[str, Any] = {
        "psnr_gain_db": {"value": gain, "target": t["min_psnr_gain_db"],
                         "passed": bool(gain >= t["min_psnr_gain_db"])},
    }
    improved = {}
    for m in METRICS:
        a, b = inp.get(m, math.nan), mod.get(m, math.nan)
        if math.isnan(a) or math.isnan(b):
            continue
        improved[m] = bool(b > a) if m in HIGHER_IS_BETTER else bool(b < a)
    checks["metrics_improved_over_input"] = {"value": improved,
                                             "passed": all(improved.values()),
                                             "required": t["all_metrics_improve"]}
    for base in t["beat"]:
        if base not in methods:
            continue
        for m in ("psnr", "ms_ssim"):
            checks[f"beats_{base}_{m}"] = {
                "value": mod[m] - methods[base][m], "passed": bool(mod[m] > methods[base][m])}
    return checks


def _panel(path: Path, images: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), dpi=110)
    for ax, (name, img) in zip(np.atleast_1d(axes), images.items()):
        ax.imshow(np.sqrt(np.clip(img, 0, 1)), origin="lower", cmap="magma", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _markdown(rep: EvaluationReport, panels: list[str]) -> str:
    kind = rep.kind
    lines = [f"# Evaluation of {rep.meta.get('model')} ({'super-resolution' if kind == 'sr' else 'de-noising'})", ""]
    lines += [f"- test set: `{rep.meta.get('test_set')}` split `{rep.meta.get('split')}`, "
              f"{rep.meta.get('n_images')} images, seed {rep.meta.get('seed')}",
              f"- weights sha256: `{rep.meta.get('weights_sha256')}`",
              f"- model clamp: {rep.meta.get('clamp')}; metrics on the linear scale (rate / "
              f"constant target clamp {rep.meta.get('target_clamp')}, clipped to [0, 1])", ""]
    lines += ["## Metrics (mean over test images)", ""]
    methods = list(rep.methods)
    lines.append("| metric | " + " | ".join(methods) + " |")
    lines.append("|---" * (len(methods) + 1) + "|")
    for m in METRICS:
        row = [_fmt(rep.methods[k].get(m, math.nan)) for k in methods]
        arrow = "higher" if m in HIGHER_IS_BETTER else "lower"
        lines.append(f"| {m} ({arrow} is better) | " + " | ".join(row) + " |")
    ref = REFERENCE.get(kind, {})
    if ref:
        lines += ["", "## Reference work (Sweere et al. 2022)", "",
                  "| metric | ref. input | ref. model | ref. gain | this input | this model | this gain |",
                  "|---|---|---|---|---|---|---|"]
        for m in METRICS:
            if m not in ref.get("input", {}):
                continue
            ri, rm = ref["input"][m], ref["model"][m]
            ti, tm = rep.methods["input"].get(m, math.nan), rep.methods["model"].get(m, math.nan)
            lines.append(f"| {m} | {_fmt(ri)} | {_fmt(rm)} | {_fmt(rm - ri)} | {_fmt(ti)} | "
                         f"{_fmt(tm)} | {_fmt(tm - ti)} |")
        if kind == "dn":
            lines.append("")
            lines.append("The reference DN figures are on real data with a fine-tuned model; "
                         "ours are on simulations.")
    med = rep.meta.get("median", {})
    if med:
        lines += ["", "Median over images (PSNR, MS-SSIM): " + "; ".join(
            f"{k} {_fmt(v['psnr'])} / {_fmt(v['ms_ssim'])}" for k, v in med.items())]
    wins = rep.meta.get("model_psnr_win_fraction", {})
    if wins:
        lines += ["", "Fraction of images where the model's PSNR is higher: " + "; ".join(
            f"vs {k} {v:.2f}" for k, v in wins.items())]
    lines += ["", "## By region (mean over images)", "",
              "| method | region | pixels | L1 | PSNR | Poisson | bias |", "|---|---|---|---|---|---|---|"]
    for meth, regs in rep.regions.items():
        for reg, figs in regs.items():
            lines.append(f"| {meth} | {reg} | {int(figs.get('n_pixels', 0))} | {_fmt(figs['l1'])} | "
                         f"{_fmt(figs['psnr'])} | {_fmt(figs['poisson'])} | {figs['bias']:.2e} |")
    lines += ["", "## Targets", ""]
    for name, chk in rep.targets.items():
        val = chk["value"]
        if isinstance(val, dict):
            val = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in val.items())
        elif isinstance(val, float):
            val = f"{val:+.4f}"
        extra = f" (target {chk['target']})" if "target" in chk else ""
        lines.append(f"- {name}: {val}{extra} -> **{'PASS' if chk['passed'] else 'MISS'}**")
    if panels:
        lines += ["", "## Panels", ""] + [f"![{p}]({p})" for p in panels]
    lines += ["", "Caveat: model outputs can contain hallucinated features; bright sources "
              "above the clamp are restored at input resolution; models are for EPIC-pn "
              "0.5-2 keV full-frame ~20 ks inputs and were trained on simulations only.", ""]
    return "\n".join(lines)


def evaluate(
    model: Any,
    test_set: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    split: str = "test",
    n_images: int = 16,
    seed: int = 0,
    clamp: str | None = None,
    baselines: Sequence[str] = ("gaussian", "wavelet", "richardson_lucy"),
    p_extended: float = 0.8,
    p_agn: float = 0.8,
    n_panels: int = 3,
    predictor: Predictor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Score a model, its input and the classical methods on held-out simulated images.

    Parameters
    ----------
    model : str, path-like or LoadedModel
        Registered name, weight file, or a loaded model.
    test_set : path-like
        Simulator training-set store (the ``split`` components are used).
    out_dir : path-like, optional
        Write ``figures.json``, ``report.md`` and ``panel_*.png`` there.
    split : {"test", "val", "train"}
        Components to draw from (use a store generated with another seed than training).
    n_images : int
        Number of test images (random combinations, full frames).
    seed : int
        Seed of the combinations.
    clamp : str, optional
        Clamp the model runs with (default: the model's, i.e. constant).
    baselines : sequence of str
        Classical methods to run side by side.
    p_extended, p_agn : float
        Probabilities of including an extended source / an AGN field.
    n_panels : int
        Number of PNG panels.
    predictor : Predictor, optional
        Replace the model by this function (tests: perfect or identity predictors). ``model``
        may then be a label string.
    progress : callable, optional
        ``progress(done, total)`` after each image.

    Returns
    -------
    EvaluationReport
    """
    ts = open_pairs(str(test_set))
    kind = str(ts.kind)
    factor = int(ts.factor)
    loaded = None
    if predictor is None:
        from xsa_enhance.models.registry import LoadedModel, load_model

        # an alias resolves to the weights trained for the clamp mode asked for
        loaded = model if isinstance(model, LoadedModel) else load_model(model, clamp=clamp)
        if loaded.kind != kind:
            from xsa_enhance.errors import ConfigError

            raise ConfigError(f"model {loaded.name} is a {loaded.kind!r} model but test set "
                              f"{test_set} holds {kind!r} pairs")
        predictor = model_predictor(loaded, clamp=clamp)
    src = PairSource(ts, split, crop=None, p_extended=p_extended, p_agn=p_agn)
    in_exp, out_exp = src.in_exp, src.out_exp
    t_clamp = target_clamp_for(factor)
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
    per_image: list[dict[str, dict[str, float]]] = []
    per_region: list[dict[str, dict[str, dict[str, float]]]] = []
    panels: list[str] = []
    for i in range(n_images):
        rng = np.random.default_rng([int(seed), i])
        combo, pos = src.draw(rng)
        counts_in, counts_tgt, mask = src.counts(combo, pos)
        mask_f = mask.astype(np.float64)
        target_rate = counts_tgt / out_exp
        comp_rates: dict[str, np.ndarray | None] = {}
        for name in ("extended", "agn"):
            idx = combo.get(name)
            comp_rates[name] = (None if idx is None else
                                np.asarray(src.comps[name].target[idx], dtype=np.float64) / out_exp)
        mask_out = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
        regions = region_masks(comp_rates, mask_out, factor=factor)
        lin_t = _linear(target_rate, t_clamp)
        lin_in = _linear(counts_in * mask_f / in_exp, INPUT_CLAMP)
        if factor > 1:
            lin_in = upsample_nearest(lin_in, factor)
        outputs = {"input": lin_in,
                   "model": _linear(predictor(counts_in, in_exp, mask_f), t_clamp)}
        for name, rate in run_baselines(counts_in, in_exp, mask_f, factor=factor,
                                        names=tuple(baselines)).items():
            outputs[name] = _linear(rate, t_clamp)
        per_image.append({k: compute_metrics(v, lin_t) for k, v in outputs.items()})
        per_region.append({k: region_metrics(v, lin_t, regions) for k, v in outputs.items()})
        if out_path is not None and i < n_panels:
            name = f"panel_{i:02d}.png"
            _panel(out_path / name, {**outputs, "target": lin_t},
                   f"{kind.upper()} test image {i} (sqrt display of the linear scale)")
            panels.append(name)
        if progress is not None:
            progress(i + 1, n_images)
    methods = list(per_image[0]) if per_image else []
    mean = {m: {k: float(np.nanmean([p[m][k] for p in per_image])) for k in METRICS}
            for m in methods}
    std = {m: {k: float(np.nanstd([p[m][k] for p in per_image])) for k in METRICS}
           for m in methods}
    median = {m: {k: float(np.nanmedian([p[m][k] for p in per_image])) for k in METRICS}
              for m in methods}
    wins = {}
    if "model" in methods:
        for m in methods:
            if m == "model":
                continue
            wins[m] = float(np.mean([p["model"]["psnr"] > p[m]["psnr"] for p in per_image]))
    regions_mean: dict[str, dict[str, dict[str, float]]] = {}
    for m in methods:
        regions_mean[m] = {}
        for reg in ("background", "faint_extended", "point_sources"):
            vals = [r[m][reg] for r in per_region if r[m][reg]["n_pixels"] > 0]
            regions_mean[m][reg] = {
                f: (float(np.mean([v[f] for v in vals])) if vals else math.nan)
                for f in ("n_pixels", "l1", "psnr", "poisson", "bias")
            }
    report = EvaluationReport(
        kind=kind, methods=mean, std=std, regions=regions_mean, per_image=per_image,
        targets=_check_targets(kind, mean) if "model" in mean else {},
        meta={
            "model": getattr(loaded, "name", str(model)),
            "weights_sha256": getattr(loaded, "sha256", None),
            "test_set": str(test_set), "split": split, "n_images": n_images, "seed": seed,
            "clamp": clamp or getattr(loaded, "clamp", "constant"),
            "target_clamp": t_clamp, "input_exposure_s": in_exp, "target_exposure_s": out_exp,
            "baselines": list(baselines), "p_extended": p_extended, "p_agn": p_agn,
            "median": median,
            "model_psnr_win_fraction": wins,
        },
        out_dir=out_path,
    )
    if out_path is not None:
        (out_path / "figures.json").write_text(json.dumps(report.as_dict(), indent=1))
        (out_path / "report.md").write_text(_markdown(report, panels))
    return report
