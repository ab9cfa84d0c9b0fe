"""``xsa-enhance train``, ``evaluate``, ``psf-test``, ``flux-test`` and ``ship-models``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from xsa_enhance.cli.common import UserError
from xsa_enhance.training.presets import preset_names
# The shipping recipe defines its own click command (it is also ``python -m
# xsa_enhance.training.ship``); it is registered here with the other training commands.
from xsa_enhance.training.ship import ship_models_cmd

__all__ = ["train_cmd", "evaluate_cmd", "psf_test_cmd", "flux_test_cmd", "ship_models_cmd"]

logger = logging.getLogger(__name__)

#: Shipped training presets (read without importing torch).
PRESETS: tuple[str, ...] = preset_names()


def _echo_progress(desc: str):
    def report(step: int, total: int, figures: dict[str, float]) -> None:
        figs = " ".join(f"{k}={v:.4g}" for k, v in figures.items())
        click.echo(f"{desc}: step {step}/{total} {figs}", err=True)

    return report


@click.command("train")
@click.option("--kind", type=click.Choice(["sr", "dn"]), required=True,
              help="Super-resolution or de-noising model.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Training configuration YAML (keys of TrainConfig; may name a preset).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="Start from a shipped preset (the config file is applied on top).")
@click.option("--train-set", type=click.Path(), default=None,
              help="Training set store from `xsa-enhance simulate training-set`.")
@click.option("--out", "run_dir", type=click.Path(file_okay=False), required=True,
              help="Run directory (checkpoints, metrics.jsonl, loss_curve.png).")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/last.pt.")
@click.option("--init-weights", default=None,
              help="Fine-tune from these weights (file or registered model name).")
@click.option("--steps", type=int, default=None, help="Override the number of steps.")
@click.option("--max-minutes", type=float, default=None, help="Wall-clock limit.")
@click.option("--seed", type=int, default=None, help="Override the seed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
def train_cmd(kind: str, config_path: str | None, preset: str | None, train_set: str | None,
              run_dir: str, resume: bool, init_weights: str | None, steps: int | None,
              max_minutes: float | None, seed: int | None, device: str | None) -> None:
    """Train an SR or DN model (Adam, best-validation checkpoint, resumable)."""
    from xsa_enhance.training.train import load_config, train

    if config_path is None and preset is None:
        raise UserError(f"give --config CONFIG.yaml and/or --preset {'|'.join(PRESETS)}")
    cfg = load_config(config_path, preset=preset, overrides={
        "kind": kind, "train_set": train_set, "steps": steps, "max_minutes": max_minutes,
        "seed": seed, "device": device})
    if not cfg.train_set:
        raise UserError("no training set: give --train-set STORE or train_set in the config")
    result = train(cfg, run_dir, resume=resume, init_weights=init_weights,
                   progress=_echo_progress(f"train {kind}"))
    click.echo(json.dumps({
        "run_dir": str(result.run_dir), "steps": result.steps_done,
        "best_step": result.best_step, "best_val_loss": result.best_val_loss,
        "best_weights": str(result.best_weights), "wall_s": round(result.wall_s, 1),
        "stopped_by_time": result.stopped_by_time}))


@click.command("evaluate")
@click.option("--model", "model_names", multiple=True, required=True,
              help="Registered model name (xmm-superres-v1) or weight file; with --real it may "
                   "be given several times.")
@click.option("--test-set", type=click.Path(), default=None,
              help="Simulator store; use one generated with another seed than training "
                   "(required without --real).")
@click.option("--real", "real_dir", type=click.Path(), default=None,
              help="Real-data folder (20ks/ and full/ counts images): score against the "
                   "independent deep image full - 20ks.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Report folder (report.md, figures.json, panel_*.png).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test",
              show_default=True)
@click.option("--n-images", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--clamp", "clamps", multiple=True,
              help="constant | quantile:Q | none. Simulated: at most one (default: the "
                   "model's). --real: repeatable, every model runs with every clamp (default: "
                   "constant, quantile:0.9999, none).")
@click.option("--obsid", "obsids", multiple=True,
              help="--real: only these observations (repeatable).")
@click.option("--n-peaks", type=int, default=25, show_default=True,
              help="--real: most prominent peaks checked per method and observation.")
@click.option("--empty-field/--no-empty-field", default=True, show_default=True,
              help="--real: also run the simulated empty-field check.")
@click.option("--uncertainty", "uncertainty_samples", type=int, default=0, show_default=True,
              help="--real: also score the peaks with the per-pixel uncertainty from this many "
                   "resamples and report how well it separates confirmed peaks (ROC AUC, "
                   "OUT/uncertainty/); 0: skip.")
@click.option("--psf-test/--no-psf-test", default=False,
              help="Also run the PSF and deblending tests (SR models) into OUT/psf.")
def evaluate_cmd(model_names: tuple[str, ...], test_set: str | None, real_dir: str | None,
                 out_dir: str, split: str, n_images: int, seed: int, clamps: tuple[str, ...],
                 obsids: tuple[str, ...], n_peaks: int, empty_field: bool,
                 uncertainty_samples: int, psf_test: bool) -> None:
    """Score models against their input, classical methods and the reference work.

    Without --real: simulated test images (--test-set). With --real DIR: real 20 ks images
    against the deep image full - 20ks (PSNR, MS-SSIM, flux ratio, peak purity).
    """
    if real_dir is not None:
        if test_set is not None:
            raise UserError("give either --test-set (simulated) or --real DIR, not both")
        _evaluate_real(model_names, real_dir, out_dir, clamps, obsids, n_peaks, empty_field)
        if uncertainty_samples > 0:
            from xsa_enhance.training.real_uncertainty import uncertainty_roc
            from xsa_enhance.training.real_eval import DEFAULT_CLAMPS

            rep = uncertainty_roc(real_dir, [(m, c) for m in dict.fromkeys(model_names)
                                             for c in dict.fromkeys(clamps or DEFAULT_CLAMPS)],
                                  Path(out_dir) / "uncertainty", obsids=obsids or None,
                                  n_peaks=n_peaks, n_samples=uncertainty_samples,
                                  empty_field=empty_field,
                                  progress=lambda t: click.echo(f"uncertainty: {t}", err=True))
            click.echo(json.dumps({"uncertainty_roc": rep["methods"]}, default=str))
        return
    if uncertainty_samples:
        raise UserError("--uncertainty needs --real")
    if test_set is None:
        raise UserError("missing option --test-set (or give --real DIR for real data)")
    if len(model_names) > 1:
        raise UserError("--model may be given only once without --real")
    if len(clamps) > 1:
        raise UserError("--clamp may be given only once without --real")
    if obsids:
        raise UserError("--obsid needs --real")
    model_name = model_names[0]
    clamp = clamps[0] if clamps else None
    from xsa_enhance.cli.common import progress
    from xsa_enhance.training.evaluate import evaluate

    if n_images <= 0:
        raise UserError("--n-images must be positive")
    if not Path(test_set).exists():
        raise UserError(f"{test_set}: no such test set")
    ticks = iter(progress(range(n_images), desc="evaluate"))

    def tick(done: int, total: int) -> None:
        next(ticks, None)

    rep = evaluate(model_name, test_set, out_dir, split=split, n_images=n_images, seed=seed,
                   clamp=clamp, progress=tick)
    for _ in ticks:
        pass
    summary = {m: {k: round(v, 5) for k, v in figs.items()} for m, figs in rep.methods.items()}
    click.echo(json.dumps({"report": str(Path(out_dir) / "report.md"), "methods": summary,
                           "targets": {k: v["passed"] for k, v in rep.targets.items()}}))
    if psf_test:
        from xsa_enhance.training.psf_test import run_psf_test

        res = run_psf_test(model_name, Path(out_dir) / "psf", clamps=(clamp,) if clamp else None)
        click.echo(json.dumps({"psf_test": res.summary()}))


def _evaluate_real(model_names: tuple[str, ...], real_dir: str, out_dir: str,
                   clamps: tuple[str, ...], obsids: tuple[str, ...], n_peaks: int,
                   empty_field: bool) -> None:
    """``evaluate --real``: every model with every clamp on the real observations."""
    import math

    from xsa_enhance.models.normalise import ClampSpec
    from xsa_enhance.training.real_eval import DEFAULT_CLAMPS, evaluate_real

    if n_peaks <= 0:
        raise UserError("--n-peaks must be positive")
    clamps = clamps or DEFAULT_CLAMPS
    for c in clamps:
        ClampSpec.parse(c)  # ConfigError (one line) for a bad spec, before any work
    pairs = [(m, c) for m in dict.fromkeys(model_names) for c in dict.fromkeys(clamps)]

    def tick(done: int, total: int, obsid: str) -> None:
        click.echo(f"evaluate --real: {done}/{total} ({obsid})", err=True)

    rep = evaluate_real(real_dir, pairs, out_dir, obsids=obsids or None, n_peaks=n_peaks,
                        empty_field=empty_field, progress=tick)

    def rnd(v: float) -> float | None:
        return None if not math.isfinite(v) else round(v, 4)

    click.echo(json.dumps({
        "report": str(Path(out_dir) / "report.md"),
        "summary": {c: {m: {k: rnd(figs[k]) for k in ("psnr", "ms_ssim", "flux_ratio",
                                                       "peak_purity")}
                        for m, figs in t.items()} for c, t in rep.summary.items()},
        "empty_field_passed": None if rep.empty_field is None else rep.empty_field.passed}))


def _model_test_options(model_help: str):
    """The options shared by the simulated model tests (psf-test, flux-test)."""
    def apply(fn):
        for opt in reversed([
            click.option("--model", "model_name", required=True, help=model_help),
            click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True),
            click.option("--clamp", "clamps", multiple=True,
                         help="Clamp modes to test (repeatable; default: the one the weights are "
                              "trained for). With an alias each mode runs its matched weights."),
            click.option("--allow-clamp-mismatch", is_flag=True,
                         help="Run explicit weights with clamp modes they were not trained for."),
            click.option("--seed", type=int, default=0, show_default=True),
        ]):
            fn = opt(fn)
        return fn
    return apply


@click.command("psf-test")
@_model_test_options("Registered SR model (alias, NAME-vN) or weight file.")
def psf_test_cmd(model_name: str, out_dir: str, clamps: tuple[str, ...], seed: int,
                 allow_clamp_mismatch: bool) -> None:
    """Point-source PSF test (Gaussian sigma ratios, fluxes) and deblending test."""
    from xsa_enhance.training.psf_test import run_psf_test

    res = run_psf_test(model_name, out_dir, clamps=clamps or None, seed=seed,
                       allow_clamp_mismatch=allow_clamp_mismatch)
    click.echo(json.dumps(res.summary()))


@click.command("flux-test")
@_model_test_options("Registered SR or DN model (alias, NAME-vN) or weight file.")
def flux_test_cmd(model_name: str, out_dir: str, clamps: tuple[str, ...], seed: int,
                  allow_clamp_mismatch: bool) -> None:
    """Bright-source flux test: 300-8,000-count point sources, output / truth flux."""
    from xsa_enhance.training.flux_test import run_flux_test

    res = run_flux_test(model_name, out_dir, clamps=clamps or None, seed=seed,
                        allow_clamp_mismatch=allow_clamp_mismatch)
    click.echo(json.dumps(res.summary()))
