"""Quick-look PNGs: the one way this package draws images for people to look at.

:func:`quicklook_png` draws images side by side: count-rate panels on one stretched scale set
by the first panel, with colour bars (one per panel or one shared) ticked in counts/s per pixel
of the first panel (the 4" pixel of the 1x grid), and significance panels (``output /
uncertainty``, linear 0 to :data:`SIGNIFICANCE_VMAX`, 3 sigma marked). ``export --png`` (store), ``enhance --png``
(:func:`write_comparison_png`), ``simulate quicklook`` and ``image --png``
(:func:`write_image_png`, one panel in DET coordinates with the mask outline) all go through
it. PNGs are written atomically (:func:`save_png`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from xsa_enhance.atomicio import atomic_path

__all__ = ["SIGNIFICANCE_VMAX", "asinh_display", "draw_significance", "quicklook_png",
           "save_png", "write_comparison_png", "write_image_png"]

logger = logging.getLogger(__name__)

#: Upper end of the significance (output / uncertainty) colour scale of quicklooks.
SIGNIFICANCE_VMAX: float = 10.0

#: Fractions of the scale's top at which the rate colour bar is ticked.
_TICK_FRACTIONS: tuple[float, ...] = (0.0, 0.05, 0.15, 0.5, 1.0)

#: A panel: ``(label, image)`` or ``(label, image, kind)`` with kind ``"rate"`` or
#: ``"significance"``.
Panel = tuple[str, np.ndarray] | tuple[str, np.ndarray, str]


def asinh_display(x: np.ndarray) -> np.ndarray:
    """The default display stretch: ``asinh(20 x) / asinh(20)``, [0, 1] -> [0, 1]."""
    return np.arcsinh(20.0 * np.asarray(x, dtype=float)) / np.arcsinh(20.0)


def save_png(fig: Any, path: str | os.PathLike[str], *, dpi: int = 90) -> Path:
    """Save a matplotlib figure as a PNG atomically and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (closed afterwards, also on failure).
    path : path-like
        Output PNG; its folder is created.
    dpi : int
        Resolution in dots per inch.

    Returns
    -------
    pathlib.Path
        The PNG, complete (written to a temporary file and renamed).
    """
    import matplotlib.pyplot as plt

    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    logger.debug("wrote %s", out)
    return out


def draw_significance(ax: Any, significance: np.ndarray, mask: np.ndarray | None = None,
                      *, vmax: float = SIGNIFICANCE_VMAX) -> Any:
    """Show ``output / sigma`` on ``ax`` (linear, 0 to ``vmax``); pixels outside ``mask``
    and NaN pixels are blank.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    significance : numpy.ndarray
        The significance map.
    mask : numpy.ndarray, optional
        Pixels to show (default: all).
    vmax : float
        Top of the colour scale.

    Returns
    -------
    matplotlib.image.AxesImage
        The image artist (for a colour bar).
    """
    z = np.asarray(significance, dtype=np.float64)
    if mask is not None:
        z = np.where(np.asarray(mask, dtype=bool), z, np.nan)
    return ax.imshow(z, origin="lower", cmap="viridis", vmin=0.0, vmax=vmax,
                     interpolation="nearest")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _scale_top(rate: np.ndarray, percentile: float) -> float:
    """The rate shown at the top of the colour scale: a percentile of the positive pixels."""
    pos = rate[np.isfinite(rate) & (rate > 0)]
    hi = float(np.percentile(pos, percentile)) if pos.size else 1.0
    return hi if hi > 0 else 1.0


def _rate_colorbar(fig: Any, im: Any, axes: Any, *, hi: float,
                   stretch: Callable[[np.ndarray], np.ndarray], label: str) -> None:
    """One colour bar for the rate panels, ticked in the rates themselves."""
    cb = fig.colorbar(im, ax=axes, shrink=0.8)
    cb.set_ticks([float(stretch(np.array(t))) for t in _TICK_FRACTIONS])
    cb.set_ticklabels([f"{t * hi:.2g}" for t in _TICK_FRACTIONS])
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def quicklook_png(
    images: Sequence[Panel], path: str | os.PathLike[str], *, title: str = "",
    colorbar_label: str = "count rate (ct/s per 4\" pixel), asinh scale",
    stretch: Callable[[np.ndarray], np.ndarray] = asinh_display,
    percentile: float = 99.5, shared_colorbar: bool = False,
    panel_size: tuple[float, float] = (3.6, 3.9), dpi: int = 90,
) -> Path:
    """Save images side by side as a PNG: rate panels on one stretched scale with colour bars
    in physical units, significance panels each with their own.

    Parameters
    ----------
    images : sequence of (label, array) or (label, array, kind)
        Count rates per pixel. Panels with finer pixels than the first are scaled to the
        first panel's pixel area (``(rows / rows_first) ** 2``), so 1x and 2x grids share the
        scale. ``kind`` ``"significance"`` shows a significance map (``output /
        uncertainty``, NaN blank) on a linear scale from 0 to :data:`SIGNIFICANCE_VMAX` with
        its own colour bar (a white line at 3).
    path : path-like
        Output PNG.
    title : str
        Figure title.
    colorbar_label : str
        Label of the rate colour bar (its ticks are in the first panel's units).
    stretch : callable
        Display stretch mapping [0, 1] onto [0, 1] (default :func:`asinh_display`).
    percentile : float
        Percentile of the first panel's positive pixels shown at the top of the scale.
    shared_colorbar : bool
        One colour bar for all rate panels instead of one beside each.
    panel_size : (float, float)
        Width and height of one panel in inches (the figure is ``n`` panels wide).
    dpi : int
        Resolution.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    plt = _pyplot()
    n = max(1, len(images))
    fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1]), squeeze=False,
                             constrained_layout=True)
    rate_axes: list[Any] = []
    rate_im, hi = None, None
    rows0 = np.shape(images[0][1])[0] if images else 1
    for ax, panel in zip(axes[0], images):
        label, img = panel[0], np.asarray(panel[1], dtype=float)
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(panel) > 2 and panel[2] == "significance":  # type: ignore[misc]
            im = draw_significance(ax, img)
            cb = fig.colorbar(im, ax=ax, shrink=0.8, extend="max",
                              label="significance (output / 1-sigma)")
            cb.ax.axhline(3.0, color="w", lw=1.5)
            cb.ax.tick_params(labelsize=7)
            continue
        img = img * (img.shape[0] / rows0) ** 2
        if hi is None:
            hi = _scale_top(img, percentile)
        rate_im = ax.imshow(stretch(np.clip(img / hi, 0.0, 1.0)), origin="lower", cmap="magma",
                            vmin=0.0, vmax=1.0, interpolation="nearest")
        if not shared_colorbar:
            _rate_colorbar(fig, rate_im, ax, hi=hi, stretch=stretch, label=colorbar_label)
        rate_axes.append(ax)
    if shared_colorbar and rate_im is not None and hi is not None:
        _rate_colorbar(fig, rate_im, rate_axes, hi=hi, stretch=stretch, label=colorbar_label)
    for ax in axes[0][len(images):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path, dpi=dpi)


def write_comparison_png(path: str | os.PathLike[str], counts_in: np.ndarray, exposure_in: float,
                         result: Any, *, stretch: str = "sqrt", title: str = "") -> Path:
    """Input and enhanced output side by side (``xsa-enhance enhance --png``).

    Both are shown as count rates per input (4 arcsec) pixel area on one scale (the 99.9th
    percentile of the input at the top) with the same stretch. When ``result.uncertainty`` is
    set, a third panel shows the significance ``output / uncertainty``.

    Parameters
    ----------
    path : path-like
        Output PNG.
    counts_in : numpy.ndarray
        The input counts (masked).
    exposure_in : float
        Input exposure (s).
    result : EnhancedImage
        The output of :func:`xsa_enhance.models.inference.enhance`.
    stretch : str
        One of the models' stretches (:func:`xsa_enhance.models.normalise.stretch_forward`).
    title : str
        Figure title.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from xsa_enhance.models.normalise import stretch_forward  # the models' stretches

    a = result.attrs
    rate_in = np.asarray(counts_in, dtype=np.float64) / exposure_in
    rate_out = result.counts.astype(np.float64) / result.exposure_s
    panels: list[Panel] = [
        (f"input ({exposure_in / 1000:.0f} ks, {rate_in.shape[1]}x{rate_in.shape[0]})", rate_in),
        (f"{a['model']} ({result.exposure_s / 1000:.0f} ks, "
         f"{rate_out.shape[1]}x{rate_out.shape[0]}, clamp {a['clamp_mode']})", rate_out),
    ]
    if getattr(result, "uncertainty", None) is not None:
        z = np.where(np.asarray(result.mask, dtype=bool), result.significance(), np.nan)
        panels.append((f"output / uncertainty ({a.get('uncertainty_method', '')}, "
                       f"{a.get('uncertainty_n_samples', '?')} samples)", z, "significance"))
    return quicklook_png(panels, path, title=title,
                         stretch=partial(stretch_forward, stretch=stretch),
                         colorbar_label=f"count rate (ct/s per 4\" pixel), {stretch} scale",
                         percentile=99.9, shared_colorbar=True, panel_size=(6.0, 6.2), dpi=100)


def write_image_png(image: Any, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Quick-look PNG of a slice image: its count rate (sqrt scale) in DET coordinates with the
    detector mask outlined.

    Parameters
    ----------
    image : SliceImage
        The image (:class:`xsa_enhance.events.types.SliceImage`).
    path : path-like
        Output PNG.
    title : str, optional
        Plot title (default: obsid, slice, exposure and counts).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.0), constrained_layout=True)
    counts = np.asarray(image.counts, dtype=float)
    rate = counts / image.exposure_s if image.exposure_s > 0 else counts
    hi = _scale_top(rate, 99.5)
    g = image.grid
    extent = (g.x_edges[0], g.x_edges[-1], g.y_edges[0], g.y_edges[-1])
    im = ax.imshow(np.sqrt(np.clip(rate / hi, 0.0, 1.0)), origin="lower", extent=extent,
                   cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.contour(np.asarray(image.mask, dtype=float), levels=[0.5], colors="cyan",
               linewidths=0.4, extent=extent, origin="lower")
    ax.set_xlabel("DETX")
    ax.set_ylabel("DETY")
    ax.set_title(title or f"{image.obsid} {image.expidstr} {image.label}  "
                 f"{image.exposure_s:.0f} s  {image.total_counts} counts")
    _rate_colorbar(fig, im, ax, hi=hi, stretch=np.sqrt,
                   label="count rate (ct/s per pixel), sqrt scale")
    return save_png(fig, path, dpi=100)
