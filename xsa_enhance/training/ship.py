"""The one-command recipe that makes the shipped models ``xmm-superres-v1`` / ``xmm-denoise-v1``.

``xsa-enhance ship-models --out WORK_DIR`` (or ``python -m xsa_enhance.training.ship --out
WORK_DIR``, the same command) runs every stage in order (:func:`run_recipe`):

1. ``data``: simulator training sets for SR and DN (``--n`` pairs, seed ``--data-seed``) and
   held-out test sets made with another seed (``--test-n``, seed ``--test-seed``);
2. ``train``: the ``small`` preset for SR and DN, side by side in two processes with one
   torch thread each, ``--minutes`` wall-clock limit each (best validation checkpoint kept);
3. ``anneal`` (only with ``--anneal-minutes`` > 0): a second phase from each run's best
   weights at ``--anneal-lr``, into ``WORK_DIR/anneal_sr``, ``anneal_dn``;
4. ``register``: weight files (of the anneal run when there was one) through :func:`xsa_enhance.models.registry.save_weights` and
   :func:`~xsa_enhance.models.registry.register_weights` as ``xmm-superres-v1`` and
   ``xmm-denoise-v1`` (into ``--registry-dir``, default the package's ``weights`` folder);
5. ``evaluate``: :func:`xsa_enhance.training.evaluate.evaluate` of both on the held-out test
   sets and the SR PSF / deblending test, into ``WORK_DIR/eval_sr``, ``eval_dn``, ``psf``.

Later rounds: ``--version v3 --preset small-v3 --init-from v2 --points --target-noise none
--seed 3 --minutes 60``; ``--version v4 --kinds sr --preset small-v4 --init-from v3 --points
--target-noise none --seed 5 --minutes 68``; ``--version v5 --kinds sr --preset small-v4
--init-from v4 --points --target-noise none --seed 6 --minutes 62`` on simulator revision 2
(see docs/models.md). The clamp-matched round (``xmm-superres-v6``/``-v7``, ``xmm-denoise-v4``/
``-v5``) ran ``xsa-enhance train`` with the ``small-v4-quantile``/``-none`` and
``small-v3-quantile``/``-none`` presets in two phases and registered each run with
:func:`register_run` (the commands are in docs/models.md). Round 5 (``xmm-denoise-v6``)
continued the quantile DN with the ``small-v3-quantile-bright`` preset and registered it the same
way; its SR candidates (``*-bright`` presets) were not shipped.

``--stages data,train`` runs a subset (each stage reads what the previous wrote in WORK_DIR).
Everything is seeded; on the same hardware the run is repeatable up to the wall-clock limit
(the number of steps reached depends on the CPU, see ``train_*/metrics.jsonl``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from xsa_enhance.atomicio import write_text_atomic
from xsa_enhance.errors import ConfigError
from xsa_enhance.logsetup import configure_logging

__all__ = ["NAMES", "STAGES", "ShipOptions", "names_for", "parse_stages", "make_data",
           "train_both", "anneal_both", "register_both", "register_run", "evaluate_both",
           "card_tables", "check_options", "run_recipe", "ship_models_cmd"]

logger = logging.getLogger(__name__)

#: Shipped model names per kind (first round; see :func:`names_for` for later ones).
NAMES: dict[str, str] = {"sr": "xmm-superres-v1", "dn": "xmm-denoise-v1"}


def names_for(version: str = "v1") -> dict[str, str]:
    """Registry names of a training round, e.g. ``names_for("v2")["sr"] == "xmm-superres-v2"``."""
    if not version or not version.startswith("v") or not version[1:].isdigit():
        raise ConfigError(f"model version must look like 'v2', got {version!r}")
    return {"sr": f"xmm-superres-{version}", "dn": f"xmm-denoise-{version}"}

STAGES = ("data", "train", "anneal", "register", "evaluate", "card")


def _store(work: Path, kind: str, role: str) -> Path:
    return work / f"{role}_{kind}.zarr"


def make_data(work: Path, *, n: int, seed: int, test_n: int, test_seed: int,
              kinds: tuple[str, ...] = ("sr", "dn"), points: bool = False,
              target_noise: str = "poisson") -> dict[str, Any]:
    """Write the training and held-out test sets; returns their paths and timings.

    ``points`` and ``target_noise`` apply to the training sets only: the held-out test sets
    always have the paper's three components and Poisson-sampled targets, so figures of every
    training round are measured on the same kind of data.
    """
    from xsa_enhance.simulate.images import COMPONENTS
    from xsa_enhance.simulate.training import write_training_set

    out: dict[str, Any] = {}
    for kind in kinds:
        for role, nn, sd in (("train", n, seed), ("test", test_n, test_seed)):
            path = _store(work, kind, role)
            if path.exists():
                logger.info("%s exists; keeping it", path)
                out[f"{role}_{kind}"] = {"path": str(path), "n": nn, "seed": sd, "reused": True}
                continue
            t0 = time.monotonic()
            extra: dict[str, Any] = {}
            if role == "train":
                extra = {"components": (*COMPONENTS, "points") if points else COMPONENTS,
                         "target_noise": target_noise}
            write_training_set(str(path), kind=kind, n=nn, seed=sd, **extra)
            out[f"{role}_{kind}"] = {"path": str(path), "n": nn, "seed": sd,
                                     "wall_s": round(time.monotonic() - t0, 1),
                                     **{k: list(v) if isinstance(v, tuple) else v
                                        for k, v in extra.items()}}
            logger.info("wrote %s (%d pairs, seed %d)", path, nn, sd)
    return out


def _train_one(kind: str, work: str, minutes: float, seed: int, preset: str, resume: bool,
               init_weights: str | None = None) -> None:
    import torch

    torch.set_num_threads(1)
    from xsa_enhance.training.train import load_config, train

    configure_logging("INFO")
    cfg = load_config(preset=preset, overrides={
        "kind": kind, "train_set": str(_store(Path(work), kind, "train")),
        "max_minutes": minutes, "seed": seed, "num_threads": 1})
    run = Path(work) / f"train_{kind}"
    res = train(cfg, run, resume=resume and (run / "last.pt").is_file(),
                init_weights=init_weights)
    (run / "result.json").write_text(json.dumps({
        "steps": res.steps_done, "best_step": res.best_step, "best_val_loss": res.best_val_loss,
        "wall_s": res.wall_s, "stopped_by_time": res.stopped_by_time}))


def train_both(work: Path, *, minutes: float, seed: int, preset: str = "small",
               resume: bool = False, kinds: tuple[str, ...] = ("sr", "dn"),
               init_from: str | None = None) -> None:
    """Train the kinds side by side, one process and one torch thread each.

    ``init_from`` (a version such as ``"v2"``) fine-tunes each kind from that round's
    registered model instead of a fresh initialisation.
    """
    inits = names_for(init_from) if init_from else {}
    _side_by_side(_train_one, {k: (k, str(work), minutes, seed, preset, resume, inits.get(k))
                               for k in kinds}, "train")


def _side_by_side(target: Any, args: dict[str, tuple], label: str) -> None:
    """Run ``target(*args[kind])`` for every kind in its own spawned process; wait for all."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=a, name=f"{label}-{k}") for k, a in args.items()]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.name for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{label} failed: {bad}")


def _anneal_one(kind: str, work: str, minutes: float, seed: int, preset: str, lr: float) -> None:
    import torch

    torch.set_num_threads(1)
    from xsa_enhance.training.train import load_config, train

    configure_logging("INFO")
    cfg = load_config(preset=preset, overrides={
        "kind": kind, "train_set": str(_store(Path(work), kind, "train")), "lr": lr,
        "max_minutes": minutes, "seed": seed, "num_threads": 1})
    run = Path(work) / f"anneal_{kind}"
    res = train(cfg, run, init_weights=Path(work) / f"train_{kind}" / "best.pt")
    (run / "result.json").write_text(json.dumps({
        "steps": res.steps_done, "best_step": res.best_step, "best_val_loss": res.best_val_loss,
        "wall_s": res.wall_s, "stopped_by_time": res.stopped_by_time, "lr": lr}))


def anneal_both(work: Path, *, minutes: float, seed: int, preset: str, lr: float,
                kinds: tuple[str, ...] = ("sr", "dn")) -> None:
    """Second phase at a lower learning rate, from each ``train_KIND/best.pt``, side by side.

    Runs into ``WORK/anneal_KIND`` (seed ``seed``, so other validation crops than the first
    phase's); :func:`register_both` then takes that run's best weights.
    """
    _side_by_side(_anneal_one, {k: (k, str(work), minutes, seed, preset, lr) for k in kinds},
                  "anneal")


def _final_run(work: Path, kind: str) -> Path:
    """The run whose best weights are shipped: the anneal phase when there was one."""
    anneal = work / f"anneal_{kind}"
    return anneal if (anneal / "best.pt").is_file() else work / f"train_{kind}"


def _simulator_revision(store: Path) -> int | None:
    """Simulator revision of a training set; None when the store is not there."""
    if not (store / "zarr.json").is_file():
        return None
    from xsa_enhance.simulate.training import open_training_set

    return open_training_set(store).simulator_revision


#: The caveat on clamping, per clamp mode the weights are trained for.
_CLAMP_CAVEATS: dict[str, str] = {
    "constant": "constant clamping loses bright-source structure above the clamp (flux is "
                "restored at input resolution by the inference engine)",
    "quantile": "quantile clamping normalises each image by its own 0.9999 quantile: structure "
                "above it is restored at input resolution, and how faint emission is rendered "
                "depends on the brightest pixels of the frame",
    "none": "no clamp: high-dynamic-range normalisation (hdr stretch, ceiling 2 counts/s per "
            "pixel); bright cores are enhanced by the network, which saw few cores as bright as "
            "real cluster centres in training",
}


def _card(kind: str, work: Path, extra: dict[str, Any] | None = None, *,
          run: Path | None = None, clamp: str = "constant") -> dict[str, Any]:
    import torch

    from xsa_enhance._version import __version__
    from xsa_enhance.models.normalise import ClampSpec

    run = run if run is not None else work / f"train_{kind}"
    result = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else {}
    anneal = work / f"anneal_{kind}" / "result.json"
    if anneal.is_file():
        result = {**result, "anneal": json.loads(anneal.read_text())}
    mode = ClampSpec.parse(clamp).mode
    card = {
        "summary": ("XMM-SuperRes: 20 ks EPIC-pn 0.5-2 keV image -> 2x finer grid, 100 ks, "
                    "background-free" if kind == "sr" else
                    "XMM-DeNoise: 20 ks EPIC-pn 0.5-2 keV image -> 50 ks equivalent, same grid"),
        "trained_on": "simulations only (xsa_enhance.simulate.training), see docs/models.md",
        "simulator_revision": _simulator_revision(_store(work, kind, "train")),
        "software_version": __version__,
        "compute": {"device": "cpu", "torch_threads": 1, "torch": torch.__version__,
                    "machine": platform.machine(), "cpu_count": os.cpu_count(), **result},
        "caveats": [
            "outputs can contain hallucinated or suppressed features",
            _CLAMP_CAVEATS[mode],
            "EPIC-pn, 0.5-2 keV, full frame, ~20 ks inputs only",
            "trained on simulations only; small CPU-trained model, not the paper's size",
        ],
        "docs": "docs/models.md",
        "trained_clamp": str(ClampSpec.parse(clamp)),
    }
    card.update(extra or {})
    return card


def register_run(run: Path, *, kind: str, name: str, registry_dir: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export and register the best weights of one training run directory (any clamp mode).

    The run's ``config.yaml`` gives the clamp mode, training set and stretch; the model card
    records the clamp mode the weights are trained for (``trained_clamp``), the run's result
    (``result.json`` when present, else the last validation line of ``metrics.jsonl``) and
    ``extra``.
    """
    import yaml

    from xsa_enhance.models.registry import register_weights
    from xsa_enhance.training.train import export_weights

    run = Path(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    if not (run / "result.json").is_file() and (run / "metrics.jsonl").is_file():
        vals = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()
                if ln.strip() and '"val"' in ln]
        best = min(vals, key=lambda r: r["val_loss"]) if vals else {}
        (run / "result.json").write_text(json.dumps({
            "steps": vals[-1]["step"] if vals else 0, "best_step": best.get("step"),
            "best_val_loss": best.get("val_loss"),
            "wall_s": vals[-1].get("elapsed_s") if vals else None}))
    card = _card(kind, run.parent, extra, run=run, clamp=str(cfg.get("clamp", "constant")))
    card["simulator_revision"] = _simulator_revision(Path(cfg.get("train_set", "")))
    path = run / f"{name}.pt"
    sha = export_weights(run, path, name=name, card=card)
    entry = register_weights(path, name=name, kind=kind, registry_dir=registry_dir)
    logger.info("registered %s (clamp %s)", entry.id, card["trained_clamp"])
    return {"id": entry.id, "sha256": entry.sha256, "file": entry.file,
            "exported_sha256": sha, "size_bytes": path.stat().st_size}


def register_both(work: Path, *, registry_dir: str | None = None,
                  kinds: tuple[str, ...] = ("sr", "dn"),
                  names: dict[str, str] | None = None) -> dict[str, Any]:
    """Export the best weights of each run and register them under ``names`` (:data:`NAMES`)."""
    names = names or NAMES
    from xsa_enhance.models.registry import register_weights
    from xsa_enhance.training.train import export_weights

    out: dict[str, Any] = {}
    for kind in kinds:
        name = names[kind]
        path = work / f"{name}.pt"
        sha = export_weights(_final_run(work, kind), path, name=name, card=_card(kind, work))
        entry = register_weights(path, name=name, kind=kind, registry_dir=registry_dir)
        out[kind] = {"id": entry.id, "sha256": entry.sha256, "file": entry.file,
                     "exported_sha256": sha, "size_bytes": path.stat().st_size}
        logger.info("registered %s", entry.id)
    return out


def evaluate_both(work: Path, *, n_images: int, seed: int, registry_dir: str | None = None,
                  kinds: tuple[str, ...] = ("sr", "dn"), psf: bool = True,
                  names: dict[str, str] | None = None) -> dict[str, Any]:
    """Evaluate the registered models on the held-out sets (and the SR PSF test)."""
    names = names or NAMES
    from xsa_enhance.models.registry import load_model
    from xsa_enhance.training.evaluate import evaluate
    from xsa_enhance.training.psf_test import run_psf_test

    out: dict[str, Any] = {}
    for kind in kinds:
        model = load_model(names[kind], registry_dir=registry_dir)
        rep = evaluate(model, _store(work, kind, "test"), work / f"eval_{kind}",
                       split="test", n_images=n_images, seed=seed)
        out[kind] = {"methods": rep.methods, "targets": rep.targets}
        if kind == "sr" and psf:
            res = run_psf_test(model, work / "psf", seed=seed)
            out["psf"] = res.summary()
    return out


def card_tables(work: Path, *, names: dict[str, str] | None = None) -> str:
    """Markdown tables for ``docs/models.md`` from the evaluation files in ``work``."""
    model_names = names or NAMES
    from xsa_enhance.training.evaluate import REFERENCE
    from xsa_enhance.training.metrics import HIGHER_IS_BETTER, METRICS

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "n/a"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"

    lines: list[str] = []
    for kind in ("sr", "dn"):
        fj = work / f"eval_{kind}" / "figures.json"
        if not fj.is_file():
            continue
        figs = json.loads(fj.read_text())
        meth = figs["methods"]
        names = list(meth)
        meta = figs["meta"]
        lines += [f"### {model_names[kind]}: held-out test set", "",
                  f"{meta['n_images']} images from split `{meta['split']}` of "
                  f"`{Path(meta['test_set']).name}` (combination seed {meta['seed']}); "
                  "mean over images (std in `figures.json`).", "",
                  "| metric | " + " | ".join(names) + " | ref. input | ref. model |",
                  "|---" * (len(names) + 3) + "|"]
        ref = REFERENCE[kind]
        for m in METRICS:
            arrow = "up" if m in HIGHER_IS_BETTER else "down"
            row = [fmt(meth[n].get(m)) for n in names]
            lines.append(f"| {m} ({arrow}) | " + " | ".join(row) + f" | "
                         f"{fmt(ref['input'].get(m))} | {fmt(ref['model'].get(m))} |")
        med = meta.get("median", {})
        if med:
            lines.append("| psnr, median over images | " + " | ".join(
                fmt(med[n]["psnr"]) for n in names) + " | | |")
            lines.append("| ms_ssim, median over images | " + " | ".join(
                fmt(med[n]["ms_ssim"]) for n in names) + " | | |")
        wins = meta.get("model_psnr_win_fraction", {})
        if wins:
            lines += ["", "Fraction of test images on which the model's PSNR beats: " + ", ".join(
                f"{k} {v:.2f}" for k, v in wins.items()) + "."]
        lines += ["", "| region | method | L1 | PSNR | bias |", "|---|---|---|---|---|"]
        for reg in ("background", "faint_extended", "point_sources"):
            for n in names:
                r = figs["regions"][n][reg]
                lines.append(f"| {reg} | {n} | {fmt(r['l1'])} | {fmt(r['psnr'])} | "
                             f"{r['bias']:.2e} |")
        lines += ["", "| target | measured | result |", "|---|---|---|"]
        for name, chk in figs["targets"].items():
            val = chk["value"]
            if isinstance(val, dict):
                val = ", ".join(k for k, ok in val.items() if not ok) or "all improved"
                val = f"not improved: {val}" if val != "all improved" else val
            else:
                val = f"{val:+.3f}"
            lines.append(f"| {name} | {val} | {'PASS' if chk['passed'] else 'MISS'} |")
        lines.append("")
    pj = work / "psf" / "psf_test.md"
    if pj.is_file():
        lines += [f"### PSF and deblending test ({model_names['sr']})", ""]
        lines += [ln for ln in pj.read_text().splitlines()[1:] if not ln.startswith("![")]
    return "\n".join(lines) + "\n"


@dataclass
class ShipOptions:
    """Options of the recipe (the ``xsa-enhance ship-models`` options; defaults are these).

    Attributes
    ----------
    stages, kinds : str
        Comma-separated subsets of :data:`STAGES` and of ``sr,dn``.
    n, data_seed, test_n, test_seed : int
        Training pairs per kind and their seed; pairs in the held-out store and their seed.
    minutes, seed, preset, resume :
        Training wall-clock limit, seed and preset; continue from ``train_KIND/last.pt``.
    eval_images, eval_seed : int
        Test images evaluated and the seed of their combinations.
    registry_dir : str or None
        Registry the weights go to (default: the package's ``weights`` folder).
    version : str
        Model version in the registered names (``xmm-superres-VERSION``).
    points : bool
        Training sets with the bright point-source component.
    target_noise : {"poisson", "none"}
        Training-set targets: Poisson-sampled or expected counts.
    anneal_minutes, anneal_lr : float
        Wall-clock limit (0: no anneal stage) and learning rate of the anneal stage (seed:
        ``seed + 1``).
    init_from : str or None
        Fine-tune from this round's registered models (e.g. ``v2``).
    """

    stages: str = ",".join(STAGES)
    kinds: str = "sr,dn"
    n: int = 400
    data_seed: int = 1
    test_n: int = 100
    test_seed: int = 2
    minutes: float = 45.0
    seed: int = 1
    preset: str = "small"
    resume: bool = False
    eval_images: int = 12
    eval_seed: int = 0
    registry_dir: str | None = None
    version: str = "v1"
    points: bool = False
    target_noise: str = "poisson"
    anneal_minutes: float = 0.0
    anneal_lr: float = 5e-5
    init_from: str | None = None


def parse_stages(text: str) -> list[str]:
    """The stages of a comma-separated list, in the order given.

    Raises
    ------
    ConfigError
        A name that is not one of :data:`STAGES`.
    """
    stages = [s for s in text.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; choose from {','.join(STAGES)}")
    return stages


def check_options(options: ShipOptions) -> tuple[list[str], tuple[str, ...], dict[str, str]]:
    """Check the options before anything is written.

    Returns
    -------
    (stages, kinds, names)
        The stages to run, the model kinds and the registry names of ``options.version``.

    Raises
    ------
    ConfigError
        An unknown stage or kind, or a malformed version (``--version``, ``--init-from``).
    """
    stages = parse_stages(options.stages)
    kinds = tuple(k for k in options.kinds.split(",") if k)
    unknown = sorted(set(kinds) - {"sr", "dn"})
    if unknown or not kinds:
        raise ConfigError(f"--kinds must name sr and/or dn, got {options.kinds!r}")
    names = names_for(options.version)
    if options.init_from:
        names_for(options.init_from)
    return stages, kinds, names


def run_recipe(work: Path, options: ShipOptions) -> dict[str, Any]:
    """Run the recipe's stages in order in the work directory ``work`` (created).

    Each stage reads what the previous ones wrote in ``work``; ``ship_summary.json`` there
    collects the options and what every stage reported (stages run before are kept).

    Parameters
    ----------
    work : Path
        The work directory.
    options : ShipOptions
        What to run.

    Returns
    -------
    dict
        The summary written to ``ship_summary.json``.

    Raises
    ------
    ConfigError
        An unknown stage or a malformed version.
    """
    o = options
    stages, kinds, names = check_options(o)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    summary_path = work / "ship_summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["args"] = {"out": str(work), **asdict(o)}
    if "data" in stages:
        summary["data"] = make_data(work, n=o.n, seed=o.data_seed, test_n=o.test_n,
                                    test_seed=o.test_seed, kinds=kinds,
                                    points=o.points, target_noise=o.target_noise)
    if "train" in stages:
        train_both(work, minutes=o.minutes, seed=o.seed, preset=o.preset,
                   resume=o.resume, kinds=kinds, init_from=o.init_from)
    if "anneal" in stages and o.anneal_minutes > 0:
        anneal_both(work, minutes=o.anneal_minutes, seed=o.seed + 1, preset=o.preset,
                    lr=o.anneal_lr, kinds=kinds)
    if "register" in stages:
        summary["registered"] = register_both(work, registry_dir=o.registry_dir, kinds=kinds,
                                              names=names)
    if "evaluate" in stages:
        summary["evaluation"] = evaluate_both(work, n_images=o.eval_images, seed=o.eval_seed,
                                              registry_dir=o.registry_dir, kinds=kinds,
                                              names=names)
    if "card" in stages:
        write_text_atomic(work / "model_card_tables.md", card_tables(work, names=names))
    write_text_atomic(summary_path, json.dumps(summary, indent=1, default=str))
    return summary


# The recipe's defaults are those of ShipOptions.
@click.command("ship-models")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Work directory (training sets, runs, evaluation, ship_summary.json).")
@click.option("--stages", default=ShipOptions.stages, show_default=True,
              help="Comma-separated subset of the stages, run in the recipe's order.")
@click.option("--kinds", default=ShipOptions.kinds, show_default=True)
@click.option("--n", type=int, default=ShipOptions.n, show_default=True,
              help="Training pairs per kind.")
@click.option("--data-seed", type=int, default=ShipOptions.data_seed, show_default=True)
@click.option("--test-n", type=int, default=ShipOptions.test_n, show_default=True,
              help="Pairs in the held-out store.")
@click.option("--test-seed", type=int, default=ShipOptions.test_seed, show_default=True)
@click.option("--minutes", type=float, default=ShipOptions.minutes, show_default=True,
              help="Training wall-clock limit.")
@click.option("--seed", type=int, default=ShipOptions.seed, show_default=True, help="Training seed.")
@click.option("--preset", default=ShipOptions.preset, show_default=True)
@click.option("--resume", is_flag=True)
@click.option("--eval-images", type=int, default=ShipOptions.eval_images, show_default=True)
@click.option("--eval-seed", type=int, default=ShipOptions.eval_seed, show_default=True)
@click.option("--registry-dir", default=ShipOptions.registry_dir)
@click.option("--version", default=ShipOptions.version, show_default=True,
              help="Model version in the registered names (xmm-superres-VERSION).")
@click.option("--points", is_flag=True,
              help="Training sets with the bright point-source component.")
@click.option("--target-noise", type=click.Choice(["poisson", "none"]),
              default=ShipOptions.target_noise, show_default=True,
              help="Training-set targets: Poisson-sampled or expected counts.")
@click.option("--anneal-minutes", type=float, default=ShipOptions.anneal_minutes, show_default=True,
              help="Wall-clock limit of the anneal stage (0: no anneal stage).")
@click.option("--anneal-lr", type=float, default=ShipOptions.anneal_lr, show_default=True,
              help="Learning rate of the anneal stage (seed: --seed + 1).")
@click.option("--init-from", default=ShipOptions.init_from,
              help="Fine-tune from this round's registered models (e.g. v2).")
def ship_models_cmd(out: str, **options: Any) -> None:
    """Make the shipped models: data, train, anneal, register, evaluate, card.

    Each stage reads what the previous ones wrote in OUT; see docs/models.md.
    """
    opts = ShipOptions(**options)
    try:
        check_options(opts)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    run_recipe(Path(out), opts)


if __name__ == "__main__":  # pragma: no cover - ``python -m xsa_enhance.training.ship``
    configure_logging("INFO")
    ship_models_cmd.main(prog_name="python -m xsa_enhance.training.ship")
