"""``xsa-enhance detect`` (source catalog of one image) and ``xsa-enhance detect-eval``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import numpy as np

from xsa_enhance.cli.common import UserError

__all__ = ["detect_cmd", "detect_eval_cmd", "write_sources_fits"]

logger = logging.getLogger(__name__)


def write_sources_fits(path: str | Path, table: Any, meta: dict[str, Any], *,
                       overwrite: bool = False) -> None:
    """Write a source table as a FITS binary table ``SOURCES`` with provenance keywords."""
    from astropy.io import fits
    from astropy.table import Table

    from xsa_enhance.errors import InputFileError

    t = Table(table, copy=True)
    t.meta.clear()
    hdu = fits.table_to_hdu(t)
    hdu.name = "SOURCES"
    for key, value in {**table.meta, **meta}.items():
        if value is None:
            continue
        k = str(key).upper()[:8]
        hdu.header[k] = value if isinstance(value, (int, float, bool)) else str(value)[:68]
    try:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=overwrite)
    except OSError as exc:
        raise InputFileError(path, f"cannot write output: {exc}") from exc


@click.command("detect")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", default=None,
              help="Detect on this model's enhanced image (alias, NAME-vN or .pt); the sources "
                   "are measured on IMAGE's counts either way.")
@click.option("--clamp", default=None, help="Clamp mode of the model (see enhance --help).")
@click.option("--allow-clamp-mismatch", is_flag=True,
              help="Run NAME-vN / a .pt file with a clamp mode it was not trained for.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Output FITS table of sources.")
@click.option("--min-signif", type=float, default=None,
              help="Minimum Poisson significance in IMAGE's counts [mode default].")
@click.option("--min-det-signif", type=float, default=None,
              help="Minimum detection score on the model output [mode default].")
@click.option("--uncertainty", is_flag=True,
              help="Estimate the model output's per-pixel uncertainty and flag sources whose "
                   "output excess is below 3 sigma of it (flag 4; about 9x the model cost).")
@click.option("--device", default=None, help="torch device (cpu, cuda...).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def detect_cmd(image: str, model_name: str | None, clamp: str | None,
               allow_clamp_mismatch: bool, out: str, min_signif: float | None,
               min_det_signif: float | None, uncertainty: bool, device: str | None,
               overwrite: bool) -> None:
    """Detect sources on IMAGE (a counts FITS with EXPOSURE) or, with --model, on its
    enhanced image, and measure each on IMAGE's own counts (docs/sources.md)."""
    from xsa_enhance.formats.enhanced_fits import read_counts_fits
    from xsa_enhance.detect.find import config_for_mode, detect_sources, image_sky_wcs

    if Path(out).exists() and not overwrite:
        raise UserError(f"{out} exists (use --overwrite)")
    if clamp is not None and model_name is None:
        raise UserError("--clamp needs --model")
    if uncertainty and model_name is None:
        raise UserError("--uncertainty needs --model")
    counts, exposure_s, mask, header = read_counts_fits(image)
    if mask is None:
        from xsa_enhance.instrument.grid import GRID_1X
        from xsa_enhance.instrument.mask import detector_mask

        mask = detector_mask(GRID_1X) if counts.shape == GRID_1X.shape else np.ones(counts.shape)
    m = np.asarray(mask) > 0
    wcs, wcs_source = image_sky_wcs(header, counts.shape)
    meta: dict[str, Any] = {"IMAGE": Path(image).name, "WCSSRC": wcs_source,
                            "OBS_ID": header.get("OBS_ID")}
    if model_name is None:
        cfg = config_for_mode("input", min_signif=min_signif)
        table = detect_sources(counts, exposure_s, m, config=cfg, wcs=wcs)
        meta.update({"XSAMODEL": "none", "XSACLAMP": "none"})
    else:
        from xsa_enhance.models.inference import enhance
        from xsa_enhance.models.normalise import ClampSpec
        from xsa_enhance.models.registry import load_model

        spec = ClampSpec.parse(clamp) if clamp is not None else None
        model = load_model(model_name, clamp=spec, allow_clamp_mismatch=allow_clamp_mismatch,
                           device=device)
        try:
            res = enhance(counts, exposure_s, m, model, clamp=spec,
                          allow_clamp_mismatch=allow_clamp_mismatch, uncertainty=uncertainty)
        except ValueError as exc:
            raise UserError(f"{image}: {exc}") from exc
        cfg = config_for_mode(model.kind, min_signif=min_signif, min_det_signif=min_det_signif)
        table = detect_sources(counts, exposure_s, m, config=cfg, detection_image=res.counts,
                               detection_exposure_s=res.exposure_s,
                               detection_factor=int(res.attrs["factor"]),
                               background_free=model.kind == "sr", restored=res.restored,
                               uncertainty=res.uncertainty, wcs=wcs)
        meta.update({"XSAMODEL": model.name, "XSAKIND": model.kind,
                     "XSACLAMP": str(res.attrs["clamp_mode"]),
                     "XSASHA": str(model.sha256)[:68]})
    write_sources_fits(out, table, meta, overwrite=overwrite)
    n_flag = int(np.count_nonzero(np.asarray(table["FLAGS"]) > 0)) if len(table) else 0
    sky = "" if wcs is not None else " (no sky WCS: RA/DEC are NaN)"
    click.echo(f"{out}: {len(table)} sources (SIGNIF >= {cfg.min_signif:g}"
               + (f", DET_SIGNIF >= {cfg.min_det_signif:g}" if model_name else "")
               + f"), {n_flag} flagged{sky}")


@click.command("detect-eval")
@click.option("--real", "real_dir", type=click.Path(file_okay=False), default=None,
              help="Real-data folder with 20ks/ and full/ (shared/data/xmm-real layout).")
@click.option("--obsid", "obsids", multiple=True, help="Only these real observations.")
@click.option("--clamp", "clamps", multiple=True,
              help="Clamp modes of the DN and SR models (repeatable) [constant].")
@click.option("--fields", "n_fields", type=click.IntRange(min=1), default=8, show_default=True,
              help="Simulated fields (60 point sources each).")
@click.option("--seed", type=int, default=1000, show_default=True)
@click.option("--extended", "n_extended", type=click.IntRange(min=0), default=1,
              show_default=True,
              help="Extended sources per simulated field; detections on them are judged by an "
                   "independent deep image, as on real data.")
@click.option("--no-simulation", is_flag=True, help="Real observations only.")
@click.option("--sweep", is_flag=True,
              help="Also sweep smoothing and thresholds on 6 simulated fields and print the "
                   "setting each mode's default should be (most sources found at purity >= "
                   "0.99).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for sources_eval.{md,json} and sources_completeness.png.")
def detect_eval_cmd(real_dir: str | None, obsids: tuple[str, ...], clamps: tuple[str, ...],
                    n_fields: int, seed: int, n_extended: int, no_simulation: bool,
                    sweep: bool, out_dir: str) -> None:
    """Completeness and purity of source detection: simulated fields with known sources
    (input, DN and SR detection) and, with --real, purity against the deep image."""
    from xsa_enhance.detect.validate import default_modes, detect_eval, sweep_thresholds

    if no_simulation and real_dir is None:
        raise UserError("--no-simulation needs --real DIR")
    clamps = clamps or ("constant",)
    if sweep:
        res = sweep_thresholds(default_modes(clamps), n_fields=min(n_fields, 6), seed=seed,
                               n_extended=n_extended)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "sources_sweep.json").write_text(json.dumps(res, indent=1) + "\n")
        for label, r in res.items():
            click.echo(f"sweep {label}: chosen (smooth_px, SIGNIF, DET_SIGNIF, detected, true, "
                       f"purity, sources found) = {r['chosen']}")
    result = detect_eval(out_dir, real_dir=real_dir, clamps=clamps, n_fields=n_fields,
                         seed=seed, obsids=list(obsids) or None, simulate=not no_simulation,
                         n_extended=n_extended)
    if result["simulated"]:
        for label, r in result["simulated"]["modes"].items():
            click.echo(f"simulated {label}: purity {r['purity']:.3f}, completeness "
                       f"{r['completeness_all']:.3f} ({r['n_true_detections']}/"
                       f"{r['n_detected']} true)")
    if result["real"]:
        for label, t in result["real"]["totals"].items():
            click.echo(f"real {label}: {t['n_confirmed']}/{t['n_detected']} confirmed, purity "
                       f"{t['purity']:.3f}, x{t['ratio_to_input']:.2f} of input, median "
                       f"position error {t['median_position_error_arcsec']:.2f}\"")
    click.echo("wrote " + ", ".join(result["files"]))
