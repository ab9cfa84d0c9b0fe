"""A local XSA-compatible archive (TAP + AIO on loopback) that astroquery uses unmodified.

See :class:`LocalArchive` and ``docs/archive.md``.
"""

from xsa_enhance.standin.catalog import KINDS, StandinExposure, StandinObservation
from xsa_enhance.standin.faults import ALWAYS, MALICIOUS_TAR_KINDS, FaultPlan
from xsa_enhance.standin.server import AIO_PATH, DEFAULT_CREDENTIALS, TAP_PATH, LocalArchive

__all__ = [
    "LocalArchive",
    "FaultPlan",
    "ALWAYS",
    "MALICIOUS_TAR_KINDS",
    "KINDS",
    "StandinObservation",
    "StandinExposure",
    "TAP_PATH",
    "AIO_PATH",
    "DEFAULT_CREDENTIALS",
]
