"""Fault injection for the local archive: the ways a real archive (or the network) misbehaves.

A :class:`FaultPlan` is chosen per run. Every fault with a count hits the first *n* matching
requests for each observation and then lets requests through, so a harvester with retries
must recover; :data:`ALWAYS` makes a fault permanent. ``obsids`` restricts the plan to some
observations (the others are served normally).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["FaultPlan", "ALWAYS", "MALICIOUS_TAR_KINDS"]

#: Use as a count to make a fault permanent.
ALWAYS = 10**9

#: Kinds of malicious tar the archive can serve.
MALICIOUS_TAR_KINDS = ("dotdot", "absolute", "symlink", "hardlink", "device")


@dataclass(frozen=True)
class FaultPlan:
    """Faults the local archive injects.

    Parameters
    ----------
    server_errors : int
        AIO requests (HEAD or GET) answered with ``error_status`` before serving normally.
    error_status : int
        The status of those answers (a 5xx).
    delays : int
        AIO requests delayed by ``delay_s`` before any byte of the reply is sent.
    delay_s : float
        The delay, seconds; make it longer than the client timeout.
    truncations : int
        AIO GET replies cut at half of the body.
    truncate_declares_length : bool
        Whether a truncated reply declares the full ``Content-Length`` (the client's HTTP
        layer notices) or none (only the file's verification notices).
    wrong_content_type : int
        AIO requests answered ``200 text/html`` with an HTML page instead of the data.
    malicious_tar : str, optional
        Serve the products inside a tar with an extra hostile member: ``"dotdot"``
        (``../`` path), ``"absolute"``, ``"symlink"``, ``"hardlink"`` or ``"device"``.
    tap_errors : int
        TAP ``sync`` queries answered 503 before running normally.
    tap_delays : int
        TAP ``sync`` queries delayed by ``delay_s`` before running.
    obsids : iterable of str, optional
        Restrict the AIO faults to these observations (TAP faults are global).
    """

    server_errors: int = 0
    error_status: int = 503
    delays: int = 0
    delay_s: float = 5.0
    truncations: int = 0
    truncate_declares_length: bool = True
    wrong_content_type: int = 0
    malicious_tar: str | None = None
    tap_errors: int = 0
    tap_delays: int = 0
    obsids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.obsids is not None and not isinstance(self.obsids, frozenset):
            object.__setattr__(self, "obsids", frozenset(self.obsids))
        if self.malicious_tar is not None and self.malicious_tar not in MALICIOUS_TAR_KINDS:
            raise ValueError(
                f"malicious_tar must be one of {MALICIOUS_TAR_KINDS}, not {self.malicious_tar!r}")
        if not 500 <= self.error_status <= 599:
            raise ValueError("error_status must be a 5xx status")
        for name in ("server_errors", "delays", "truncations", "wrong_content_type",
                     "tap_errors", "tap_delays"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    def applies_to(self, obsid: str) -> bool:
        """Whether the AIO faults apply to ``obsid``."""
        return self.obsids is None or obsid in self.obsids


@dataclass
class FaultState:
    """Counters of the faults already injected (thread-safe); one per running archive."""

    plan: FaultPlan
    _counts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, fault: str, obsid: str, limit: int) -> bool:
        """Consume one occurrence of ``fault`` for ``obsid`` if fewer than ``limit`` were used."""
        if limit <= 0:
            return False
        with self._lock:
            key = (fault, obsid)
            if self._counts[key] >= limit:
                return False
            self._counts[key] += 1
            return True

    def injected(self) -> dict[str, int]:
        """How many faults of each kind were injected so far (all observations together)."""
        with self._lock:
            out: dict[str, int] = defaultdict(int)
            for (fault, _), n in self._counts.items():
                out[fault] += n
            return dict(out)

    def injected_for(self, fault: str, obsids: Iterable[str]) -> int:
        """Faults of one kind injected for the given observations."""
        with self._lock:
            return sum(self._counts.get((fault, o), 0) for o in obsids)
