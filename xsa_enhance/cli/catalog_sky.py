"""``xsa-enhance catalog crossmatch`` and ``xsa-enhance catalog index`` (sky catalogs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from xsa_enhance.cli.common import UserError
from xsa_enhance.store.query import EXPORT_FORMATS
from xsa_enhance.store.spatial import sky_catalogs

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = ["crossmatch_cmd", "index_cmd", "emit_table"]

_SKY = list(sky_catalogs())
_DEFAULT = "sources" if "sources" in _SKY else _SKY[0]


def emit_table(table: "Table", fmt: str, output: Path | None) -> None:
    """Write a table to ``output`` or standard output in one of the export formats.

    Parameters
    ----------
    table : astropy.table.Table
        The table.
    fmt : str
        One of :data:`~xsa_enhance.store.query.EXPORT_FORMATS`.
    output : pathlib.Path or None
        File to write; None: standard output (binary formats only to a pipe).
    """
    from xsa_enhance.store.query import format_table

    data = format_table(table, fmt)
    if output is not None:
        output.write_bytes(data) if isinstance(data, bytes) else output.write_text(data)
        click.echo(f"{len(table)} rows written to {output}", err=True)
        return
    if isinstance(data, bytes):
        if sys.stdout.isatty():
            raise UserError(f"--format {fmt} is binary: use --output FILE or a pipe")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        click.echo(data, nl=False)


@click.command("crossmatch")
@click.option("--store", required=True, help="Product store (path or fsspec URL).")
@click.option("--with", "with_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Table of positions: FITS, VOTable, CSV or ECSV with RA/Dec columns.")
@click.option("--radius", default="10arcsec", show_default=True,
              help="Match radius, an astropy quantity (10arcsec, 0.5arcmin).")
@click.option("--catalog", "which", type=click.Choice(_SKY), default=_DEFAULT, show_default=True,
              help="Store catalog to match against.")
@click.option("--ra-col", default=None,
              help="RA column of the file (default: ra, RA, RAJ2000, RA_ICRS, ...).")
@click.option("--dec-col", default=None,
              help="Dec column of the file (default: dec, DEC, DEJ2000, DE_ICRS, ...).")
@click.option("--nearest", is_flag=True, help="Keep only the nearest catalog row per position.")
@click.option("--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)), default="table",
              show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def crossmatch_cmd(
    store: str,
    with_file: Path,
    radius: str,
    which: str,
    ra_col: str | None,
    dec_col: str | None,
    nearest: bool,
    fmt: str,
    output: Path | None,
) -> None:
    """Match a table of positions against a store catalog within a radius.

    Writes one row per pair: the file's columns, the catalog's columns and the separation
    (sep_arcsec), in any of the formats of `catalog query`.
    """
    from xsa_enhance.store.crossmatch import crossmatch, parse_radius, read_positions

    angle = parse_radius(radius)
    table, ra, dec = read_positions(with_file, ra_col=ra_col, dec_col=dec_col)
    out = crossmatch(store, table, ra, dec, catalog=which, radius=angle, nearest=nearest)
    emit_table(out, fmt, output)


@click.command("index")
@click.option("--store", required=True, help="Product store (path or fsspec URL).")
@click.option("--catalog", "which", type=click.Choice(_SKY), multiple=True,
              help="Catalog to index (repeatable) [every catalog with sky positions].")
@click.option("--rebuild", is_flag=True, help="Drop the index and build it again.")
def index_cmd(store: str, which: tuple[str, ...], rebuild: bool) -> None:
    """Build or extend the spatial index of the sky catalogs (stores written before it).

    Runs update it after every commit. A writer: it takes the store's writer lease (a local
    store held by a run stops with one line naming the holder).
    """
    import time

    from xsa_enhance.store import ProductStore, spatial
    from xsa_enhance.store.lease import StoreLease, local_store_path

    folder = local_store_path(store)
    lease = (StoreLease(folder, run_id=f"catalog-index-{time.strftime('%Y%m%dT%H%M%S')}")
             .acquire(wait_s=0.0) if folder is not None and folder.exists() else None)
    try:
        handle = ProductStore(store, mode="r+")
        handle.invalidate_consolidated()
        for name in which or _SKY:
            added = spatial.update_index(handle.catalog(name), rebuild=rebuild)
            info = spatial.index_info(handle.catalog(name))
            click.echo(f"{name}: {added} rows indexed now; {info['indexed']} of {info['rows']} "
                       f"rows indexed in {info['segments']} segment(s)")
        handle.consolidate()
    finally:
        if lease is not None:
            lease.release()
