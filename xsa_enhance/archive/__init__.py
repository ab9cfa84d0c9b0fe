"""Archive stage: select EPIC-pn observations in the XSA (TAP) and harvest their PPS products.

Both go through astroquery (``XMMNewtonClass``/``TapPlus``), pointed at the real XSA by
default or at any compatible service (a mirror, :class:`xsa_enhance.standin.LocalArchive`).
"""

from xsa_enhance.archive.config import (
    XSA_AIO_URL,
    XSA_TAP_URL,
    ArchiveConfig,
    Credentials,
    load_credentials,
    validate_obsid,
)
from xsa_enhance.archive.harvest import (
    DEFAULT_PRODUCTS,
    OPTIONAL_PRODUCTS,
    HarvestResult,
    harvest_observation,
    safe_extract,
    verify_product,
)
from xsa_enhance.archive.select import (
    ArchiveQueryError,
    ObservationRecord,
    Selection,
    build_query,
    select_observations,
)

__all__ = [
    "XSA_TAP_URL",
    "XSA_AIO_URL",
    "ArchiveConfig",
    "Credentials",
    "load_credentials",
    "validate_obsid",
    "Selection",
    "ObservationRecord",
    "ArchiveQueryError",
    "build_query",
    "select_observations",
    "HarvestResult",
    "harvest_observation",
    "verify_product",
    "safe_extract",
    "DEFAULT_PRODUCTS",
    "OPTIONAL_PRODUCTS",
]
