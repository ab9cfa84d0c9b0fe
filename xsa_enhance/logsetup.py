"""Logging set-up for the program entry points (the CLI and ``python -m`` recipes).

Library code only logs through ``logging.getLogger(__name__)``; the entry points call
:func:`configure_logging` once, before they do anything else.
"""

from __future__ import annotations

import logging
import sys

from xsa_enhance.errors import ConfigError

__all__ = ["configure_logging"]

#: Loggers whose INFO lines drown the pipeline's progress (shown only at DEBUG).
_NOISY: tuple[str, ...] = ("distributed", "tornado")


def configure_logging(level: str | int = "WARNING") -> None:
    """Configure the root logger for command-line use: one stderr handler, timed lines.

    Parameters
    ----------
    level : str or int
        Logging level name (``"INFO"``) or number.

    Raises
    ------
    ConfigError
        ``level`` names no logging level.
    """
    if isinstance(level, str):
        number = getattr(logging, level.upper(), None)
        if not isinstance(number, int):
            raise ConfigError(f"unknown log level {level!r}")
        level = number
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Dask's own INFO lines (and the tracebacks it logs at INFO when a cluster shuts down)
    # drown the pipeline's progress; show them only with -vv / --log-level DEBUG.
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
