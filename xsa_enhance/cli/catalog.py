"""``xsa-enhance catalog query`` and ``xsa-enhance export``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xsa_enhance.cli.common import UserError

__all__ = ["catalog_group", "export_cmd"]


@click.group("catalog")
def catalog_group() -> None:
    """Query the catalogs of a product store."""


@catalog_group.command("query")
@click.option("--store", required=True, help="Product store (path or fsspec URL).")
@click.option("--catalog", "which", type=click.Choice(["products", "slices", "observations", "sources", "runs"]),
              default="products", show_default=True, help="Which catalog.")
@click.option("--cone", type=(str, str, str), default=None, metavar="RA DEC RADIUS",
              help="Observations pointed (sources: sources) within RADIUS of RA, DEC: degrees "
                   "(161.265 -59.685 0.5) or sexagesimal (10h45m03.6s -59d41m04s 30arcmin).")
@click.option("--cone-name", type=(str, str), default=None, metavar="NAME RADIUS",
              help="Like --cone around an object name resolved through astropy (needs the "
                   "network).")
@click.option("--obsid", "obsids", multiple=True, help="Observation id, 10 digits (repeatable).")
@click.option("--exposure", "exposure_ks", type=float, default=None,
              help="Slice exposure in ks (slices, products, sources).")
@click.option("--model", default=None,
              help="Model NAME-vN, or alias NAME for every version (products, sources; "
                   "sources: 'input' is detection on the slice itself).")
@click.option("--clamp", default=None,
              help="Clamp mode: constant, quantile, none (a family) or e.g. quantile:0.9999 "
                   "(products, sources).")
@click.option("--min-signif", type=float, default=None, help="Minimum significance (sources).")
@click.option("--min-rate", type=float, default=None,
              help="Minimum count rate in counts/s (sources).")
@click.option("--since", default=None, help="Rows committed at or after this UTC date.")
@click.option("--observed-after", default=None,
              help="Observations whose exposure started (DATE-OBS) at or after this date.")
@click.option("--observed-before", default=None,
              help="Observations whose exposure started (DATE-OBS) before this date.")
@click.option("--status", default=None,
              help="observations: ok / skipped; runs: ok / failed / skipped.")
@click.option("--format", "fmt",
              type=click.Choice(["table", "csv", "ecsv", "json", "votable", "fits", "parquet"]),
              default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def query_cmd(
    store: str,
    which: str,
    cone: tuple[str, str, str] | None,
    cone_name: tuple[str, str] | None,
    obsids: tuple[str, ...],
    exposure_ks: float | None,
    model: str | None,
    clamp: str | None,
    since: str | None,
    observed_after: str | None,
    observed_before: str | None,
    status: str | None,
    min_signif: float | None,
    min_rate: float | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Select catalog rows and print or write them (table, csv, ecsv, json, votable, fits,
    parquet)."""
    from xsa_enhance.store.query import BINARY_FORMATS, format_table, query_catalog

    if cone is not None and cone_name is not None:
        raise UserError("give --cone or --cone-name, not both")
    if output is None and fmt in BINARY_FORMATS and sys.stdout.isatty():
        raise UserError(f"--format {fmt} is binary: use --output FILE or a pipe")
    table = query_catalog(
        store, catalog=which, cone=cone if cone is not None else cone_name,
        obsid=list(obsids) or None, exposure_ks=exposure_ks, model=model, clamp=clamp,
        since=since, status=status, observed_after=observed_after,
        observed_before=observed_before, min_signif=min_signif, min_rate=min_rate,
    )
    data = format_table(table, fmt)
    if output is not None:
        from xsa_enhance.atomicio import write_bytes_atomic

        try:
            write_bytes_atomic(output, data if isinstance(data, bytes) else data.encode("utf-8"))
        except OSError as exc:
            raise UserError(f"{output}: cannot write: {exc.strerror or exc}") from exc
        click.echo(f"{len(table)} rows written to {output}", err=True)
        if fmt == "csv" and "obsid" in table.colnames:
            # Plain CSV carries no types: every reader takes 0900000201 for a number.
            click.echo('note: obsid is text; read it back with pandas.read_csv(f, '
                       'dtype={"obsid": str}) or write --format ecsv', err=True)
        return
    if isinstance(data, bytes):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        click.echo(data, nl=False)


@click.command("export")
@click.option("--store", required=True, help="Product store (path or fsspec URL).")
@click.option("--obsid", required=True, help="Observation id.")
@click.option("--slice", "slices", multiple=True,
              help="Slice id (S003_020ks_000) or length in ks (20); repeatable [all].")
@click.option("--model", "models", multiple=True,
              help="Model NAME-vN or alias NAME (every version; repeatable) [all].")
@click.option("--fits", "fits_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write FITS images with the sky WCS into this folder.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write quicklook PNGs into this folder.")
def export_cmd(
    store: str,
    obsid: str,
    slices: tuple[str, ...],
    models: tuple[str, ...],
    fits_dir: Path | None,
    png_dir: Path | None,
) -> None:
    """Export the slice images and enhanced products of one observation."""
    from xsa_enhance.store.export import export_fits, export_png

    if fits_dir is None and png_dir is None:
        raise UserError("give --fits DIR and/or --png DIR")
    kwargs = {"slices": list(slices) or None, "models": list(models) or None}
    if fits_dir is not None:
        files = export_fits(store, obsid, fits_dir, **kwargs)
        click.echo(f"{len(files)} FITS images in {fits_dir}")
    if png_dir is not None:
        files = export_png(store, obsid, png_dir, **kwargs)
        click.echo(f"{len(files)} quicklook PNGs in {png_dir}")


from xsa_enhance.cli.catalog_sky import crossmatch_cmd, index_cmd  # noqa: E402

catalog_group.add_command(crossmatch_cmd)
catalog_group.add_command(index_cmd)
