"""The root ``xsa-enhance`` click group and registration of the stage commands."""

from __future__ import annotations

import click

from xsa_enhance._version import __version__
from xsa_enhance.cli.common import UserError
from xsa_enhance.errors import XsaError
from xsa_enhance.logsetup import configure_logging

__all__ = ["main"]


class _Group(click.Group):
    """A click group that prints expected failures (:class:`XsaError`) as one line."""

    def invoke(self, ctx: click.Context):  # noqa: D102 - click API
        try:
            return super().invoke(ctx)
        except XsaError as exc:
            raise UserError(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="xsa-enhance")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level (overrides -v).",
)
def main(verbose: int, log_level: str | None) -> None:
    """Super-resolution and de-noising of XMM-Newton EPIC-pn archive images."""
    if log_level is None:
        log_level = {0: "WARNING", 1: "INFO"}.get(verbose, "DEBUG")
    configure_logging(log_level)


# Stage commands are registered below, one import per CLI module.
from xsa_enhance.cli.validate import validate  # noqa: E402

main.add_command(validate)
from xsa_enhance.cli.deploy import deploy  # noqa: E402

main.add_command(deploy)
from xsa_enhance.cli.models import enhance_cmd, model  # noqa: E402

main.add_command(enhance_cmd)
main.add_command(model)

from xsa_enhance.cli.events import image as _events_image, slice_cmd as _events_slice  # noqa: E402

main.add_command(_events_image)
main.add_command(_events_slice)
from xsa_enhance.cli.training import (  # noqa: E402
    evaluate_cmd,
    flux_test_cmd,
    psf_test_cmd,
    ship_models_cmd,
    train_cmd,
)

main.add_command(train_cmd)
main.add_command(evaluate_cmd)
main.add_command(psf_test_cmd)
main.add_command(flux_test_cmd)
main.add_command(ship_models_cmd)
from xsa_enhance.cli.archive import archive_group, harvest_cmd  # noqa: E402

main.add_command(archive_group)
main.add_command(harvest_cmd)
from xsa_enhance.cli.run import run_cmd  # noqa: E402
from xsa_enhance.cli.catalog import catalog_group, export_cmd  # noqa: E402
from xsa_enhance.cli.demo import demo_cmd  # noqa: E402

main.add_command(run_cmd)
main.add_command(catalog_group)
main.add_command(export_cmd)
main.add_command(demo_cmd)
from xsa_enhance.cli.repair import repair_cmd  # noqa: E402

main.add_command(repair_cmd)
from xsa_enhance.cli.simulate import simulate_group  # noqa: E402

main.add_command(simulate_group)
from xsa_enhance.cli.detect import detect_cmd, detect_eval_cmd  # noqa: E402

main.add_command(detect_cmd)
main.add_command(detect_eval_cmd)
