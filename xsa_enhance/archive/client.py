"""astroquery, wrapped so that it is safe for batch harvesting.

astroquery 0.4.11's ``XMMNewtonClass.download_data`` writes into the current working
directory, names the file after the observation (losing the product name), has no timeout,
and crashes with ``UnboundLocalError`` on the archive's "No results" text reply. The
:class:`XsaClient` subclass keeps astroquery's request logic (HEAD, then streaming GET,
``AIOUSER``/``AIOPWD`` for proprietary data) and changes only where things go:

- ``_create_filename`` puts the file in a per-observation folder given to the client (no
  ``os.chdir``, which is process-wide and unsafe with threads);
- ``_request_link`` records the real file name of ``Content-Disposition``, and turns the
  ``UnboundLocalError`` into :class:`NoResults` or :class:`UnexpectedReply` after a short probe;
- the HTTP session has a default timeout and no URL-logging hook (the URL carries the
  password for proprietary data);
- ``_get_username_and_password`` answers from the configured credentials instead of a prompt.

TAP goes through astroquery's ``TapPlus`` with a connection handler that sets a socket timeout.
"""

from __future__ import annotations

import http.client
import logging
import re
import urllib.parse
from pathlib import Path

import requests
from astroquery.esa.xmm_newton import XMMNewtonClass
from astroquery.utils.tap.conn.tapconn import ConnectionHandler, TapConn
from astroquery.utils.tap.core import TapPlus

from xsa_enhance.archive.config import ArchiveConfig, Credentials

__all__ = ["XsaClient", "make_tap", "NoResults", "UnexpectedReply", "scrub"]

logger = logging.getLogger(__name__)


class NoResults(Exception):
    """The archive answered "No results": no product matches the request."""


class UnexpectedReply(Exception):
    """The archive answered with a text/HTML page instead of data."""


def _printable(text: str, limit: int) -> str:
    """``text`` on one line, non-printable characters as ``?``, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scrub(text: str, credentials: Credentials | None = None) -> str:
    """Remove credentials from a message (URLs carry ``AIOUSER``/``AIOPWD``)."""
    text = re.sub(r"(AIOPWD=)[^&\s'\"]*", r"\1***", text)
    text = re.sub(r"(AIOUSER=)[^&\s'\"]*", r"\1***", text)
    if credentials is not None and credentials.password:
        text = text.replace(credentials.password, "***")
    return text


class _RedactFilter(logging.Filter):
    """Scrub ``AIOUSER``/``AIOPWD`` from records of loggers that print request URLs."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - logging API
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - leave malformed records alone
            return True
        if "AIOPWD=" in text or "AIOUSER=" in text:
            record.msg = scrub(text)
            record.args = None
        return True


_REDACT = _RedactFilter()
#: Loggers that write request URLs at DEBUG level (urllib3 logs every request line).
_URL_LOGGERS = ("urllib3.connectionpool", "astroquery")


def _install_redaction() -> None:
    """Make sure URLs with credentials never reach a log handler (idempotent)."""
    for name in _URL_LOGGERS:
        lg = logging.getLogger(name)
        if _REDACT not in lg.filters:
            lg.addFilter(_REDACT)


class _TimeoutSession(requests.Session):
    """A requests session with a default timeout (astroquery passes ``timeout=None``)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._default_timeout = timeout

    def request(self, method, url, *args, **kwargs):  # noqa: D102 - requests API
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._default_timeout
        return super().request(method, url, *args, **kwargs)


class _TimeoutConnectionHandler(ConnectionHandler):
    """astroquery's TAP connection handler, with a socket timeout."""

    def __init__(self, host: str, port: int, sslport: int, timeout: float) -> None:
        super().__init__(host, port, sslport)
        self._host, self._port, self._sslport, self._timeout = host, port, sslport, timeout

    def get_connection(self, *, ishttps=False, cookie=None, verbose=False):  # noqa: D102
        if ishttps or cookie is not None:
            return self.get_connection_secure(verbose)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def get_connection_secure(self, verbose):  # noqa: D102
        return http.client.HTTPSConnection(self._host, self._sslport, timeout=self._timeout)


def make_tap(config: ArchiveConfig) -> TapPlus:
    """A ``TapPlus`` for ``config.tap_url`` whose connections time out after ``config.timeout``.

    Parameters
    ----------
    config : ArchiveConfig
        Endpoints and timeout.

    Returns
    -------
    astroquery.utils.tap.core.TapPlus
    """
    parts = urllib.parse.urlsplit(config.tap_url)
    https = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    items = [p for p in parts.path.split("/") if p]
    if not items:
        server, tap = "", ""
    elif len(items) == 1:
        server, tap = f"/{items[0]}", ""
    else:
        server, tap = "/" + "/".join(items[:-1]), f"/{items[-1]}"
    conn = TapConn(
        ishttps=https, host=host, server_context=server, tap_context=tap, port=port,
        sslport=port, connhandler=_TimeoutConnectionHandler(host, port, port, config.timeout),
    )
    return TapPlus(url=config.tap_url, connhandler=conn)


class XsaClient(XMMNewtonClass):
    """``XMMNewtonClass`` writing downloads into a chosen folder, with timeouts.

    Parameters
    ----------
    config : ArchiveConfig
        Endpoints and timeout.
    credentials : Credentials, optional
        For proprietary data (``download_data(..., prop=True)``).
    """

    def __init__(self, config: ArchiveConfig, *, credentials: Credentials | None = None) -> None:
        super().__init__(tap_handler=make_tap(config))
        self.data_aio_url = config.aio_url
        session = _TimeoutSession(config.timeout)
        session.headers["User-Agent"] = self._session.headers.get("User-Agent", "")
        self._session = session
        self._credentials = credentials
        if credentials is not None:
            _install_redaction()
        self.target_dir: Path | None = None
        self.last_filename: str | None = None
        self.last_content_type: str | None = None

    # -- astroquery hooks (0.4.11) ----------------------------------------------------------
    def _create_filename(self, filename, observation_id, suffixes):  # noqa: D102
        name = super()._create_filename(filename, observation_id, suffixes)
        if self.target_dir is None:
            raise RuntimeError("XsaClient.target_dir must be set before download_data")
        return str(self.target_dir / Path(name).name)

    def _request_link(self, link, cache):  # noqa: D102
        self.last_filename = None
        self._head_type = None
        try:
            params = super()._request_link(link, cache)
        except UnboundLocalError:
            raise self._classify_text_reply(link) from None
        self.last_filename = params.get("filename")
        return params

    def _request(self, method, url, *args, **kwargs):  # noqa: D102
        response = super()._request(method, url, *args, **kwargs)
        if method == "HEAD":
            # the reply astroquery judges; a text reply is described from it, not from a
            # second request that may already get data (a transient fault)
            self._head_type = response.headers.get("Content-Type", "")
        return response

    def _get_username_and_password(self, credentials_file):  # noqa: D102
        if self._credentials is None:
            raise RuntimeError("no XSA credentials configured")
        return self._credentials.username, self._credentials.password

    def _download_file(self, url, local_filepath, **kwargs):  # noqa: D102
        # No progress bar on stdout (astroquery prints one when its log level is INFO).
        kwargs["verbose"] = False
        return super()._download_file(url, local_filepath, **kwargs)

    # -- helpers ---------------------------------------------------------------------------
    def _classify_text_reply(self, link: str) -> Exception:
        """Look at a text reply astroquery could not handle: "No results" or something else."""
        try:
            with self._session.get(link, stream=True) as resp:
                ctype = resp.headers.get("Content-Type", "")
                head = resp.raw.read(4096, decode_content=True) or b""
        except requests.RequestException as exc:
            return exc
        failed_type = getattr(self, "_head_type", None)
        if failed_type is not None and failed_type != ctype and "text" not in ctype.lower():
            # the second request got data: describe the reply that failed, not this one
            self.last_content_type = failed_type
            return UnexpectedReply(
                f"the archive answered {_printable(failed_type, 60) or 'without a content type'}"
                " instead of data (a second request got data: the fault was transient)")
        self.last_content_type = ctype
        if b"no results" in head.lower():
            return NoResults("the archive answered 'No results'")
        text = head.decode("utf-8", "replace")
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        hint = title.group(1) if title else text.strip().splitlines()[0] if text.strip() else ""
        hint = _printable(hint, 80)
        return UnexpectedReply(
            f"the archive answered {_printable(ctype, 60) or 'without a content type'} instead "
            "of data" + (f" ({hint!r})" if hint else ""))
