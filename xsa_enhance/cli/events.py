"""``xsa-enhance image`` and ``xsa-enhance slice``: event list -> FITS images."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from xsa_enhance.cli.common import UserError, progress

__all__ = ["image", "slice_cmd"]

logger = logging.getLogger(__name__)


def _parse_band(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        lo, hi = (int(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"expected LO:HI in eV (e.g. 500:2000), got {value!r}") from None
    if not 0 <= lo <= hi:
        raise click.BadParameter(f"need 0 <= LO <= HI, got {value!r}")
    return lo, hi


def _parse_exposures(value: str) -> tuple[float, ...] | str:
    if value.strip().lower() == "all":
        return "all"
    try:
        vals = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated ks (e.g. 10,20,50) or 'all', got {value!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise click.BadParameter(f"exposures must be positive numbers of ks, got {value!r}")
    return tuple(dict.fromkeys(vals))


def _load_config_file(path: Path | None) -> dict:
    """The ``events:`` mapping of a YAML/JSON file (or the whole file if it has none)."""
    if path is None:
        return {}
    import yaml

    from xsa_enhance.errors import ConfigError

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of events options")
    section = data.get("events", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'events' must be a mapping of options")
    return dict(section)


def _config(band, expression, *, lengths, include_full, with_2x, flare_threshold, config_file=None):
    from xsa_enhance.errors import ConfigError
    from xsa_enhance.events import EventsConfig

    kwargs: dict = _load_config_file(config_file)
    if lengths is not None:
        kwargs["slice_lengths_ks"] = lengths
    kwargs["include_full"] = include_full
    if band is not None:
        kwargs["band"] = band
    if expression is not None:
        kwargs["expression"] = expression
    if with_2x:
        kwargs["grids"] = ("1x", "2x")
    if flare_threshold is not None:
        kwargs["flare_threshold"] = flare_threshold
    try:
        return EventsConfig.from_dict(kwargs)
    except ConfigError as exc:
        if config_file is not None:
            raise ConfigError(f"{config_file}: {exc}") from None
        raise


_common = [
    click.argument("events", type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--fbktsr", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="FBKTSR flare light curve; without it the 10-12 keV light curve of the events is used."),
    click.option("--band", default=None, help="PI band in eV, LO:HI (default 500:2000)."),
    click.option("--expression", default=None,
                 help="Screening expression (default: the paper's; the band is added to it)."),
    click.option("--flare-threshold", type=float, default=None,
                 help="Threshold (counts/s) of the light curve built from the events (default 0.4)."),
    click.option("--with-2x", is_flag=True, help="Also bin on the 2x grid (COUNTS2X extension)."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="YAML/JSON file with events options (its 'events:' section); options given here win."),
    click.option("--png", is_flag=True, help="Also write a quick-look PNG next to each FITS file."),
]  # fmt: skip


def _apply(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


@click.command("image")
@_apply(_common)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output FITS image.")  # fmt: skip
def image(events, fbktsr, band, expression, flare_threshold, with_2x, config_file, png, out):
    """Image of the whole clean exposure of EVENTS (a PIEVLI file) on the DET grid."""
    from xsa_enhance.events import process_event_list, write_image_fits, write_image_png

    cfg = _config(
        _parse_band(band), expression, lengths=(), include_full=True, with_2x=with_2x,
        flare_threshold=flare_threshold, config_file=config_file,
    )  # fmt: skip
    obs = process_event_list(events, fbktsr, config=cfg)
    img = obs.full_image
    if img is None:
        raise UserError(f"{events}: no clean exposure left after flare screening")
    write_image_fits(img, out)
    click.echo(
        f"{out}: {obs.obsid} {obs.expidstr}, clean exposure {obs.clean_exposure_s:.1f} s "
        f"(flare fraction {obs.flare_fraction:.3f}), {img.total_counts} counts"
    )
    if png:
        write_image_png(img, out.with_suffix(".png"))


@click.command("slice")
@_apply(_common)
@click.option("--exposures", default=None,
              help="Slice lengths in ks, comma-separated, or 'all' (every 10 ks multiple; the default).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory; files <obsid>_<exp>ks_<nslices>_<i>.fits.")  # fmt: skip
def slice_cmd(events, fbktsr, band, expression, flare_threshold, with_2x, config_file, png, exposures, out):
    """Cut the clean exposure of EVENTS into slices and write one FITS image per slice."""
    from xsa_enhance.events import process_event_list, write_image_fits, write_image_png

    lengths = None if exposures is None else _parse_exposures(exposures)
    cfg = _config(
        _parse_band(band), expression, lengths=lengths, include_full=False, with_2x=with_2x,
        flare_threshold=flare_threshold, config_file=config_file,
    )  # fmt: skip
    obs = process_event_list(events, fbktsr, config=cfg)
    if not obs.slices:
        raise UserError(
            f"{events}: clean exposure {obs.clean_exposure_s:.0f} s is shorter than every "
            f"requested slice length ({exposures or 'all'} ks)"
        )
    out.mkdir(parents=True, exist_ok=True)
    for img in progress(obs.slices, desc="slices"):
        path = out / img.filename
        write_image_fits(img, path)
        if png:
            write_image_png(img, path.with_suffix(".png"))
    click.echo(
        f"{out}: {len(obs.slices)} slice images of {obs.obsid} {obs.expidstr} "
        f"(clean exposure {obs.clean_exposure_s:.1f} s)"
    )
