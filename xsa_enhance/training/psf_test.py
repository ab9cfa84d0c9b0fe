"""The point-source PSF test of the follow-up talk (Eggers et al. 2024) and a deblending test.

PSF test: a grid of point sources at several fluxes is rendered with the instrument's King PSF
(:mod:`xsa_enhance.instrument.psf`, on axis at 1 keV): the 1x input for 20 ks with the mean
background and Poisson noise, the 2x target for 100 ks without background, noiseless, with every
PSF length halved. The SR model enhances the input with each clamp mode. Around every source a
circular 2-D Gaussian plus constant is fitted (:func:`fit_gaussian`) to the input (nearest-
neighbour upsampled, so all three are on the same 2 arcsec pixel scale), the target and the
prediction, and the flux in an aperture (background-subtracted) is compared.

Deblending test: pairs of equal point sources at separations of 0.5 to 2 input-PSF FWHM; a pair
counts as resolved when the profile along the line joining the two positions has a maximum
near each source and dips between them below ``dip`` times the fainter maximum
(:func:`is_resolved`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from xsa_enhance.models.normalise import MEAN_BACKGROUND_RATE

__all__ = [
    "PointField",
    "PsfTestResult",
    "render_point_sources",
    "point_source_field",
    "fit_gaussian",
    "aperture_flux",
    "is_resolved",
    "run_psf_test",
]

logger = logging.getLogger(__name__)

#: Source count rates (counts/s, 0.5-2 keV) of the PSF grid: 10 to 400 counts in 20 ks.
DEFAULT_RATES: tuple[float, ...] = (5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2)
#: Separations of the deblending pairs in units of the input PSF FWHM.
DEFAULT_SEPARATIONS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def _psf_model(psf: str):
    from xsa_enhance.instrument import psf as ipsf

    models = {"handbook": ipsf.PSF_HANDBOOK, "ccf-extended": ipsf.PSF_CCF_EXTENDED}
    if psf not in models:
        raise ValueError(f"unknown PSF {psf!r}; choose from {sorted(models)}")
    return models[psf]


def render_point_sources(
    shape: tuple[int, int],
    positions: np.ndarray,
    rates: np.ndarray,
    *,
    factor: int = 1,
    resolution: float = 1.0,
    psf: str = "handbook",
    radius_arcsec: float = 60.0,
    oversample: int = 4,
) -> np.ndarray:
    """Rate image (counts/s/pixel) of point sources convolved with the King PSF.

    Parameters
    ----------
    shape : tuple of int
        Shape of the 1x grid; the output has ``factor`` times more pixels per axis.
    positions : numpy.ndarray
        ``(n, 2)`` source positions ``(y, x)`` in 1x pixel coordinates (pixel centres at
        integers).
    rates : numpy.ndarray
        Count rate of each source (counts/s).
    factor : int
        Output grid factor (pixels of 4 / factor arcsec).
    resolution : float
        PSF length multiplier (0.5 for SR targets).
    psf : {"handbook", "ccf-extended"}
        King model of :mod:`xsa_enhance.instrument.psf`.
    radius_arcsec : float
        Rendering radius (each source is normalised to its rate inside it).
    oversample : int
        Sub-samples per pixel and axis.

    Returns
    -------
    numpy.ndarray
    """
    model = _psf_model(psf).with_scale(resolution)
    pix = 4.0 / factor
    ny, nx = shape[0] * factor, shape[1] * factor
    img = np.zeros((ny, nx))
    rad = int(math.ceil(radius_arcsec / pix))
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    for (y1, x1), rate in zip(np.asarray(positions, float), np.asarray(rates, float)):
        yc = (y1 + 0.5) * factor - 0.5
        xc = (x1 + 0.5) * factor - 0.5
        iy, ix = int(round(yc)), int(round(xc))
        ys = np.arange(iy - rad, iy + rad + 1)
        xs = np.arange(ix - rad, ix + rad + 1)
        yy = (ys[:, None] + sub[None, :]).ravel() - yc
        xx = (xs[:, None] + sub[None, :]).ravel() - xc
        r = np.hypot(yy[:, None], xx[None, :]) * pix
        dens = model.profile(r).reshape(len(ys), oversample, len(xs), oversample).mean(axis=(1, 3))
        dens /= dens.sum()
        y0, y1_ = max(0, ys[0]), min(ny, ys[-1] + 1)
        x0, x1_ = max(0, xs[0]), min(nx, xs[-1] + 1)
        img[y0:y1_, x0:x1_] += rate * dens[y0 - ys[0]:y1_ - ys[0], x0 - xs[0]:x1_ - xs[0]]
    return img


@dataclass
class PointField:
    """A simulated point-source field: 1x input counts and the 2x noiseless target rate."""

    counts: np.ndarray
    exposure_s: float
    mask: np.ndarray
    target_rate: np.ndarray
    positions: np.ndarray
    rates: np.ndarray
    pairs: np.ndarray | None = None
    separations_arcsec: np.ndarray | None = None


def _usable(mask: np.ndarray, y: float, x: float, r: int) -> bool:
    iy, ix = int(round(y)), int(round(x))
    if iy - r < 0 or ix - r < 0 or iy + r >= mask.shape[0] or ix + r >= mask.shape[1]:
        return False
    return bool(mask[iy - r:iy + r + 1, ix - r:ix + r + 1].all())


def point_source_field(
    *,
    kind: str = "grid",
    rates: Sequence[float] = DEFAULT_RATES,
    separations_fwhm: Sequence[float] = DEFAULT_SEPARATIONS,
    pairs_per_separation: int = 6,
    pair_rate: float = 1e-2,
    spacing_px: int = 22,
    exposure_s: float = 20_000.0,
    target_exposure_s: float = 100_000.0,
    background_rate: float = MEAN_BACKGROUND_RATE,
    psf: str = "handbook",
    seed: int = 0,
) -> PointField:
    """Simulate the PSF-test grid (``kind="grid"``) or the deblending pairs (``"pairs"``).

    Sources sit on a regular lattice (``spacing_px`` 1x pixels) inside the detector mask, at
    random sub-pixel offsets; grid fluxes cycle through ``rates``. The input is Poisson counts
    of (sources + ``background_rate`` per pixel) for ``exposure_s`` on the detector mask; the
    target is the noiseless 2x rate with the PSF halved and no background.

    Returns
    -------
    PointField
    """
    from xsa_enhance.instrument.grid import GRID_1X
    from xsa_enhance.instrument.mask import detector_mask

    rng = np.random.default_rng(seed)
    mask = np.asarray(detector_mask(GRID_1X), dtype=bool)
    ny, nx = mask.shape
    lattice = [(y, x) for y in range(spacing_px, ny - spacing_px, spacing_px)
               for x in range(spacing_px, nx - spacing_px, spacing_px)]
    fwhm_px = _psf_model(psf).fwhm() / 4.0
    positions: list[tuple[float, float]] = []
    src_rates: list[float] = []
    pairs: list[tuple[int, int]] = []
    seps: list[float] = []
    k = 0
    for (y, x) in lattice:
        if kind == "grid":
            py, px = y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5)
            if not _usable(mask, py, px, 4):
                continue
            positions.append((py, px))
            src_rates.append(float(rates[k % len(rates)]))
            k += 1
        elif kind == "pairs":
            if k >= len(separations_fwhm) * pairs_per_separation:
                break
            sep = float(separations_fwhm[k % len(separations_fwhm)]) * fwhm_px
            ang = rng.uniform(0, np.pi)
            cy, cx = y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5)
            dy, dx = 0.5 * sep * np.sin(ang), 0.5 * sep * np.cos(ang)
            if not _usable(mask, cy, cx, int(sep) + 4):
                continue
            i0 = len(positions)
            positions += [(cy - dy, cx - dx), (cy + dy, cx + dx)]
            src_rates += [pair_rate, pair_rate]
            pairs.append((i0, i0 + 1))
            seps.append(sep * 4.0)
            k += 1
        else:
            raise ValueError(f"kind must be 'grid' or 'pairs', got {kind!r}")
    pos = np.asarray(positions)
    r = np.asarray(src_rates)
    rate_in = render_point_sources(mask.shape, pos, r, factor=1, psf=psf)
    counts = rng.poisson((rate_in + background_rate) * exposure_s) * mask
    target = render_point_sources(mask.shape, pos, r, factor=2, resolution=0.5, psf=psf)
    m2 = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
    return PointField(counts=counts.astype(np.float64), exposure_s=exposure_s, mask=mask,
                      target_rate=target * m2, positions=pos, rates=r,
                      pairs=np.asarray(pairs) if pairs else None,
                      separations_arcsec=np.asarray(seps) if seps else None)


def _gauss(coords, amp, y0, x0, sigma, bkg):
    y, x = coords
    return amp * np.exp(-((y - y0) ** 2 + (x - x0) ** 2) / (2 * sigma**2)) + bkg


def fit_gaussian(img: np.ndarray, y0: float, x0: float, *, half: int = 6) -> dict[str, float]:
    """Fit a circular 2-D Gaussian plus a constant around ``(y0, x0)`` (pixel coordinates).

    Returns
    -------
    dict
        ``sigma`` (pixels), ``amp``, ``y``, ``x``, ``bkg``, ``ok`` (1.0 when the fit
        converged to a positive sigma smaller than the window).
    """
    iy, ix = int(round(y0)), int(round(x0))
    cut = np.asarray(img[iy - half:iy + half + 1, ix - half:ix + half + 1], dtype=np.float64)
    yy, xx = np.mgrid[iy - half:iy + half + 1, ix - half:ix + half + 1]
    if cut.size == 0 or not np.isfinite(cut).all() or cut.max() <= 0:
        return {"sigma": math.nan, "amp": math.nan, "y": math.nan, "x": math.nan,
                "bkg": math.nan, "ok": 0.0}
    p0 = (float(cut.max() - np.median(cut)), y0, x0, 1.5, float(np.median(cut)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            popt, _ = optimize.curve_fit(_gauss, (yy.ravel(), xx.ravel()), cut.ravel(), p0=p0,
                                         maxfev=4000)
    except (RuntimeError, optimize.OptimizeWarning, ValueError):
        return {"sigma": math.nan, "amp": math.nan, "y": math.nan, "x": math.nan,
                "bkg": math.nan, "ok": 0.0}
    amp, fy, fx, sig, bkg = (float(v) for v in popt)
    sig = abs(sig)
    ok = float(amp > 0 and 0.05 < sig < half and abs(fy - y0) < 3 and abs(fx - x0) < 3)
    return {"sigma": sig, "amp": amp, "y": fy, "x": fx, "bkg": bkg, "ok": ok}


def aperture_flux(img: np.ndarray, y0: float, x0: float, *, radius: float, annulus: tuple[float, float]
                  ) -> float:
    """Sum inside ``radius`` minus the mean per-pixel level in ``annulus`` (pixels)."""
    r_out = int(math.ceil(annulus[1])) + 1
    iy, ix = int(round(y0)), int(round(x0))
    cut = np.asarray(img[iy - r_out:iy + r_out + 1, ix - r_out:ix + r_out + 1], dtype=np.float64)
    yy, xx = np.mgrid[iy - r_out:iy + r_out + 1, ix - r_out:ix + r_out + 1]
    r = np.hypot(yy - y0, xx - x0)
    inner = r <= radius
    ring = (r >= annulus[0]) & (r <= annulus[1])
    level = float(np.mean(cut[ring])) if ring.any() else 0.0
    return float(cut[inner].sum() - level * inner.sum())


def is_resolved(img: np.ndarray, p1: tuple[float, float], p2: tuple[float, float], *,
                dip: float = 0.8, width: float = 1.0, tolerance: float | None = None) -> bool:
    """Whether two sources appear as two peaks along the line joining them.

    The image is sampled (bilinear) along the line from 25 % beyond ``p1`` to 25 % beyond
    ``p2``, averaged over offsets ``-width..width`` pixels across it. Resolved: the largest
    value in each half lies within ``tolerance`` (default 35 % of the separation) of its source,
    and the smallest value between the two maxima is below ``dip`` times the smaller maximum.
    """
    a = np.asarray(p1, float)
    b = np.asarray(p2, float)
    d = b - a
    sep = float(np.hypot(*d))
    if sep <= 0:
        return False
    tol = 0.35 * sep if tolerance is None else tolerance
    u = d / sep
    nrm = np.array([-u[1], u[0]])
    t = np.linspace(-0.25, 1.25, 61)
    prof = np.zeros_like(t)
    offs = np.linspace(-width, width, 3)
    for o in offs:
        pts = a[None, :] + t[:, None] * d[None, :] + o * nrm[None, :]
        prof += ndimage.map_coordinates(np.asarray(img, float), pts.T, order=1, mode="nearest")
    prof /= len(offs)
    half = len(t) // 2
    i1 = int(np.argmax(prof[:half]))
    i2 = half + int(np.argmax(prof[half:]))
    if abs(t[i1]) * sep > tol or abs(t[i2] - 1.0) * sep > tol:
        return False
    if i2 - i1 < 2:
        return False
    low = float(prof[i1:i2 + 1].min())
    peak = float(min(prof[i1], prof[i2]))
    return bool(peak > 0 and low < dip * peak)


@dataclass
class PsfTestResult:
    """Figures of the PSF and deblending tests."""

    per_clamp: dict[str, dict[str, Any]] = field(default_factory=dict)
    deblending: dict[str, dict[str, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Medians, ratios, pass/fail and the resolved fractions (JSON-ready)."""
        return {"meta": self.meta,
                "psf": {k: {kk: vv for kk, vv in v.items() if kk != "sources"}
                        for k, v in self.per_clamp.items()},
                "deblending": self.deblending}


def _measure(img2x: np.ndarray, pos2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sig = np.full(len(pos2), np.nan)
    flux = np.full(len(pos2), np.nan)
    for i, (y, x) in enumerate(pos2):
        fit = fit_gaussian(img2x, y, x, half=6)
        if fit["ok"]:
            sig[i] = fit["sigma"]
        flux[i] = aperture_flux(img2x, y, x, radius=8.0, annulus=(10.0, 14.0))
    return sig, flux


def run_psf_test(
    model: Any,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    clamps: Sequence[str] | None = None,
    seed: int = 0,
    psf: str = "handbook",
    max_sigma_ratio: float = 1.25,
    max_flux_error: float = 0.10,
    min_fit_fraction: float = 0.8,
    allow_clamp_mismatch: bool = False,
) -> PsfTestResult:
    """Run the PSF test and the deblending test for an SR model.

    Parameters
    ----------
    model : str, path-like or LoadedModel
        An SR model. An alias (``xmm-superres``) runs, for each clamp mode, the newest weights
        trained for that mode (:func:`~xsa_enhance.models.registry.load_model`); an explicit
        version, file or loaded model runs as given.
    out_dir : path-like, optional
        Write ``psf_test.json``, ``psf_test.md`` and ``psf_panels.png`` there.
    clamps : sequence of str, optional
        Clamp modes to run the model with (default: the clamp the weights are trained for).
    seed : int
        Seed of positions and noise.
    psf : str
        King model used to render the sources (the simulator's).
    max_sigma_ratio, max_flux_error : float
        Targets: median predicted sigma / median target sigma, and |flux ratio - 1|.
    min_fit_fraction : float
        A clamp mode passes only when at least this fraction of the predicted sources gives
        a valid Gaussian fit (a model that erases sources must not pass on sigma).
    allow_clamp_mismatch : bool
        Run explicit weights with clamp modes they were not trained for (the figures then
        describe a pairing the pipeline never makes by default).

    Returns
    -------
    PsfTestResult
    """
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.models.registry import LoadedModel, load_model

    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, clamp=clamps[0] if clamps else None, allow_clamp_mismatch=allow_clamp_mismatch)
    clamps = tuple(clamps) if clamps else (loaded.clamp,)
    models: dict[str, LoadedModel] = {}
    for clamp in clamps:
        models[clamp] = loaded if isinstance(model, LoadedModel) else load_model(
            model, clamp=clamp, allow_clamp_mismatch=allow_clamp_mismatch)

    def run(counts: np.ndarray, exposure_s: float, mask: np.ndarray, clamp: str) -> np.ndarray:
        m = models[clamp]
        out = enhance(counts, exposure_s, mask, m, clamp=clamp,
                      allow_clamp_mismatch=allow_clamp_mismatch)
        return np.asarray(out.counts, dtype=np.float64) / out.exposure_s

    if loaded.factor != 2:
        from xsa_enhance.errors import ConfigError

        raise ConfigError(f"the PSF test needs a super-resolution model; {loaded.name} is "
                          f"{loaded.kind!r}")
    grid = point_source_field(kind="grid", seed=seed, psf=psf,
                              exposure_s=loaded.input_exposure_s,
                              target_exposure_s=loaded.target_exposure_s)
    pairs = point_source_field(kind="pairs", seed=seed + 1, psf=psf,
                               exposure_s=loaded.input_exposure_s,
                               target_exposure_s=loaded.target_exposure_s)
    res = PsfTestResult(meta={"model": loaded.name, "weights_sha256": loaded.sha256,
                              "output_clamp_ratio": loaded.output_clamp_ratio,
                              "weights_per_clamp": {c: m.name for c, m in models.items()},
                              "psf": psf, "seed": seed, "n_sources": int(len(grid.rates)),
                              "pixel_arcsec": 2.0, "max_sigma_ratio": max_sigma_ratio,
                              "max_flux_error": max_flux_error})
    pos2 = (grid.positions + 0.5) * 2 - 0.5
    inp2 = np.repeat(np.repeat(grid.counts / grid.exposure_s, 2, 0), 2, 1) / 4.0
    s_in, f_in = _measure(inp2, pos2)
    s_t, f_t = _measure(grid.target_rate, pos2)
    panels: dict[str, np.ndarray] = {"input": inp2, "target": grid.target_rate}
    for clamp in clamps:
        pred = run(grid.counts, grid.exposure_s, grid.mask, clamp)
        panels[f"model ({clamp})"] = pred
        s_p, f_p = _measure(pred, pos2)
        ok = np.isfinite(s_p) & np.isfinite(s_t)
        ratio_med = float(np.nanmedian(s_p[ok]) / np.nanmedian(s_t[ok])) if ok.any() else math.nan
        flux_ratio = f_p / f_t
        by_rate = {}
        for r in np.unique(grid.rates):
            sel = grid.rates == r
            by_rate[f"{r:g}"] = {
                "sigma_input_px": float(np.nanmedian(s_in[sel])),
                "sigma_target_px": float(np.nanmedian(s_t[sel])),
                "sigma_pred_px": float(np.nanmedian(s_p[sel])),
                "flux_ratio_pred_target": float(np.nanmedian(flux_ratio[sel])),
                "flux_ratio_input_target": float(np.nanmedian(f_in[sel] / f_t[sel])),
            }
        fl = float(np.nanmedian(flux_ratio))
        res.per_clamp[clamp] = {
            "median_sigma_input_px": float(np.nanmedian(s_in)),
            "median_sigma_target_px": float(np.nanmedian(s_t)),
            "median_sigma_pred_px": float(np.nanmedian(s_p)),
            "sigma_ratio_pred_target": ratio_med,
            "sigma_ratio_input_target": float(np.nanmedian(s_in) / np.nanmedian(s_t)),
            "median_flux_ratio_pred_target": fl,
            "fit_success_fraction": float(np.mean(np.isfinite(s_p))),
            "passed_sigma": bool(ratio_med <= max_sigma_ratio),
            "passed_flux": bool(abs(fl - 1.0) <= max_flux_error),
            "passed_fits": bool(np.mean(np.isfinite(s_p)) >= min_fit_fraction),
            "by_rate": by_rate,
        }
    # deblending
    assert pairs.pairs is not None and pairs.separations_arcsec is not None
    fwhm = _psf_model(psf).fwhm()
    p2 = (pairs.positions + 0.5) * 2 - 0.5
    images = {"input": np.repeat(np.repeat(pairs.counts / pairs.exposure_s, 2, 0), 2, 1) / 4.0,
              "target": pairs.target_rate}
    for clamp in clamps:
        images[f"model ({clamp})"] = run(pairs.counts, pairs.exposure_s, pairs.mask, clamp)
    seps_fwhm = np.round(pairs.separations_arcsec / fwhm, 3)
    for name, img in images.items():
        fr: dict[str, float] = {}
        for s in np.unique(seps_fwhm):
            sel = np.flatnonzero(seps_fwhm == s)
            hits = [is_resolved(img, tuple(p2[pairs.pairs[j][0]]), tuple(p2[pairs.pairs[j][1]]))
                    for j in sel]
            fr[f"{s:g}"] = float(np.mean(hits))
        res.deblending[name] = fr
    res.meta["fwhm_input_arcsec"] = fwhm
    res.meta["deblending_note"] = ("fraction of pairs resolved per separation (units of the "
                                   "input FWHM), every image treated alike (no smoothing)")
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "psf_test.json").write_text(json.dumps(res.summary(), indent=1))
        (out / "psf_test.md").write_text(_psf_markdown(res))
        _psf_panel(out / "psf_panels.png", panels, pos2, grid.rates)
        _deblend_panel(out / "deblend_panels.png", images, p2, pairs.pairs, seps_fwhm)
    return res


def _psf_markdown(res: PsfTestResult) -> str:
    lines = [f"# PSF test of {res.meta['model']}", "",
             f"Point sources rendered with the `{res.meta['psf']}` King PSF; sigma of fitted "
             "2-D Gaussians in 2 arcsec pixels (input nearest-neighbour upsampled).", "",
             "| clamp | sigma input | sigma target | sigma pred | pred/target | flux pred/target | fits ok | pass |",
             "|---|---|---|---|---|---|---|---|"]
    for clamp, v in res.per_clamp.items():
        ok = v["passed_sigma"] and v["passed_flux"] and v["passed_fits"]
        lines.append(f"| {clamp} | {v['median_sigma_input_px']:.3f} | {v['median_sigma_target_px']:.3f} | "
                     f"{v['median_sigma_pred_px']:.3f} | {v['sigma_ratio_pred_target']:.3f} | "
                     f"{v['median_flux_ratio_pred_target']:.3f} | {v['fit_success_fraction']:.2f} | "
                     f"{'PASS' if ok else 'MISS'} |")
    lines += ["", "## Deblending: fraction of pairs resolved", ""]
    seps = sorted({s for d in res.deblending.values() for s in d}, key=float)
    lines.append("| image | " + " | ".join(f"{s} FWHM" for s in seps) + " |")
    lines.append("|---" * (len(seps) + 1) + "|")
    for name, d in res.deblending.items():
        lines.append(f"| {name} | " + " | ".join(f"{d.get(s, math.nan):.2f}" for s in seps) + " |")
    lines += ["", "![panels](psf_panels.png)", ""]
    return "\n".join(lines)


def _psf_panel(path: Path, panels: dict[str, np.ndarray], pos2: np.ndarray, rates: np.ndarray
               ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bright = int(np.argmax(rates))
    y, x = (int(round(v)) for v in pos2[bright])
    h = 12
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6), dpi=110)
    for ax, (name, img) in zip(np.atleast_1d(axes), panels.items()):
        cut = img[y - h:y + h + 1, x - h:x + h + 1]
        ax.imshow(np.sqrt(np.clip(cut, 0, None)), origin="lower", cmap="magma")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("brightest point source (sqrt scale, 2 arcsec pixels)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _deblend_panel(path: Path, images: dict[str, np.ndarray], pos2: np.ndarray,
                   pairs: np.ndarray, seps_fwhm: np.ndarray) -> None:
    """One pair per separation (rows) in every image (columns), true positions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seps = np.unique(seps_fwhm)
    h = 12
    fig, axes = plt.subplots(len(seps), len(images), squeeze=False,
                             figsize=(2.2 * len(images), 2.2 * len(seps)), dpi=90)
    for row, s in zip(axes, seps):
        j = int(np.flatnonzero(seps_fwhm == s)[0])
        (y1, x1), (y2, x2) = pos2[pairs[j][0]], pos2[pairs[j][1]]
        yc, xc = int(round((y1 + y2) / 2)), int(round((x1 + x2) / 2))
        for ax, (name, img) in zip(row, images.items()):
            cut = img[yc - h:yc + h + 1, xc - h:xc + h + 1]
            ax.imshow(np.sqrt(np.clip(cut, 0, None)), origin="lower", cmap="magma")
            ax.plot([x1 - xc + h, x2 - xc + h], [y1 - yc + h, y2 - yc + h], "c+", ms=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == seps[0]:
                ax.set_title(name, fontsize=8)
        row[0].set_ylabel(f"{s:g} FWHM", fontsize=8)
    fig.suptitle("deblending pairs (sqrt scale, 2 arcsec pixels; + true positions)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
