"""The archive stage's one retry loop: transient failures are retried with exponential backoff.

Both archive operations (the TAP query of :mod:`xsa_enhance.archive.select` and the product
downloads of :mod:`xsa_enhance.archive.harvest`) go through :func:`call_with_retries`; each
keeps its own classification of failures, its own messages and its own exceptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from xsa_enhance.archive.config import ArchiveConfig

__all__ = ["backoff_wait", "call_with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_wait(config: ArchiveConfig, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0-based) before the next one.

    Parameters
    ----------
    config : ArchiveConfig
        ``backoff`` (the first wait), doubled after each further failure, at most
        ``backoff_max``.
    attempt : int
        The attempt that just failed, counted from 0.

    Returns
    -------
    float
    """
    return min(config.backoff * 2**attempt, config.backoff_max)


def call_with_retries(
    action: Callable[[], T],
    *,
    config: ArchiveConfig,
    transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException, int, bool], BaseException],
    announce: Callable[[BaseException, int, float], None],
) -> tuple[T, int]:
    """Call ``action`` until it succeeds, retrying transient failures ``config.retries`` times.

    Parameters
    ----------
    action : callable
        One attempt; its exceptions are classified by ``transient``.
    config : ArchiveConfig
        ``retries`` and the backoff (:func:`backoff_wait`).
    transient : callable
        Whether a failure may go away when tried again.
    give_up : callable
        ``give_up(exc, attempts, exhausted)`` builds the exception raised (without chaining)
        for a permanent failure (``exhausted`` False) or once the retries are spent (True).
    announce : callable
        ``announce(exc, attempt, wait)`` reports a retry (``attempt`` counted from 0) before
        the wait of ``wait`` seconds.

    Returns
    -------
    (result, attempts)
        What ``action`` returned and how many attempts it took.
    """
    for attempt in range(config.retries + 1):
        try:
            return action(), attempt + 1
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            if not transient(exc):
                raise give_up(exc, attempt + 1, False) from None
            if attempt == config.retries:
                raise give_up(exc, attempt + 1, True) from None
            wait = backoff_wait(config, attempt)
            announce(exc, attempt, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
