"""Validation of source detection: simulated fields with known sources, and real observations.

Simulations (:func:`evaluate_simulated`): fields on the 1x DET grid with ``n_sources`` point
sources (positions uniform in the detector mask, on-axis rates log-uniform in
``rate_range``, vignetted, the handbook King PSF integrated over the pixels) on the expected
particle + sky background, Poisson-sampled for 20 ks. Each detection mode (input alone, and
detection on a model's output with measurement on the input) is run on every field; a
detection is *true* when it claims a simulated source within ``match_px`` pixels, one detection
per source (a second detection of the same source is false). Completeness is given per bin of
true rate, purity per bin of measured rate and overall.

Real observations (:func:`evaluate_real_sources`): the 20 ks split of each observation of a
real-data folder (the layout of ``shared/data/xmm-real``) is searched; a detection is
*confirmed* when the independent deep image ``full - 20ks`` shows a >= 3 sigma Poisson
aperture excess over its local annulus at its position
(:func:`xsa_enhance.training.real_eval.confirm_peaks`, the test of the model evaluation).
A detection within ``match_px`` of a more significant one is a duplicate and never confirmed.
Purity is ``confirmed / detected``; the position error of a confirmed source is the distance
to the centroid of the deep image's background-subtracted counts within 3 pixels of it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.detect.find import DetectionConfig, config_for_mode, detect_sources

__all__ = ["DetectionMode", "SimulatedField", "ModeRunner", "default_modes",
           "duplicate_detections", "match_sources", "simulated_field", "true_detections",
           "evaluate_simulated", "sweep_thresholds", "evaluate_real_sources", "deep_centroids",
           "write_report", "detect_eval"]

logger = logging.getLogger(__name__)

#: Conversion used for the flux axis: pn counts/s (0.5-2 keV) per erg/cm^2/s (DESIGN.md).
COUNTS_PER_FLUX: float = 7.0 / 1e-11


@dataclass(frozen=True)
class DetectionMode:
    """A detection mode: on the input alone, or on a model's output.

    Attributes
    ----------
    label : str
        Row label (``input``, ``dn [constant]``...).
    model : str or None
        Model alias/name/file (None: the input).
    clamp : str or None
        Clamp spec.
    kind : str
        ``input``, ``dn`` or ``sr`` (selects the default thresholds).
    """

    label: str
    model: str | None = None
    clamp: str | None = None
    kind: str = "input"


def default_modes(clamps: Sequence[str] = ("constant",)) -> list[DetectionMode]:
    """The input alone, then DN and SR (aliases ``xmm-denoise`` / ``xmm-superres``) per clamp."""
    out = [DetectionMode("input")]
    for cl in clamps:
        out.append(DetectionMode(f"dn [{cl}]", "xmm-denoise", cl, "dn"))
        out.append(DetectionMode(f"sr [{cl}]", "xmm-superres", cl, "sr"))
    return out


class ModeRunner:
    """Runs detection modes, loading each model once.

    Parameters
    ----------
    overrides : dict, optional
        :class:`~xsa_enhance.detect.find.DetectionConfig` fields applied to every mode.
    """

    def __init__(self, **overrides: Any) -> None:
        self._models: dict[tuple[str, str | None], Any] = {}
        self.overrides = overrides

    def model(self, mode: DetectionMode) -> Any:
        """The loaded model of a mode (None for the input)."""
        if mode.model is None:
            return None
        key = (mode.model, mode.clamp)
        if key not in self._models:
            from xsa_enhance.models.registry import load_model

            self._models[key] = load_model(mode.model, clamp=mode.clamp)
        return self._models[key]

    def config(self, mode: DetectionMode) -> DetectionConfig:
        """The detection configuration of a mode."""
        return config_for_mode(mode.kind, **self.overrides)

    def run(self, mode: DetectionMode, counts: np.ndarray, exposure_s: float, mask: np.ndarray,
            *, wcs: Any = None, config: DetectionConfig | None = None) -> Any:
        """Detect sources with one mode; returns the source table."""
        cfg = config or self.config(mode)
        model = self.model(mode)
        if model is None:
            return detect_sources(counts, exposure_s, mask, config=cfg, wcs=wcs)
        from xsa_enhance.models.inference import enhance

        out = enhance(counts, exposure_s, mask, model, clamp=mode.clamp)
        return detect_sources(counts, exposure_s, mask, config=cfg,
                              detection_image=out.counts, detection_exposure_s=out.exposure_s,
                              detection_factor=int(out.attrs.get("factor", model.factor)),
                              background_free=model.kind == "sr", restored=out.restored,
                              wcs=wcs)


# --------------------------------------------------------------------------------------------
# simulations


@dataclass
class SimulatedField:
    """A simulated 20 ks field with known point sources (0-based pixel positions)."""

    counts: np.ndarray
    mask: np.ndarray
    exposure_s: float
    x: np.ndarray
    y: np.ndarray
    rate: np.ndarray
    seed: int
    deep: np.ndarray | None = None
    extended: tuple[str, ...] = ()


def simulated_field(seed: int, *, n_sources: int = 60,
                    rate_range: tuple[float, float] = (1e-4, 3e-2),
                    exposure_s: float = 20_000.0, n_extended: int = 0,
                    deep_exposure_s: float = 60_000.0) -> SimulatedField:
    """Point sources (and extended sources) on the expected background, Poisson counts.

    With ``n_extended`` > 0 the field also holds that many extended sources (clusters,
    groups, remnants, galaxies, drawn as for the training sets) near its centre, as the real
    validation observations do, and an independent deep image of the same sky
    (``deep_exposure_s``) with which detections are judged as on real data: a detection not
    at a simulated point source is true when the deep image confirms it
    (:func:`true_detections`), since a knot of extended emission is real sky.

    Parameters
    ----------
    seed : int
        Random seed.
    n_sources : int
        Number of sources (uniform inside the detector mask).
    rate_range : tuple of float
        On-axis count rates (counts/s), drawn log-uniformly.
    exposure_s : float
        Exposure.
    n_extended : int
        Number of extended sources (0: point sources only, no deep image).
    deep_exposure_s : float
        Exposure of the independent deep image (with ``n_extended`` > 0).

    Returns
    -------
    SimulatedField
    """
    from xsa_enhance.instrument.background import background_rate_map
    from xsa_enhance.instrument.grid import GRID_1X
    from xsa_enhance.instrument.mask import detector_mask, mask_coverage
    from xsa_enhance.instrument.vignetting import vignetting_det
    from xsa_enhance.simulate.images import render_point_sources

    rng = np.random.default_rng(seed)
    mask = detector_mask(GRID_1X)
    ys, xs = np.nonzero(mask)
    k = rng.choice(ys.size, n_sources, replace=False)
    py = ys[k] + rng.uniform(-0.5, 0.5, n_sources)
    px = xs[k] + rng.uniform(-0.5, 0.5, n_sources)
    rate = np.exp(rng.uniform(np.log(rate_range[0]), np.log(rate_range[1]), n_sources))
    detx = GRID_1X.x_edge0 + (px + 0.5) * GRID_1X.binsize
    dety = GRID_1X.y_edge0 + (py + 0.5) * GRID_1X.binsize
    eff = rate * vignetting_det(detx, dety)
    lam = (render_point_sources(GRID_1X, detx, dety, eff)
           + background_rate_map(GRID_1X, apply_mask=False)) * mask_coverage(GRID_1X)
    kinds: list[str] = []
    if n_extended > 0:
        from xsa_enhance.simulate.images import extended_rate_map

        for _ in range(n_extended):
            ext, meta = extended_rate_map(rng)
            lam = lam + ext
            kinds.append(meta["kind"])
    counts = rng.poisson(lam * exposure_s * mask).astype(np.float64)
    deep = (rng.poisson(lam * deep_exposure_s * mask).astype(np.float64) if n_extended > 0
            else None)
    return SimulatedField(counts, mask, float(exposure_s), px, py, rate, int(seed), deep,
                          tuple(kinds))


def true_detections(table: Any, field: SimulatedField, *, match_px: float = 2.5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Which detections of a simulated field are real, and which point sources were found.

    A detection is real when it claims a simulated point source within ``match_px`` (one
    detection per source, see :func:`match_sources`) or, in a field with extended sources,
    when the field's independent deep image shows a >= 3 sigma aperture excess at its
    position (the test applied to the real observations) and it is not a duplicate of a more
    significant detection (:func:`duplicate_detections`).

    Returns
    -------
    true_detection : numpy.ndarray of bool
        Per detection.
    found : numpy.ndarray of bool
        Per simulated point source.
    """
    true_det, found = match_sources(table, field.x, field.y, match_px=match_px)
    if field.deep is not None and len(table):
        from xsa_enhance.training.real_eval import confirm_peaks

        x = np.asarray(table["X"], dtype=np.float64) - 1.0
        y = np.asarray(table["Y"], dtype=np.float64) - 1.0
        deep_ok = confirm_peaks(field.deep, field.mask, y, x)[3]
        true_det = true_det | (deep_ok & ~duplicate_detections(x, y, match_px=match_px))
    return true_det, found


def duplicate_detections(x: np.ndarray, y: np.ndarray, *, match_px: float = 2.5) -> np.ndarray:
    """Detections within ``match_px`` of an earlier (more significant) one in table order.

    Such a detection is a second peak of the same source: it is never counted as real, so that
    splitting a source into several detections lowers the purity instead of raising it.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    dup = np.zeros(x.size, bool)
    for i in range(1, x.size):
        dup[i] = bool((np.hypot(x[:i] - x[i], y[:i] - y[i]) <= match_px).any())
    return dup


def match_sources(table: Any, x: np.ndarray, y: np.ndarray, *, match_px: float = 2.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Match detections one to one to true positions.

    Detections are taken in table order (most significant first); each claims the nearest
    true source within ``match_px`` that no earlier detection claimed. A second detection of
    an already claimed source is not a true detection.

    Returns
    -------
    true_detection : numpy.ndarray of bool
        Per detection: it claimed a true source.
    found : numpy.ndarray of bool
        Per true source: a detection claimed it.
    """
    dx = np.asarray(table["X"], dtype=np.float64) - 1.0
    dy = np.asarray(table["Y"], dtype=np.float64) - 1.0
    true_det = np.zeros(dx.size, bool)
    found = np.zeros(len(x), bool)
    if dx.size == 0 or len(x) == 0:
        return true_det, found
    d = np.hypot(dx[:, None] - np.asarray(x)[None, :], dy[:, None] - np.asarray(y)[None, :])
    for i in range(dx.size):
        free = np.where(found | (d[i] > match_px), np.inf, d[i])
        j = int(np.argmin(free))
        if np.isfinite(free[j]):
            true_det[i] = True
            found[j] = True
    return true_det, found


def _bins(lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(np.linspace(np.log(lo), np.log(hi), n + 1))


def evaluate_simulated(modes: Sequence[DetectionMode], *, n_fields: int = 8, seed: int = 1000,
                       n_sources: int = 60, rate_range: tuple[float, float] = (1e-4, 3e-2),
                       n_bins: int = 8, match_px: float = 2.5, n_extended: int = 0,
                       runner: ModeRunner | None = None) -> dict[str, Any]:
    """Completeness and purity against rate for each mode on simulated fields.

    ``n_extended`` extended sources per field (see :func:`simulated_field`).

    Returns
    -------
    dict
        ``bins`` (rate edges, counts/s), and per mode label: ``completeness`` and
        ``n_true`` per true-rate bin, ``purity`` and ``n_detected`` per measured-rate bin,
        overall ``purity``, ``n_detected``, ``n_true_detections``, ``completeness``.
    """
    runner = runner or ModeRunner()
    edges = _bins(rate_range[0], rate_range[1], n_bins)
    acc: dict[str, dict[str, list]] = {m.label: {"found": [], "rate": [], "true": [],
                                                 "mrate": []} for m in modes}
    for i in range(n_fields):
        fld = simulated_field(seed + i, n_sources=n_sources, rate_range=rate_range,
                              n_extended=n_extended)
        for mode in modes:
            tab = runner.run(mode, fld.counts, fld.exposure_s, fld.mask)
            true_det, found = true_detections(tab, fld, match_px=match_px)
            a = acc[mode.label]
            a["found"].append(found)
            a["rate"].append(fld.rate)
            a["true"].append(true_det)
            a["mrate"].append(np.asarray(tab["RATE"], dtype=np.float64))
        logger.info("simulated field %d/%d done", i + 1, n_fields)
    out: dict[str, Any] = {"bins": edges.tolist(), "n_fields": n_fields,
                           "n_sources_per_field": n_sources, "match_px": match_px,
                           "n_extended_per_field": n_extended, "modes": {}}
    for mode in modes:
        a = acc[mode.label]
        found, rate = np.concatenate(a["found"]), np.concatenate(a["rate"])
        true, mrate = np.concatenate(a["true"]), np.concatenate(a["mrate"])
        ib = np.digitize(rate, edges) - 1
        jb = np.clip(np.digitize(mrate, edges) - 1, 0, n_bins - 1)
        comp, n_true, pur, n_det = [], [], [], []
        for b in range(n_bins):
            sel = ib == b
            n_true.append(int(sel.sum()))
            comp.append(float(found[sel].mean()) if sel.any() else math.nan)
            dsel = jb == b
            n_det.append(int(dsel.sum()))
            pur.append(float(true[dsel].mean()) if dsel.any() else math.nan)
        out["modes"][mode.label] = {
            "model": mode.model, "clamp": mode.clamp, "kind": mode.kind,
            "thresholds": [runner.config(mode).min_signif, runner.config(mode).min_det_signif],
            "completeness": comp, "n_true": n_true, "purity_by_rate": pur,
            "n_detected_by_rate": n_det,
            "n_detected": int(true.size), "n_true_detections": int(true.sum()),
            "purity": float(true.mean()) if true.size else math.nan,
            "completeness_all": float(found.mean()) if found.size else math.nan,
        }
    return out


def sweep_thresholds(modes: Sequence[DetectionMode], *, n_fields: int = 6, seed: int = 1000,
                     grid_signif: Sequence[float] = (2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5),
                     grid_det: Sequence[float] = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
                     grid_smooth: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
                     match_px: float = 2.5, min_purity: float = 0.99, n_extended: int = 0,
                     runner: ModeRunner | None = None) -> dict[str, Any]:
    """Purity and completeness of each mode over a grid of settings, on simulations.

    Detection runs once per field, mode and smoothing with the lowest thresholds; the
    threshold grid is applied to the resulting ``SIGNIF`` / ``DET_SIGNIF`` columns. The chosen
    setting per mode is the one that finds the most simulated sources among those with
    purity >= ``min_purity`` (a source split into several detections counts once).

    Returns
    -------
    dict
        Per mode label: ``grid`` (rows ``[smooth_px, min_signif, min_det_signif,
        n_detected, n_true_detections, purity, n_sources_found]``) and ``chosen`` (a row or
        None).
    """
    runner = runner or ModeRunner()
    fields = [simulated_field(seed + i, n_extended=n_extended) for i in range(n_fields)]
    out: dict[str, Any] = {}
    for mode in modes:
        rows = []
        dets = (0.0,) if mode.model is None else tuple(grid_det)
        for sm in grid_smooth:
            runs = []
            for fld in fields:
                cfg = replace(runner.config(mode), min_signif=min(grid_signif),
                              min_det_signif=-10.0, smooth_px=float(sm))
                tab = runner.run(mode, fld.counts, fld.exposure_s, fld.mask, config=cfg)
                runs.append((tab, fld))
            for s in grid_signif:
                for d in dets:
                    nd = nt = nf = 0
                    for tab, fld in runs:
                        sel = (np.asarray(tab["SIGNIF"]) >= s) & (np.asarray(tab["DET_SIGNIF"]) >= d)
                        true_det, found = true_detections(tab[sel], fld, match_px=match_px)
                        nd += int(sel.sum())
                        nt += int(true_det.sum())
                        nf += int(found.sum())
                    rows.append([float(sm), float(s), float(d), nd, nt,
                                 nt / nd if nd else math.nan, nf])
        ok = [r for r in rows if r[3] and r[5] >= min_purity]
        chosen = max(ok, key=lambda r: (r[6], r[5])) if ok else None
        out[mode.label] = {"grid": rows, "chosen": chosen}
    return out


# --------------------------------------------------------------------------------------------
# real observations


def deep_centroids(deep_counts: np.ndarray, mask: np.ndarray, x: np.ndarray, y: np.ndarray,
                   *, radius_px: float = 3.0, annulus_px: tuple[float, float] = (5.0, 10.0)
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Centroid of the background-subtracted deep counts within ``radius_px`` of positions."""
    from xsa_enhance.detect.photometry import aperture_counts

    c = np.asarray(deep_counts, dtype=np.float64)
    m = np.asarray(mask) > 0
    s_an, a_an = aperture_counts(c, m, x, y, r_in=annulus_px[0], r_out=annulus_px[1])
    b = np.where(a_an > 0, s_an / np.maximum(a_an, 1), 0.0)
    h = int(math.ceil(radius_px))
    cx = np.full(len(x), np.nan)
    cy = np.full(len(x), np.nan)
    for i, (px, py) in enumerate(zip(x, y)):
        ix, iy = int(round(px)), int(round(py))
        y0, y1 = max(iy - h, 0), min(iy + h + 1, c.shape[0])
        x0, x1 = max(ix - h, 0), min(ix + h + 1, c.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        sel = m[y0:y1, x0:x1] & (np.hypot(yy - py, xx - px) <= radius_px)
        w = np.where(sel, np.clip(c[y0:y1, x0:x1] - b[i], 0.0, None), 0.0)
        tot = w.sum()
        if tot > 0:
            cx[i] = float((w * xx).sum() / tot)
            cy[i] = float((w * yy).sum() / tot)
    return cx, cy


def evaluate_real_sources(directory: str | os.PathLike[str], modes: Sequence[DetectionMode], *,
                          obsids: Sequence[str] | None = None,
                          runner: ModeRunner | None = None,
                          pixel_arcsec: float = 4.0) -> dict[str, Any]:
    """Purity against the independent deep image, per observation and mode.

    Returns
    -------
    dict
        ``observations`` (per obsid and mode: ``n_detected``, ``n_confirmed``, ``purity``,
        ``median_position_error_arcsec``) and ``totals`` per mode (the same summed, and
        ``ratio_to_input``: confirmed sources over those of the ``input`` mode).
    """
    from xsa_enhance.training.real_eval import confirm_peaks, derive_mask, load_real_observations

    runner = runner or ModeRunner()
    obs = load_real_observations(directory, obsids=obsids)
    per: dict[str, dict[str, Any]] = {}
    tot: dict[str, dict[str, Any]] = {m.label: {"n_detected": 0, "n_confirmed": 0,
                                                "errors": []} for m in modes}
    for o in obs:
        mask = derive_mask(o.counts_full)
        counts = o.counts_20ks.astype(np.float64) * mask
        per[o.obsid] = {}
        for mode in modes:
            tab = runner.run(mode, counts, o.exposure_20ks, mask)
            x = np.asarray(tab["X"], dtype=np.float64) - 1.0
            y = np.asarray(tab["Y"], dtype=np.float64) - 1.0
            _, _, _, real = confirm_peaks(o.counts_deep, mask, y, x)
            real = real & ~duplicate_detections(x, y)
            cx, cy = deep_centroids(o.counts_deep, mask, x[real], y[real])
            err = np.hypot(cx - x[real], cy - y[real]) * pixel_arcsec
            err = err[np.isfinite(err)]
            per[o.obsid][mode.label] = {
                "n_detected": int(real.size), "n_confirmed": int(real.sum()),
                "purity": float(real.mean()) if real.size else math.nan,
                "median_position_error_arcsec": float(np.median(err)) if err.size else math.nan,
            }
            t = tot[mode.label]
            t["n_detected"] += int(real.size)
            t["n_confirmed"] += int(real.sum())
            t["errors"].extend(err.tolist())
        logger.info("%s done", o.obsid)
    n_in = tot.get("input", {}).get("n_confirmed", 0)
    totals = {}
    for label, t in tot.items():
        e = np.asarray(t["errors"])
        totals[label] = {
            "n_detected": t["n_detected"], "n_confirmed": t["n_confirmed"],
            "purity": t["n_confirmed"] / t["n_detected"] if t["n_detected"] else math.nan,
            "median_position_error_arcsec": float(np.median(e)) if e.size else math.nan,
            "ratio_to_input": t["n_confirmed"] / n_in if n_in else math.nan,
        }
    return {"observations": per, "totals": totals,
            "thresholds": {m.label: [runner.config(m).min_signif, runner.config(m).min_det_signif]
                           for m in modes}}


# --------------------------------------------------------------------------------------------
# report


def _f(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def _plot(sim: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    edges = np.asarray(sim["bins"])
    centres = np.sqrt(edges[:-1] * edges[1:])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for label, r in sim["modes"].items():
        axes[0].plot(centres, r["completeness"], marker="o", label=label)
        axes[1].plot(centres, r["purity_by_rate"], marker="o", label=label)
    for ax, title in zip(axes, ("completeness vs true rate", "purity vs measured rate")):
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("count rate (counts/s, 0.5-2 keV, on axis)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        sec = ax.secondary_xaxis("top", functions=(lambda r: r / COUNTS_PER_FLUX,
                                                   lambda f: f * COUNTS_PER_FLUX))
        sec.set_xlabel("flux (erg/cm$^2$/s)")
    axes[1].axhline(0.9, color="k", lw=0.8, ls="--")
    axes[0].legend(loc="lower right")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir: str | os.PathLike[str], *, simulated: dict[str, Any] | None,
                 real: dict[str, Any] | None) -> list[Path]:
    """Write ``sources_eval.json``, ``sources_eval.md`` and ``sources_completeness.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "sources_eval.json"]
    files[0].write_text(json.dumps({"simulated": simulated, "real": real}, indent=1,
                                   default=float) + "\n")
    lines = ["# Source detection: completeness and purity", ""]
    if simulated:
        edges = simulated["bins"]
        lines += [f"## Simulated fields ({simulated['n_fields']} x "
                  f"{simulated['n_sources_per_field']} point sources, 20 ks, match radius "
                  f"{simulated['match_px']} px)", "",
                  "| mode | thresholds (SIGNIF, DET_SIGNIF) | detected | true | purity | "
                  "completeness |", "| --- | --- | --- | --- | --- | --- |"]
        for label, r in simulated["modes"].items():
            lines.append(f"| {label} | {r['thresholds'][0]}, {r['thresholds'][1]} | "
                         f"{r['n_detected']} | {r['n_true_detections']} | {_f(r['purity'])} | "
                         f"{_f(r['completeness_all'])} |")
        lines += ["", "Completeness per bin of true on-axis rate (counts/s; flux = rate / 7e11 "
                  "erg/cm2/s) / purity per bin of measured rate:", "",
                  "| rate bin | " + " | ".join(simulated["modes"]) + " |",
                  "| --- |" + " --- |" * len(simulated["modes"])]
        for b in range(len(edges) - 1):
            cells = [f"{_f(r['completeness'][b], 2)} / {_f(r['purity_by_rate'][b], 2)}"
                     for r in simulated["modes"].values()]
            lines.append(f"| {edges[b]:.2g}-{edges[b + 1]:.2g} | " + " | ".join(cells) + " |")
        png = out / "sources_completeness.png"
        _plot(simulated, png)
        files.append(png)
        lines += ["", f"![completeness and purity]({png.name})", ""]
    if real:
        labels = list(real["totals"])
        lines += ["## Real observations (purity against the independent deep image full - "
                  "20ks)", "",
                  "| mode | detected | confirmed | purity | x input | median position error "
                  "(arcsec) |", "| --- | --- | --- | --- | --- | --- |"]
        for label in labels:
            t = real["totals"][label]
            lines.append(f"| {label} | {t['n_detected']} | {t['n_confirmed']} | "
                         f"{_f(t['purity'])} | {_f(t['ratio_to_input'], 2)} | "
                         f"{_f(t['median_position_error_arcsec'], 2)} |")
        lines += ["", "Per observation (confirmed / detected):", "",
                  "| obsid | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
        for obsid, per in real["observations"].items():
            lines.append(f"| {obsid} | " + " | ".join(
                f"{per[lab]['n_confirmed']}/{per[lab]['n_detected']}" for lab in labels) + " |")
        lines.append("")
    md = out / "sources_eval.md"
    md.write_text("\n".join(lines) + "\n")
    files.append(md)
    return files


def detect_eval(out_dir: str | os.PathLike[str], *, real_dir: str | os.PathLike[str] | None,
                clamps: Sequence[str] = ("constant",), n_fields: int = 8, seed: int = 1000,
                obsids: Sequence[str] | None = None, simulate: bool = True,
                n_extended: int = 0, **overrides: Any) -> dict[str, Any]:
    """Run the simulated and the real evaluation and write the report.

    ``n_extended`` extended sources per simulated field (see :func:`simulated_field`).

    Returns
    -------
    dict
        ``simulated``, ``real`` (None when skipped) and ``files``.
    """
    modes = default_modes(clamps)
    runner = ModeRunner(**overrides)
    sim = (evaluate_simulated(modes, n_fields=n_fields, seed=seed, n_extended=n_extended,
                              runner=runner) if simulate else None)
    real = (evaluate_real_sources(real_dir, modes, obsids=obsids, runner=runner)
            if real_dir is not None else None)
    files = write_report(out_dir, simulated=sim, real=real)
    return {"simulated": sim, "real": real, "files": [str(f) for f in files]}
