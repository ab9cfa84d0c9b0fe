"""``xsa-enhance enhance`` and ``xsa-enhance model {list,show,register,export-onnx}``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import numpy as np

from xsa_enhance.cli.common import UserError
from xsa_enhance.formats.enhanced_fits import read_counts_fits, write_enhanced_fits
from xsa_enhance.formats.quicklook import write_comparison_png

__all__ = ["enhance_cmd", "model"]

logger = logging.getLogger(__name__)


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
