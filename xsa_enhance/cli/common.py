"""Helpers shared by the CLI commands: user errors, progress, cone options.

Logging set-up is :func:`xsa_enhance.logsetup.configure_logging`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

__all__ = ["UserError", "progress", "cone_degrees", "CONE_HELP"]

#: Help text of the ``--cone RA DEC RADIUS`` options.
CONE_HELP = ("Pointings within RADIUS of RA, DEC: degrees (161.265 -59.685 0.5) or sexagesimal "
             "(10h45m03.6s -59d41m04s 30arcmin).")

T = TypeVar("T")


class UserError(click.ClickException):
    """An error caused by the user's input: printed as one line, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate with a progress display: a bar on a terminal, plain log lines otherwise.

    Parameters
    ----------
    items : iterable
        The items to iterate over.
    total : int, optional
        Number of items, when ``items`` has no ``len``.
    desc : str
        Label shown before the bar or in the log lines.
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
        else:
            yield from tqdm(items, total=total, desc=desc, file=sys.stderr)
            return
    log = logging.getLogger("xsa_enhance.progress")
    step = max(1, (total or 10) // 10)
    done = 0
    for item in items:
        yield item
        done += 1
        if done % step == 0 or (total is not None and done == total):
            suffix = f"/{total}" if total is not None else ""
            click.echo(f"{desc}: {done}{suffix}", err=True)
    if done == 0:
        log.debug("%s: nothing to do", desc)


def cone_degrees(cone: tuple[str, str, str] | None) -> tuple[float, float, float] | None:
    """``--cone RA DEC RADIUS`` as typed (degrees, sexagesimal, radius with a unit) in degrees.

    Parameters
    ----------
    cone : (str, str, str) or None
        The option's values.

    Returns
    -------
    (float, float, float) or None
        RA, Dec (ICRS) and radius in degrees.

    Raises
    ------
    xsa_enhance.errors.ConfigError
        Values out of range or unreadable (one line naming the accepted forms).
    """
    if cone is None:
        return None
    from xsa_enhance.store.query import parse_cone

    centre, radius = parse_cone(cone)
    return float(centre.ra.deg), float(centre.dec.deg), float(radius.deg)
