"""Exceptions for user-facing failures.

Every error caused by input data or configuration derives from :class:`XsaError` and names
what it is about (a file, an observation) and why. The CLI prints these as one line without a
traceback; batch executors record them per observation and carry on.
"""

from __future__ import annotations

__all__ = ["XsaError", "InputFileError", "ConfigError", "ObservationError"]


class XsaError(Exception):
    """Base class of all expected, user-facing failures."""


class InputFileError(XsaError):
    """A file that cannot be used: unreadable, corrupt, or of the wrong kind.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file.
    reason : str
        Why it cannot be used.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(XsaError):
    """An invalid configuration (file or options)."""


class ObservationError(XsaError):
    """A failure tied to one observation (download, processing, enhancement).

    Parameters
    ----------
    obsid : str
        The observation identifier.
    reason : str
        Why it failed.
    """

    def __init__(self, obsid: str, reason: str) -> None:
        self.obsid = obsid
        self.reason = reason
        super().__init__(f"observation {obsid}: {reason}")
