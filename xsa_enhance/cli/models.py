"""``xsa-enhance enhance`` and ``xsa-enhance model {list,show,register,export-onnx}``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import numpy as np

from xsa_enhance.cli.common import UserError
from xsa_enhance.errors import InputFileError

__all__ = ["enhance_cmd", "model", "read_counts_fits", "write_enhanced_fits", "write_comparison_png",
           "draw_significance"]

logger = logging.getLogger(__name__)

_COPY_KEYS = ("OBS_ID", "EXP_ID", "EXPIDSTR", "INSTRUME", "FILTER", "SUBMODE", "DATAMODE",
              "DATE-OBS", "DATE-END", "RA_PNT", "DEC_PNT", "PA_PNT", "RA_NOM", "DEC_NOM",
              "OBJECT", "TELESCOP", "SLICEID", "SLICE", "SLICE_KS", "EMIN", "EMAX", "BUNIT0")


def read_counts_fits(path: str | Path) -> tuple[np.ndarray, float, np.ndarray | None, Any]:
    """Read a counts image: primary HDU data, ``EXPOSURE`` keyword, optional ``MASK`` HDU.

    Parameters
    ----------
    path : path-like
        FITS file as written by ``xsa-enhance image`` (events stage ``write_image_fits``).

    Returns
    -------
    counts : numpy.ndarray
    exposure_s : float
    mask : numpy.ndarray or None
    header : astropy.io.fits.Header
        The primary header.
    """
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul[0]
            if hdu.data is None and len(hdul) > 1 and hdul[1].is_image:
                hdu = hdul[1]
            if hdu.data is None or hdu.data.ndim != 2:
                raise InputFileError(path, "no 2-D counts image in the primary HDU")
            counts = np.asarray(hdu.data, dtype=np.float64)
            header = hdu.header.copy()
            mask = None
            if "MASK" in hdul:
                mask = np.asarray(hdul["MASK"].data, dtype=np.float64)
    except InputFileError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise InputFileError(path, f"not a readable FITS image: {exc}") from exc
    expo = header.get("EXPOSURE", header.get("ONTIME", header.get("LIVETIME")))
    try:
        exposure_s = float(expo)
    except (TypeError, ValueError):
        raise InputFileError(path, "no usable EXPOSURE keyword (seconds) in the header") from None
    if not (np.isfinite(exposure_s) and exposure_s > 0):
        raise InputFileError(path, f"EXPOSURE must be positive, got {expo!r}")
    if mask is not None and mask.shape != counts.shape:
        raise InputFileError(path, f"MASK shape {mask.shape} differs from image {counts.shape}")
    bad = ~np.isfinite(counts)
    if bad.any():
        iy, ix = (int(v[0]) for v in np.nonzero(bad))
        raise InputFileError(path, f"{int(bad.sum())} non-finite (NaN/Inf) pixel(s) in the counts "
                                   f"image, first at row {iy}, column {ix} (0-based)")
    if mask is not None and not np.all(np.isfinite(mask)):
        raise InputFileError(path, "non-finite (NaN/Inf) values in the MASK extension")
    return counts, exposure_s, mask, header


def _scaled_wcs_header(header: Any, factor: int, out_grid: Any) -> tuple[Any, str]:
    """WCS keywords for the output grid: the input's WCS (every alternate) scaled by factor."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    import warnings

    out = fits.Header()
    have_sky = False
    alts = [""] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for alt in alts:
        if f"CTYPE1{alt}" not in header:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                w = WCS(header, key=alt or " ", naxis=2)
            except Exception as exc:  # astropy raises many kinds here
                logger.warning("cannot read WCS %r of the input: %s", alt, exc)
                continue
        w.wcs.crpix = factor * (np.asarray(w.wcs.crpix) - 0.5) + 0.5
        if w.wcs.has_cd():
            w.wcs.cd = np.asarray(w.wcs.cd) / factor
        else:
            w.wcs.cdelt = np.asarray(w.wcs.cdelt) / factor
        have_sky = have_sky or w.has_celestial
        out.update(w.to_header(key=alt or None))
    if have_sky:
        return out, "input WCS scaled to the output grid"
    try:
        ra, dec, pa = (float(header[k]) for k in ("RA_PNT", "DEC_PNT", "PA_PNT"))
    except (KeyError, TypeError, ValueError):
        return out, "none (no sky WCS or pointing in the input)"
    if out_grid is None:
        return out, "none (non-standard grid)"
    from xsa_enhance.instrument.geometry import SKY_PIXEL_DEG, det_to_sky

    # linear map DET -> sky X/Y -> tangent-plane degrees, from the instrument geometry
    x0, y0 = det_to_sky(0.0, 0.0, pa_deg=pa)
    xx, yx = det_to_sky(1.0, 0.0, pa_deg=pa)
    xy, yy = det_to_sky(0.0, 1.0, pa_deg=pa)
    b = out_grid.binsize
    cd = np.array([[-(xx - x0), -(xy - x0)], [(yx - y0), (yy - y0)]]) * SKY_PIXEL_DEG * b
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(0.0 - out_grid.x_edge0) / b + 0.5, (0.0 - out_grid.y_edge0) / b + 0.5]
    w.wcs.cd = cd
    out.update(w.to_header())
    out.update({k: v for k, v in out_grid.det_wcs_keywords(alt="L").items()})
    return out, "approximate: DET origin at pointing, rotated by PA_PNT"


def write_enhanced_fits(path: str | Path, result: Any, in_header: Any, *,
                        overwrite: bool = False) -> None:
    """Write an :class:`~xsa_enhance.models.inference.EnhancedImage` as FITS.

    Primary HDU: enhanced counts (float32) with the provenance keywords and the scaled WCS;
    extensions ``MASK`` (uint8) and ``RESTORED`` (uint8, pixels with restored flux); when
    ``result.uncertainty`` is set, ``UNCERTAINTY`` (float32, the 1-sigma uncertainty of the
    counts: same shape, units and WCS as the primary image, with the method, samples, seed
    and calibration in its header).
    """
    from astropy.io import fits

    a = result.attrs
    hdr = fits.Header()
    for key in _COPY_KEYS:
        if key in in_header:
            hdr[key] = in_header[key]
    wcs_hdr, wcs_note = _scaled_wcs_header(in_header, int(a["factor"]), result.grid)
    hdr.update(wcs_hdr)
    hdr["BUNIT"] = ("count", "counts for EXPOSURE seconds")
    hdr["EXPOSURE"] = (float(result.exposure_s), "[s] target exposure of the model")
    hdr["INEXPOSE"] = (float(a["input_exposure_s"]), "[s] exposure of the input image")
    hdr["XSAMODEL"] = (str(a["model"]), "enhancement model")
    hdr["XSAKIND"] = (str(a["model_kind"]), "sr: super-resolution, dn: de-noising")
    hdr["XSAGRID"] = (str(a["grid"]), "output DET grid")
    hdr["XSAFACT"] = (int(a["factor"]), "output pixels per input pixel per axis")
    hdr["XSACLAMP"] = (str(a["clamp_mode"]), "clamp mode")
    if a.get("trained_clamp") is not None:
        hdr["XSATRCL"] = (str(a["trained_clamp"])[:40], "clamp mode the weights were trained for")
        hdr["XSAMISM"] = (bool(a.get("clamp_mismatch", False)),
                          "clamp mode differs from the trained one")
    hdr["XSACLVAL"] = (float(a["clamp_value"]), "[count/s/pix] input clamp value")
    if a.get("clamp_quantile") is not None:
        hdr["XSACLQ"] = (float(a["clamp_quantile"]), "clamp quantile")
    hdr["XSASTRCH"] = (str(a["stretch"]), "stretch")
    hdr["XSARESTO"] = (bool(a["restore"]), "bright-source flux above clamp restored")
    hdr["XSARESRT"] = (float(a["restored_rate"]), "[count/s] restored rate")
    hdr["XSARESPX"] = (int(a["restored_pixels"]), "input pixels above the clamp")
    hdr["XSAVERS"] = (str(a["software_version"]), "xsa-enhance version")
    hdr["XSAWCS"] = wcs_note[:68]
    hdr["XSASHA"] = str(a["weights_sha256"])
    hdr["COMMENT"] = a["caveats"]
    sigma = getattr(result, "uncertainty", None)
    hdr["XSAUNC"] = (sigma is not None, "UNCERTAINTY extension (1-sigma) present")
    primary = fits.PrimaryHDU(result.counts.astype(np.float32), header=hdr)
    mask = fits.ImageHDU(result.mask.astype(np.uint8), name="MASK")
    restored = fits.ImageHDU(result.restored.astype(np.uint8), name="RESTORED")
    hdus = [primary, mask, restored]
    if sigma is not None:
        from xsa_enhance.store.export import uncertainty_hdu

        hdus.append(uncertainty_hdu(sigma, a, wcs_hdr, exposure_s=float(result.exposure_s)))
    try:
        fits.HDUList(hdus).writeto(path, overwrite=overwrite)
    except OSError as exc:
        raise InputFileError(path, f"cannot write output: {exc}") from exc


def draw_significance(ax: Any, significance: np.ndarray, mask: np.ndarray | None = None,
                      *, vmax: float = 10.0) -> Any:
    """Show ``output / sigma`` on ``ax`` (0 to ``vmax``, 3 sigma marked on the colour bar
    by the caller); pixels outside ``mask`` are blank. Returns the image artist."""
    z = np.asarray(significance, dtype=np.float64)
    if mask is not None:
        z = np.where(np.asarray(mask, dtype=bool), z, np.nan)
    return ax.imshow(z, origin="lower", cmap="viridis", vmin=0.0, vmax=vmax,
                     interpolation="nearest")


def write_comparison_png(path: str | Path, counts_in: np.ndarray, exposure_in: float,
                         result: Any, *, stretch: str = "sqrt", title: str = "") -> None:
    """Input and output side by side, as surface brightness with the same stretch and scale.

    Both images are shown in counts/s per input (4 arcsec) pixel area, scaled to [0, 1] by the
    99.9th percentile of the input and stretched with ``stretch``. When ``result.uncertainty``
    is set, a third panel shows the significance ``output / uncertainty`` with its own colour
    bar.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from xsa_enhance.models.normalise import stretch_forward

    f = int(result.attrs["factor"])
    sb_in = np.asarray(counts_in, dtype=np.float64) / exposure_in
    sb_out = result.counts.astype(np.float64) / result.exposure_s * f * f
    pos = sb_in[sb_in > 0]
    vmax = float(np.quantile(pos, 0.999)) if pos.size else 1.0
    vmax = vmax if vmax > 0 else 1.0

    def show(img):
        return stretch_forward(np.clip(img / vmax, 0.0, 1.0), stretch)

    sigma = getattr(result, "uncertainty", None)
    n = 2 if sigma is None else 3
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 6.2), constrained_layout=True)
    axes[0].imshow(show(sb_in), origin="lower", cmap="inferno", vmin=0, vmax=1,
                   interpolation="nearest")
    axes[0].set_title(f"input ({exposure_in / 1000:.0f} ks, {sb_in.shape[1]}x{sb_in.shape[0]})")
    im = axes[1].imshow(show(sb_out), origin="lower", cmap="inferno", vmin=0, vmax=1,
                        interpolation="nearest")
    axes[1].set_title(f"{result.attrs['model']} ({result.exposure_s / 1000:.0f} ks, "
                      f"{sb_out.shape[1]}x{sb_out.shape[0]}, clamp {result.attrs['clamp_mode']})")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:2], shrink=0.8,
                 label=f"{stretch}(rate / {vmax:.3g} counts/s per 4\" pixel)")
    if sigma is not None:
        from xsa_enhance.models.uncertainty import significance_map

        zmap = significance_map(result.counts, sigma)
        zim = draw_significance(axes[2], zmap, result.mask)
        a = result.attrs
        axes[2].set_title(f"output / uncertainty ({a.get('uncertainty_method', '')}, "
                          f"{a.get('uncertainty_n_samples', '?')} samples)")
        cb = fig.colorbar(zim, ax=axes[2], shrink=0.8, extend="max",
                          label="significance (output / 1-sigma)")
        cb.ax.axhline(3.0, color="w", lw=1.5)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.command("enhance")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", required=True,
              help="An alias (xmm-superres, xmm-denoise: the newest weights trained for the "
                   "--clamp mode), NAME-vN, or a .pt weight file.")
@click.option("--clamp", default=None,
              help="constant | constant:VALUE | quantile:Q | none (default: the model's own; "
                   "an alias picks the constant-clamp weights).")
@click.option("--allow-clamp-mismatch", is_flag=True,
              help="Run NAME-vN or a .pt file with a clamp mode it was not trained for "
                   "(recorded in the output; such weights can invent sources).")
@click.option("--stretch", type=click.Choice(["linear", "sqrt", "asinh", "log", "hdr"]),
              default=None,
              help="Stretch (default: the model's, sqrt for the paper models).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Output FITS file.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also write input|output side by side as PNG.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False), default=None,
              help="Run this ONNX export of the model with onnxruntime instead of PyTorch.")
@click.option("--no-restore", is_flag=True, help="Do not restore flux above the clamp.")
@click.option("--tile", type=int, default=None, help="Tile size in input pixels (default: none).")
@click.option("--device", default=None, help="torch device (cpu, cuda, cuda:1...).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              default="auto", show_default=True)
@click.option("--uncertainty", is_flag=True,
              help="Also estimate the per-pixel 1-sigma uncertainty (the input's Poisson noise "
                   "through the network; about N+1 times the cost): UNCERTAINTY extension in "
                   "--out, significance panel in --png.")
@click.option("--uncertainty-samples", "uncertainty_samples", type=click.IntRange(min=2),
              default=8, show_default=True, help="Resamples of the input for --uncertainty.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def enhance_cmd(image: str, model_name: str, clamp: str | None, allow_clamp_mismatch: bool,
                stretch: str | None, out: str, png: str | None, onnx_path: str | None,
                no_restore: bool, tile: int | None, device: str | None, precision: str,
                uncertainty: bool, uncertainty_samples: int, overwrite: bool) -> None:
    """Enhance a counts IMAGE (DET grid, EXPOSURE in its header) with an SR or DN model.

    An alias runs the newest weights trained for the --clamp mode; an explicit version or
    weight file trained for another mode is refused unless --allow-clamp-mismatch.
    With --uncertainty the per-pixel 1-sigma uncertainty is written too (docs/uncertainty.md).
    """
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.models.normalise import ClampSpec
    from xsa_enhance.models.registry import load_model

    if not overwrite:
        for p in (out, png):
            if p and Path(p).exists():
                raise UserError(f"{p} exists (use --overwrite)")
    spec = ClampSpec.parse(clamp) if clamp is not None else None
    counts, exposure_s, mask, header = read_counts_fits(image)
    model = load_model(model_name, clamp=spec, allow_clamp_mismatch=allow_clamp_mismatch,
                       device=device)
    if onnx_path:
        from xsa_enhance.models.onnx_backend import load_onnx

        model = load_onnx(onnx_path, model)
    try:
        result = enhance(counts, exposure_s, mask, model, clamp=spec, stretch=stretch,
                         restore=not no_restore, tile=tile,
                         precision=precision,  # type: ignore[arg-type]
                         allow_clamp_mismatch=allow_clamp_mismatch, uncertainty=uncertainty,
                         uncertainty_samples=uncertainty_samples)
    except ValueError as exc:
        raise UserError(f"{image}: {exc}") from exc
    write_enhanced_fits(out, result, header, overwrite=overwrite)
    if png:
        write_comparison_png(png, counts * (mask if mask is not None else 1.0), exposure_s,
                             result, stretch=result.attrs["stretch"], title=Path(image).name)
    a = result.attrs
    mism = (f" (MISMATCH: trained for {a['trained_clamp']})" if a.get("clamp_mismatch")
            else "")
    click.echo(f"{out}: {a['model']} ({a['model_kind']}) clamp {a['clamp_mode']} "
               f"{a['clamp_value']:.4g}{mism}, stretch {a['stretch']}, "
               f"{result.counts.sum():.1f} counts for {result.exposure_s / 1000:.0f} ks, "
               f"restored {a['restored_pixels']} pixels")
    if result.uncertainty is not None:
        z = result.significance()[np.asarray(result.mask, dtype=bool)]
        click.echo(f"  uncertainty: {a.get('uncertainty_method')} x"
                   f"{a.get('uncertainty_n_samples')}, calibration "
                   f"{a.get('uncertainty_calibration')}; median output/sigma "
                   f"{float(np.median(z)) if z.size else float('nan'):.2f}")


@click.group("model")
def model() -> None:
    """List, inspect, register and export the enhancement models."""


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def model_list(as_json: bool) -> None:
    """List the registered weights, the clamp mode each was trained for, and which version
    each alias resolves to per clamp mode."""
    from xsa_enhance.models.registry import list_models

    entries = list_models()
    # alias -> {family: newest version trained for it}
    aliases: dict[str, dict[str, int]] = {}
    for e in entries:
        fam = aliases.setdefault(e.name, {})
        fam[e.clamp_family] = max(fam.get(e.clamp_family, 0), e.version)
    if as_json:
        docs = []
        for e in entries:
            doc = e.as_dict()
            doc["id"] = e.id
            doc["clamp_family"] = e.clamp_family
            doc["alias_for"] = ([e.clamp_family] if aliases[e.name][e.clamp_family] == e.version
                                else [])
            docs.append(doc)
        click.echo(json.dumps(docs, indent=2))
        return
    if not entries:
        click.echo("no registered weights (train and register them, or pass a .pt path)")
        return
    for e in entries:
        trained = str(e.config.get("clamp") or "constant")
        tag = (f" (= {e.name} --clamp {e.clamp_family})"
               if aliases[e.name][e.clamp_family] == e.version else "")
        summary = str(e.card.get("summary", e.card.get("description", "")))[:50]
        click.echo(f"{e.id:<24} {e.kind:<3} clamp {trained:<16} {e.sha256[:12]}  "
                   f"{e.file}{tag}  {summary}")
    click.echo("")
    click.echo("aliases (newest weights per clamp mode; other modes are refused):")
    for name in sorted(aliases):
        per = ", ".join(f"{fam} -> {name}-v{v}" for fam, v in sorted(aliases[name].items()))
        click.echo(f"  {name}: {per}")


@model.command("show")
@click.argument("name")
@click.option("--clamp", default=None,
              help="For an alias: show the weights it resolves to for this clamp mode "
                   "[constant].")
def model_show(name: str, clamp: str | None) -> None:
    """Print the registry entry (config and model card) of NAME as JSON."""
    from xsa_enhance.models.registry import resolve_model

    click.echo(json.dumps(resolve_model(name, clamp=clamp).as_dict(), indent=2))


@model.command("register")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="NAME (next version) or NAME-vN.")
@click.option("--kind", type=click.Choice(["sr", "dn"]), required=True)
def model_register(path: str, name: str, kind: str) -> None:
    """Copy weights written by save_weights into the registry."""
    from xsa_enhance.models.registry import register_weights

    entry = register_weights(path, name=name, kind=kind)
    click.echo(f"registered {entry.id} ({entry.sha256})")


@model.command("export-onnx")
@click.argument("name")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare onnxruntime with PyTorch on a random image.")
def model_export_onnx(name: str, out: str, check: bool) -> None:
    """Export model NAME (registered name or .pt path) to ONNX."""
    import torch

    from xsa_enhance.models.onnx_backend import OnnxNetwork, export_onnx
    from xsa_enhance.models.registry import load_model

    loaded = load_model(name)
    export_onnx(loaded, out)
    msg = f"wrote {out}"
    if check:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(1, int(loaded.network.in_channels), 96, 96, generator=gen)
        with torch.inference_mode():
            ref = loaded.network(x)
        got = OnnxNetwork(out)(x)
        diff = float((ref - got).abs().max())
        if diff > 1e-4:
            raise UserError(f"{out}: onnxruntime differs from PyTorch by {diff:.2e} (> 1e-4)")
        msg += f" (max |onnx - torch| = {diff:.1e})"
    click.echo(msg)
