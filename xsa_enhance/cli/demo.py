"""``xsa-enhance demo``: the whole system end to end on the embedded default."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

__all__ = ["demo_cmd", "demo_models"]

logger = logging.getLogger(__name__)

_PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"
#: The aliases: for each clamp mode, the newest weights trained for it.
_PREFERRED = ("xmm-superres", "xmm-denoise")
_DEMO_FALLBACK: dict[str, Any] = {
    "kind": "pipeline",
    "name": "demo",
    "archive": {"retries": 1, "backoff_s": 0.5, "timeout_s": 60},
    "selection": {"min_duration_ks": 20},
    "events": {"slice_lengths_ks": "all", "include_full": True},
    "enhance": {"models": list(_PREFERRED), "clamps": ["constant", "quantile:0.9999"],
                "slice_lengths_ks": [20], "torch_threads": 1, "uncertainty_samples": 2},
    "executor": {"kind": "local", "workers": 2, "threads_per_worker": 1, "memory_limit": "3GiB"},
}


def demo_models() -> tuple[list[str], str]:
    """Models for the demo: the trained aliases if registered, else the registry's names.

    Every name returned is an alias: the run resolves it, for each clamp mode, to the newest
    weights trained for that mode (a mode without weights stops the run with one line).

    Returns
    -------
    names : list of str
        Registry aliases to use (empty when nothing is installed).
    note : str
        What was chosen, in words.
    """
    from xsa_enhance.models.registry import list_models

    entries = list_models()
    names = sorted({e.name for e in entries})
    preferred = [m for m in _PREFERRED if m in names]
    if preferred:
        return preferred, ("using the trained models " + ", ".join(preferred)
                           + " (weights matched to each clamp mode)")
    if names:
        return names, ("xmm-superres / xmm-denoise are not installed; using the registered "
                       "models " + ", ".join(names))
    return [], ""


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-output"), show_default=True, help="Output folder.")
@click.option("--observations", "n_obs", type=click.IntRange(3, 40), default=6, show_default=True,
              help="Simulated observations in the local archive (the first six include one "
                   "failing and two skipped ones).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="LocalCluster workers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Simulation seed.")
@click.option("--in-process", "in_process", is_flag=True, help="No Dask (debugging).")
def demo_cmd(out_dir: Path, n_obs: int, workers: int, seed: int, in_process: bool) -> None:
    """Run the whole pipeline against a local simulated archive into OUT/store.zarr.

    Starts the local XSA stand-in with a handful of simulated EPIC-pn observations
    (including ones the selection skips and one whose event list is corrupt), runs the
    pipeline through astroquery on a Dask LocalCluster, prints the run summary and a catalog
    query, and writes quicklook PNGs to OUT/quicklooks.
    """
    from xsa_enhance.cli.run import ProgressPrinter, _print_dashboard, quiet_dask_logs
    from xsa_enhance.pipeline import PipelineConfig, load_pipeline, run_pipeline
    from xsa_enhance.standin import LocalArchive
    from xsa_enhance.store import ProductStore
    from xsa_enhance.store.export import export_png
    from xsa_enhance.store.query import format_table, query_catalog

    t0 = time.perf_counter()
    quiet_dask_logs()
    out_dir.mkdir(parents=True, exist_ok=True)
    models, model_note = demo_models()
    if not models:
        click.echo(
            "NOTE: no trained model is installed (the model registry is empty): the demo "
            "writes the un-enhanced slice images only. Install weights with "
            "`xsa-enhance model register` and run it again for the enhanced products.",
            err=True,
        )
    else:
        click.echo(model_note, err=True)
    if _PIPELINE.is_file():
        base = load_pipeline(_PIPELINE)
    else:  # an installed package without the checkout: the same settings as pipelines/demo.yaml
        base = PipelineConfig.from_dict(_DEMO_FALLBACK)
    click.echo(f"starting the local archive with {n_obs} simulated observations "
               f"(first start simulates their event lists) ...", err=True)
    with LocalArchive(out_dir / "archive", n_observations=n_obs, seed=seed) as archive:
        config = base.with_overrides(
            store=str(out_dir / "store.zarr"),
            work_dir=str(out_dir / "work"),
            archive={"tap_url": archive.tap_url, "aio_url": archive.aio_url},
            enhance={"models": tuple(models)},
            executor={"kind": "inprocess"} if in_process else {"kind": "local", "workers": workers},
        )
        if not models:
            config = config.with_overrides(enhance={"models": ()})
        click.echo(f"local archive: TAP {archive.tap_url}  AIO {archive.aio_url}", err=True)
        expected = {o.obsid: o.expected for o in archive.observations}
        printer = ProgressPrinter()
        try:
            summary = run_pipeline(config, progress=printer, on_executor=_print_dashboard)
        finally:
            printer.close()

    click.echo("")
    click.echo("== run summary ==")
    click.echo(summary.format())
    click.echo("")
    click.echo("== what the local archive planned for each observation ==")
    for obsid, exp in sorted(expected.items()):
        got = next((o for o in summary.outcomes if o["obsid"] == obsid), None)
        click.echo(f"  {obsid}  expected {exp:<45} got {got['status'] if got else 'not seen'}")

    store = ProductStore(config.store, mode="r")
    which = "products" if store.catalog("products").nrows else "slices"
    table = query_catalog(store, catalog=which)
    # rates (counts/s) compare inputs and outputs; the counts refer to different exposures
    keep = [c for c in ("obsid", "slice_id", "length_ks", "model", "clamp_mode", "exposure",
                        "counts", "input_rate", "output_rate", "output_exposure",
                        "output_background", "ra_pnt", "dec_pnt")
            if c in table.colnames]
    click.echo("")
    click.echo(f"== xsa-enhance catalog query --store {config.store} --catalog {which} ==")
    click.echo(format_table(table[keep], "table"), nl=False)
    sources = query_catalog(store, catalog="sources", min_signif=5.0)
    sources.sort("signif", reverse=True)
    cols = ["obsid", "slice_id", "model", "source_id", "ra", "dec", "rate", "signif", "flags"]
    click.echo("")
    click.echo(f"== xsa-enhance catalog query --store {config.store} --catalog sources "
               f"--min-signif 5 == ({len(sources)} rows, the 10 most significant)")
    click.echo(format_table(sources[cols][:10], "table"), nl=False)

    pngs: list[Path] = []
    ok = [o["obsid"] for o in summary.outcomes if o["status"] == "ok"]
    for obsid in ok:
        pngs += export_png(store, obsid, out_dir / "quicklooks")
    summary_path = out_dir / "run-summary.json"
    from xsa_enhance.cli.run import summary_to_dict

    summary_path.write_text(json.dumps(summary_to_dict(summary), indent=1) + "\n")
    click.echo("")
    click.echo(f"{len(pngs)} quicklook PNGs in {out_dir / 'quicklooks'}; "
               f"store {config.store}; summary {summary_path}")
    if not models:
        click.echo("No trained model is installed: stopped after the un-enhanced products.")
    click.echo(f"demo finished in {time.perf_counter() - t0:.0f} s")
