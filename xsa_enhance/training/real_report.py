"""The report of a real-data evaluation: its figures, ``figures.json``, ``report.md``, panels.

:class:`RealEvaluationReport` holds the figures; :func:`write_report` writes ``figures.json``
(strict JSON: NaN and infinities become null) and ``report.md``; :func:`write_panel` one PNG
panel per observation (the input, the deep reference and the methods on one colour scale).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.models.normalise import INPUT_CLAMP
from xsa_enhance.training.empty_field import EmptyFieldResult

__all__ = [
    "RealEvaluationReport",
    "format_figure",
    "write_panel",
    "write_report",
]


@dataclass
class RealEvaluationReport:
    """Figures of a real-data evaluation.

    Attributes
    ----------
    per_observation : dict
        Obsid -> method key -> figures (:data:`FIGURES`, plus the peak list).
    summary : dict
        Clamp mode -> method label -> figure -> mean over observations (the classical methods
        appear in every clamp table).
    methods : dict
        Method key -> label, clamp, factor and model provenance.
    observations : list of dict
        Obsid, files, exposures, mask pixels, background levels.
    empty_field : EmptyFieldResult or None
        The simulated empty-field check.
    meta : dict
        Directory, clamps, scale constant, peak settings.
    out_dir : pathlib.Path or None
        Where the files were written.
    """

    per_observation: dict[str, dict[str, dict[str, Any]]]
    summary: dict[str, dict[str, dict[str, float]]]
    methods: dict[str, dict[str, Any]]
    observations: list[dict[str, Any]]
    empty_field: EmptyFieldResult | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``figures.json`` holds)."""
        return {"meta": self.meta, "observations": self.observations, "methods": self.methods,
                "summary": self.summary, "per_observation": self.per_observation,
                "empty_field": None if self.empty_field is None else self.empty_field.as_dict()}


def format_figure(v: Any, digits: int = 4) -> str:
    """A figure as the report shows it: ``n/a`` for None and NaN, ``yes``/``no`` for bools.

    Parameters
    ----------
    v : Any
        The figure.
    digits : int
        Decimals of a float below 10 (two above).

    Returns
    -------
    str
    """
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}" if abs(v) < 10 else f"{v:.2f}"


def write_panel(path: Path,
                images: dict[str, tuple[np.ndarray, int, list[dict[str, Any]] | None]],
                title: str) -> None:
    """Write one PNG panel of images on a common square-root colour scale.

    Parameters
    ----------
    path : pathlib.Path
        The PNG file.
    images : dict
        Title -> ``(rate, grid factor, checked peaks or None)``; the scale is set by the
        ``deep (reference)`` image when present (else the first), rates are shown per 4"
        pixel area and the peaks as circles (green: confirmed, cyan: not).
    title : str
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    n = len(images)
    ncols = min(n, 5)
    nrows = int(math.ceil(n / ncols))
    deep = images.get("deep (reference)")
    ref = deep[0] if deep is not None else next(iter(images.values()))[0]
    pos = ref[ref > 0]
    vmax = float(np.percentile(pos, 99.5)) if pos.size else 1.0
    vmax = max(vmax, 1e-12)
    norm = PowerNorm(0.5, vmin=0.0, vmax=vmax)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 0.8, 3.5 * nrows), dpi=100,
                             squeeze=False)
    im = None
    for ax, (name, (img, f, peaks)) in zip(axes.ravel(), images.items()):
        shown = np.asarray(img, dtype=np.float64) * f**2  # per 4" pixel area
        im = ax.imshow(shown, origin="lower", cmap="magma", norm=norm, interpolation="nearest")
        for pk in peaks or ():
            ax.add_patch(plt.Circle(((pk["x"] + 0.5) * f - 0.5, (pk["y"] + 0.5) * f - 0.5),
                                    6 * f, fill=False, lw=0.6,
                                    color="lime" if pk["real"] else "cyan"))
        ax.set_title(name, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
        cb.set_label("counts/s per 4\" pixel (sqrt scale)", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)
    plt.close(fig)


def _markdown(rep: RealEvaluationReport, panels: list[str]) -> str:
    meta = rep.meta
    lines = ["# Evaluation on real XMM-Newton data", "",
             f"- data: `{meta['directory']}`, {len(rep.observations)} observations "
             f"({', '.join(o['obsid'] for o in rep.observations)})",
             "- reference: the deep image `full - 20ks` (independent of the 20 ks input), "
             "all figures on rates (counts/s/pixel), 1x grid",
             f"- PSNR / MS-SSIM / L1 on rate / {INPUT_CLAMP} clipped to [0, 1] (linear); "
             "`psnr_sqrt` / `ms_ssim_sqrt` on its square root",
             "- flux ratio: total rate inside the mask / the deep image's (SR: background-"
             "subtracted totals of both)",
             f"- peak purity: fraction of the {meta['n_peaks']} most prominent peaks of the "
             "output with a >= 3 sigma Poisson aperture excess (r = 2 px) in the deep image",
             "- SR outputs are rebinned 2x2 to the 1x grid with the input's background level "
             "added back for PSNR / MS-SSIM; judge SR mainly by its peak purity",
             f"- models: {', '.join(meta['models']) or 'none'}; clamps: "
             f"{', '.join(meta['clamps'])}", ""]
    cols = ("psnr", "ms_ssim", "flux_ratio", "peak_purity", "psnr_sqrt", "ms_ssim_sqrt")
    header = ("| method | PSNR (dB) | MS-SSIM | flux ratio | peak purity | PSNR sqrt "
              "| MS-SSIM sqrt |")
    sep = "|---|---|---|---|---|---|---|"
    lines += ["## Mean over observations, per clamp mode", ""]
    for clamp, table in rep.summary.items():
        lines += [f"### clamp `{clamp}`", "", header, sep]
        for meth, figs in table.items():
            lines.append(f"| {meth} | "
                         + " | ".join(format_figure(figs.get(c)) for c in cols) + " |")
        lines.append("")
    lines += ["## Per observation", ""]
    for obs in rep.observations:
        ob = obs["obsid"]
        lines += [f"### {ob}", "",
                  f"20 ks input {obs['exposure_20ks']:.0f} s, deep {obs['exposure_deep']:.0f} s, "
                  f"mask {obs['mask_pixels']} px, background {obs['background_input']:.3g} "
                  f"(input) / {obs['background_deep']:.3g} (deep) counts/s/px", "",
                  header, sep]
        for key, figs in rep.per_observation[ob].items():
            lines.append(f"| {key} | "
                         + " | ".join(format_figure(figs.get(c)) for c in cols) + " |")
        lines.append("")
    ef = rep.empty_field
    if ef is not None:
        m = ef.meta
        lines += ["## Empty simulated field", "",
                  f"A flat-background {m['exposure_s'] / 1000:.0f} ks field (Poisson draw of the "
                  f"instrument background model, seed {m['seed']}, mean "
                  f"{m['true_background_mean_rate']:.3g} counts/s/px). Requirement: no model "
                  f"mode shows more than {m['max_blobs']} blobs above "
                  f"{m['threshold_factor']:.0f}x the true background; DN background flux within "
                  f"{100 * m['flux_tolerance']:.0f} %. SR outputs are background-free: their "
                  "threshold is the 1x truth / 4 per 2x pixel, their flux ratio is shown only.",
                  "", "| method | blobs | pixels above | flux ratio | verdict |",
                  "|---|---|---|---|---|"]
        for key, row in ef.rows.items():
            verdict = ("reference" if row["passed"] is None else
                       ("**PASS**" if row["passed"] else "**MISS**"))
            lines.append(f"| {key} | {row['blobs']} | {row['pixels_above']} | "
                         f"{format_figure(row['flux_ratio'])} | {verdict} |")
        lines += ["", f"Overall: **{'PASS' if ef.passed else 'MISS'}**", ""]
    if panels:
        lines += ["## Panels", "", "Colour: square-root scale, counts/s per 4\" pixel area "
                  "(SR outputs shown on their 2x grid, multiplied by 4). Circles: the checked "
                  "peaks, green when confirmed by the deep image, cyan when not.", ""]
        lines += [f"![{p}]({p})" for p in panels]
        lines.append("")
    lines += ["## Caveats", "",
              "- The deep image has Poisson noise too (30-100 ks): no method can reach a "
              "perfect score, and differences of a few 0.1 dB are within the noise of five "
              "observations.",
              "- The mask is derived from the data (instrument mask minus dead columns); "
              "pixels outside it are zero in every image and count in PSNR / MS-SSIM.",
              "- Peak confirmation uses an aperture-vs-annulus test; a peak on a steep "
              "gradient of bright extended emission can pass without being a compact source.",
              "- Model outputs can contain hallucinated features; the models were trained on "
              "simulations only (EPIC-pn, 0.5-2 keV, full frame, ~20 ks).", ""]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(out_dir: Path, report: RealEvaluationReport, panels: list[str]) -> None:
    """Write ``figures.json`` and ``report.md`` of a report into ``out_dir``.

    Parameters
    ----------
    out_dir : pathlib.Path
        An existing folder.
    report : RealEvaluationReport
        The figures.
    panels : list of str
        File names of the PNG panels (relative to ``out_dir``) the report links to.
    """
    (out_dir / "figures.json").write_text(json.dumps(_jsonable(report.as_dict()), indent=1,
                                                     allow_nan=False))
    (out_dir / "report.md").write_text(_markdown(report, panels))
