"""Configuration of the archive stage: endpoints, timeouts, retries, credentials.

:class:`ArchiveConfig` is also the ``archive`` section of a pipeline file
(``schemas/pipeline.schema.json``), where the durations carry a ``_s`` suffix and a null URL
means the real XSA: :meth:`ArchiveConfig.from_section` and :meth:`ArchiveConfig.to_section`
translate between the two spellings.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xsa_enhance.errors import ConfigError
from xsa_enhance.obsid import validate_obsid

__all__ = [
    "XSA_TAP_URL",
    "XSA_AIO_URL",
    "ArchiveConfig",
    "SECTION_KEYS",
    "Credentials",
    "load_credentials",
    "validate_obsid",
]

#: The real XMM-Newton Science Archive TAP service.
XSA_TAP_URL = "https://nxsa.esac.esa.int/tap-server/tap"
#: The real XSA AIO download servlet (astroquery appends ``obsno=...``).
XSA_AIO_URL = "https://nxsa.esac.esa.int/nxsa-sl/servlet/data-action-aio?"


@dataclass(frozen=True)
class ArchiveConfig:
    """Where and how to reach the archive.

    Parameters
    ----------
    tap_url : str
        TAP service (default: the real XSA).
    aio_url : str
        AIO download servlet; a trailing ``?`` is added when missing (default: the real XSA).
    timeout : float
        Seconds to wait for a connection or for data before the attempt counts as failed.
    retries : int
        Further attempts after a transient failure (5xx, timeout, reset, truncated body).
    backoff : float
        Wait before the first retry, seconds; doubled at each further retry.
    backoff_max : float
        Upper bound of one wait, seconds.
    credentials_file : Path, optional
        astroquery-style ini file with a ``[xmm_newton]`` section (``username``, ``password``)
        for proprietary data; ``XSA_USERNAME`` / ``XSA_PASSWORD`` are used when absent.

    The defaults hold for the archive commands, the Python API and pipeline files alike.
    """

    tap_url: str = XSA_TAP_URL
    aio_url: str = XSA_AIO_URL
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 2.0
    backoff_max: float = 60.0
    credentials_file: Path | None = None

    def __post_init__(self) -> None:
        for name in ("tap_url", "aio_url"):
            url = getattr(self, name)
            if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
                raise ConfigError(f"{name} must be an http(s) URL, not {url!r}")
        if not self.aio_url.endswith("?"):
            object.__setattr__(self, "aio_url", self.aio_url + "?")
        object.__setattr__(self, "tap_url", self.tap_url.rstrip("/"))
        if self.timeout <= 0:
            raise ConfigError("timeout must be > 0 seconds")
        if self.retries < 0:
            raise ConfigError("retries must be >= 0")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ConfigError("backoff must be >= 0")
        if self.credentials_file is not None:
            object.__setattr__(self, "credentials_file", Path(self.credentials_file))

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> "ArchiveConfig":
        """Build the configuration from the ``archive`` section of a pipeline file.

        Parameters
        ----------
        section : mapping or None
            Keys of :data:`SECTION_KEYS` (``timeout_s``, ``backoff_s``, ...); missing keys and
            null values take the defaults (a null URL: the real XSA).

        Returns
        -------
        ArchiveConfig

        Raises
        ------
        ConfigError
            On an unknown key or a value the constructor refuses.
        """
        kwargs: dict[str, Any] = {}
        for key, value in dict(section or {}).items():
            if key not in SECTION_KEYS:
                raise ConfigError(f"unknown archive setting {key!r}; expected one of "
                                  f"{sorted(SECTION_KEYS)}")
            if value is not None:
                kwargs[SECTION_KEYS[key]] = value
        return cls(**kwargs)

    def to_section(self) -> dict[str, Any]:
        """The ``archive`` section of a pipeline file holding this configuration.

        Returns
        -------
        dict
            Plain values (strings and numbers) under the keys of :data:`SECTION_KEYS`;
            :meth:`from_section` gives back an equal configuration.
        """
        out: dict[str, Any] = {}
        for key, name in SECTION_KEYS.items():
            value = getattr(self, name)
            out[key] = str(value) if isinstance(value, Path) else value
        return out


#: Keys of the ``archive`` section of a pipeline file -> :class:`ArchiveConfig` fields.
SECTION_KEYS: dict[str, str] = {
    "tap_url": "tap_url",
    "aio_url": "aio_url",
    "credentials_file": "credentials_file",
    "retries": "retries",
    "timeout_s": "timeout",
    "backoff_s": "backoff",
    "backoff_max_s": "backoff_max",
}


@dataclass(frozen=True)
class Credentials:
    """XSA username and password; the password never appears in ``repr``."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"

    __str__ = __repr__


def load_credentials(config: ArchiveConfig) -> Credentials | None:
    """Credentials for proprietary data, or ``None`` when none are configured.

    The ini file of ``config.credentials_file`` (astroquery's format: a ``[xmm_newton]``
    section with ``username`` and ``password``) wins over the ``XSA_USERNAME`` and
    ``XSA_PASSWORD`` environment variables.

    Raises
    ------
    ConfigError
        When the file is given but unreadable or incomplete.
    """
    path = config.credentials_file
    if path is not None:
        parser = configparser.ConfigParser()
        try:
            read = parser.read(path)
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not a valid credentials ini file ({type(exc).__name__})") from None
        if not read:
            raise ConfigError(f"{path}: credentials file not found or unreadable")
        try:
            user = parser.get("xmm_newton", "username")
            pwd = parser.get("xmm_newton", "password")
        except (configparser.NoSectionError, configparser.NoOptionError):
            raise ConfigError(
                f"{path}: needs a [xmm_newton] section with username and password") from None
        return Credentials(user, pwd)
    user = os.environ.get("XSA_USERNAME")
    pwd = os.environ.get("XSA_PASSWORD")
    if user and pwd:
        return Credentials(user, pwd)
    return None
