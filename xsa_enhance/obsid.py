"""The one validator of XMM-Newton observation identifiers for the whole package.

An observation id is exactly ten ASCII digits (``0123700101``). Ids are used in file names,
temporary-directory prefixes, URLs and Zarr group paths, so anything else -- ``../x``, ``a/b``,
an empty string, Unicode digits, a trailing newline -- is refused before it is used anywhere.
"""

from __future__ import annotations

import logging
import re

from xsa_enhance.errors import ObservationError

__all__ = ["validate_obsid", "is_obsid", "OBSID_PATTERN", "REASON"]

logger = logging.getLogger(__name__)

#: The accepted form: ten ASCII digits (``re.ASCII``: no other scripts' digits).
OBSID_PATTERN = re.compile(r"[0-9]{10}", re.ASCII)

#: The reason given for every refused id (other modules and tests match on it).
REASON = "not an XMM-Newton observation id (10 digits)"


def is_obsid(obsid: object) -> bool:
    """Whether ``obsid`` is a string of exactly ten ASCII digits (no surrounding blanks).

    Parameters
    ----------
    obsid : object
        Anything.

    Returns
    -------
    bool
    """
    return isinstance(obsid, str) and OBSID_PATTERN.fullmatch(obsid) is not None


def validate_obsid(obsid: str, *, source: str = "") -> str:
    """Return ``obsid`` (surrounding blanks removed) if it is a valid XMM-Newton observation id.

    Parameters
    ----------
    obsid : str
        The candidate id. Integers are not accepted (a leading zero would be lost); blanks
        around the id (fixed-width ``char(10)`` columns, typed options) are removed.
    source : str, optional
        Where the id came from (``"TAP reply"``, ``"store"``...), added to the reason.

    Returns
    -------
    str
        The ten-digit id.

    Raises
    ------
    ObservationError
        When it is not ten ASCII digits; its ``obsid`` is the ``repr`` of the value (at most 40
        characters) so that a hostile value is shown quoted, and its reason starts with
        ``"not an XMM-Newton observation id (10 digits)"``.
    """
    text = obsid.strip(" \t") if isinstance(obsid, str) else None
    if text is None or OBSID_PATTERN.fullmatch(text) is None:
        reason = REASON if not source else f"{REASON}; from {source}"
        raise ObservationError(repr(obsid)[:40], reason)
    return text
