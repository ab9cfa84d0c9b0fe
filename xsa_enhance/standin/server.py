"""The local XSA-compatible archive: TAP (ADQL on SQLite) and AIO downloads on loopback."""

from __future__ import annotations

import io
import re
import logging
import sqlite3
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from astropy.io.votable import from_table
from astropy.io.votable.tree import Info
from astropy.table import MaskedColumn, Table

from xsa_enhance.formats.pps import parse_pps_name
from xsa_enhance.standin.adql import AdqlError, register_functions, translate_adql
from xsa_enhance.standin.catalog import (
    TABLE_COLUMNS,
    StandinObservation,
    build_database,
    plan_observations,
)
from xsa_enhance.standin.faults import FaultPlan, FaultState
from xsa_enhance.standin.products import Producer, ensure_products

__all__ = ["LocalArchive", "TAP_PATH", "AIO_PATH", "DEFAULT_CREDENTIALS"]

logger = logging.getLogger(__name__)

TAP_PATH = "/tap-server/tap"
AIO_PATH = "/nxsa-sl/servlet/data-action-aio"
#: Username and password the local archive accepts for proprietary data.
DEFAULT_CREDENTIALS = ("xsa-user", "xsa-secret")

_DATATYPE: dict[str, str] = {}
for _cols in TABLE_COLUMNS.values():
    for _c in _cols:
        _DATATYPE[_c[0]] = _c[2]
_DESCRIPTIONS = {
    "v_public_observations": "Public XMM-Newton observations",
    "v_all_observations": "All XMM-Newton observations (public and proprietary)",
    "v_exposure": "Instrument exposures of the observations",
    "v_instrument_mode": "Instrument modes",
}


def _error_votable(message: str) -> bytes:
    """An ADQL/TAP error reply: a VOTable with ``QUERY_STATUS`` ``ERROR``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        '<RESOURCE type="results">\n'
        f'<INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
        "</RESOURCE>\n</VOTABLE>\n"
    ).encode()


def _result_table(names: list[str], rows: list[tuple]) -> Table:
    table = Table()
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        base = name or f"col{j}"
        if base.lower() in seen:
            seen[base.lower()] += 1
            col_name = f"{base}_{seen[base.lower()]}"
        else:
            seen[base.lower()] = 1
            col_name = base
        values = [r[j] for r in rows]
        mask = np.array([v is None for v in values], dtype=bool)
        present = [v for v in values if v is not None]
        kind = _DATATYPE.get(base.lower())
        if kind == "boolean":
            data = np.array([str(v).lower() in {"true", "1", "t"} if v is not None else False
                             for v in values], dtype=bool)
        elif kind in {"double", "float"} or (
                kind is None and present and all(isinstance(v, (int, float)) for v in present)
                and any(isinstance(v, float) for v in present)):
            data = np.array([float(v) if v is not None else np.nan for v in values], dtype="f8")
        elif kind in {"int", "long"} or (
                kind is None and present and all(isinstance(v, int) for v in present)):
            data = np.array([int(v) if v is not None else 0 for v in values], dtype="i8")
        else:
            data = np.array([str(v) if v is not None else "" for v in values], dtype="U")
            if data.dtype.itemsize == 0:
                data = data.astype("U1")
        table[col_name] = MaskedColumn(data, mask=mask) if mask.any() else data
    return table


def _votable_bytes(table: Table) -> bytes:
    vot = from_table(table)
    vot.resources[0].infos.append(Info(name="QUERY_STATUS", value="OK"))
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def _tableset(only_tables: bool) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:vod="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:esatapplus="http://esa.int/xml/EsaTapPlus">',
        "<schema><name>xsa</name><description>XMM-Newton Science Archive (local)</description>",
    ]
    for table, cols in TABLE_COLUMNS.items():
        parts.append(f'<table esatapplus:size_bytes="0" type="view"><name>xsa.{table}</name>'
                     f"<description>{escape(_DESCRIPTIONS[table])}</description>")
        if not only_tables:
            for name, _sql, vtype, unit, ucd, desc in cols:
                flags = "1" if name in {"observation_id", "instrument_mode_oid"} else "0"
                parts.append(
                    f'<column esatapplus:flags="{flags}"><name>{name}</name>'
                    f"<description>{escape(desc)}</description>"
                    + (f"<unit>{escape(unit)}</unit>" if unit else "")
                    + f"<ucd>{escape(ucd)}</ucd>"
                    f'<datatype xsi:type="vod:TAPType">{vtype.upper()}</datatype>'
                    + ("<flag>indexed</flag>" if flags == "1" else "")
                    + "</column>"
                )
        parts.append("</table>")
    parts.append("</schema></vosi:tableset>")
    return "\n".join(parts).encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "xsa-standin/1.0"
    protocol_version = "HTTP/1.0"
    archive: LocalArchive  # set on the subclass made per server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib API
        text = format % args
        text = re.sub(r"(AIOPWD=)[^&\s]*", r"\1***", text)
        logger.debug("%s %s", self.address_string(), text)

    # -- plumbing ------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, *, headers: dict[str, str] | None = None,
              length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _params(self) -> dict[str, str]:
        parsed = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        if self.command == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
            ctype = self.headers.get("Content-Type", "")
            if "multipart" in ctype:
                raise AdqlError("multipart (upload) requests are not supported")
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        return params

    def do_GET(self) -> None:  # noqa: N802 - stdlib API
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802 - stdlib API
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib API
        self._dispatch()

    def _dispatch(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        try:
            if path == f"{TAP_PATH}/sync":
                self._tap_sync()
            elif path == f"{TAP_PATH}/tables":
                params = self._params()
                only = params.get("only_tables", "false").lower() == "true"
                self._send(200, _tableset(only), "text/xml")
            elif path == f"{TAP_PATH}/availability":
                self._send(200, b'<?xml version="1.0"?><vosi:availability xmlns:vosi='
                           b'"http://www.ivoa.net/xml/VOSIAvailability/v1.0"><vosi:available>'
                           b"true</vosi:available></vosi:availability>", "text/xml")
            elif path == AIO_PATH:
                self._aio()
            else:
                self._send(404, b"not found\n", "text/plain")
        except AdqlError as exc:
            self._send(400, _error_votable(str(exc)), "text/xml")
        except Exception:  # pragma: no cover - reported to the client as a 500
            logger.exception("local archive: internal error on %s", self.path)
            try:
                self._send(500, b"internal error\n", "text/plain")
            except OSError:
                pass

    # -- TAP -------------------------------------------------------------------------------
    def _tap_sync(self) -> None:
        arch = self.archive
        params = {k.upper(): v for k, v in self._params().items()}
        if arch._faults.take("tap_delay", "*", arch.faults.tap_delays):
            arch._stopping.wait(arch.faults.delay_s)
        if arch._faults.take("tap_error", "*", arch.faults.tap_errors):
            self._send(503, b"Service temporarily unavailable\n", "text/plain")
            return
        if params.get("REQUEST", "doQuery").lower() != "doquery":
            raise AdqlError(f"unsupported REQUEST {params.get('REQUEST')!r}")
        if params.get("LANG", "ADQL").upper() not in {"ADQL", "ADQL-2.0", "ADQL-2.1"}:
            raise AdqlError(f"unsupported LANG {params.get('LANG')!r}")
        fmt = params.get("FORMAT", params.get("RESPONSEFORMAT", "votable")).lower()
        if fmt not in {"votable", "votable_plain", "application/x-votable+xml", "text/xml",
                       "csv", "text/csv"}:
            raise AdqlError(f"unsupported FORMAT {fmt!r}")
        query = params.get("QUERY")
        if not query:
            raise AdqlError("missing QUERY parameter")
        sql = translate_adql(query)
        maxrec = params.get("MAXREC")
        logger.debug("TAP: %s -> %s", query, sql)
        names, rows = arch._run_sql(sql, int(maxrec) if maxrec and maxrec.isdigit() else None)
        table = _result_table(names, rows)
        if fmt in {"csv", "text/csv"}:
            buf = io.StringIO()
            table.write(buf, format="ascii.csv")
            self._send(200, buf.getvalue().encode(), "text/csv")
        else:
            self._send(200, _votable_bytes(table), "application/x-votable+xml")

    # -- AIO -------------------------------------------------------------------------------
    def _aio(self) -> None:
        arch = self.archive
        raw = urllib.parse.urlsplit(self.path).query
        params = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        obsid = params.get("obsno", "")
        plan = arch.faults
        state = arch._faults
        faulty = plan.applies_to(obsid)
        if faulty and state.take("delay", obsid, plan.delays):
            arch._stopping.wait(plan.delay_s)
        if faulty and state.take("server_error", obsid, plan.server_errors):
            self._send(plan.error_status, b"<html><body>Service unavailable</body></html>",
                       "text/html")
            return
        if faulty and state.take("wrong_content_type", obsid, plan.wrong_content_type):
            self._send(200, b"<html><head><title>XSA</title></head><body>Please log in to "
                       b"continue.</body></html>", "text/html; charset=UTF-8", length=False)
            return
        obs = arch._by_obsid.get(obsid)
        if obs is not None and not obs.public:
            user, pwd = params.get("AIOUSER"), params.get("AIOPWD")
            if (user, pwd) != tuple(arch.credentials):
                self._send(401, b"<html><body>Data protected by proprietary rights"
                           b"</body></html>", "text/html")
                return
        files = arch._match_files(obsid, params)
        if not files:
            self._send(200, b"No results", "text/plain;charset=UTF-8", length=False)
            return
        if faulty and plan.malicious_tar is not None:
            body = _tar_bytes(obsid, files, evil=plan.malicious_tar)
            self._send(200, body, "application/x-tar", length=False,
                       headers={"Content-Disposition": f'attachment; filename="{obsid}.tar"'})
            return
        if len(files) == 1:
            body = files[0].read_bytes()
            ctype = "image/fits"
            disp = f'inline; filename="{files[0].name}"'
        else:
            body = _tar_bytes(obsid, files)
            ctype = "application/x-tar"
            disp = f'attachment; filename="{obsid}.tar"'
        if self.command == "GET" and faulty and state.take("truncation", obsid, plan.truncations):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Disposition", disp)
            if plan.truncate_declares_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return
        self._send(200, body, ctype, headers={"Content-Disposition": disp}, length=False)


def _tar_bytes(obsid: str, files: Sequence[Path], *, evil: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            tar.add(f, arcname=f"{obsid}/pps/{f.name}")
        if evil is not None:
            info = tarfile.TarInfo()
            payload = b"not from the archive\n"
            if evil == "dotdot":
                info.name = f"{obsid}/pps/../../../xsa-evil-{obsid}.txt"
            elif evil == "absolute":
                info.name = f"/tmp/xsa-evil-{obsid}.txt"
            elif evil == "symlink":
                info.name = f"{obsid}/pps/P{obsid}PNS003PIEVLI0001.FTZ"
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                payload = b""
            elif evil == "hardlink":
                info.name = f"{obsid}/pps/P{obsid}PNS003PIEVLI0001.FTZ"
                info.type = tarfile.LNKTYPE
                info.linkname = "/etc/passwd"
                payload = b""
            elif evil == "device":
                info.name = f"{obsid}/pps/P{obsid}PNS003PIEVLI0001.FTZ"
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
                payload = b""
            info.size = len(payload)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(payload) if payload else None)
    return buf.getvalue()


class LocalArchive:
    """A local XSA-compatible archive on 127.0.0.1 that astroquery talks to unmodified.

    It serves TAP (``POST {tap_url}/sync`` with ADQL, ``GET {tap_url}/tables``) over the
    tables ``xsa.v_public_observations``, ``xsa.v_all_observations``, ``xsa.v_exposure`` and
    ``xsa.v_instrument_mode``, and AIO downloads (``{aio_url}obsno=...&level=PPS&...``) of
    simulated pn PPS products, with optional injected faults.

    Parameters
    ----------
    root : Path
        Folder for the database and the generated product files (reused between runs).
    n_observations : int
        Number of observations; kinds follow :data:`~xsa_enhance.standin.catalog.DEFAULT_ORDER`.
    seed : int
        Seed of the observation plan and the simulated data.
    faults : FaultPlan, optional
        Faults to inject (none by default).
    port : int
        TCP port; 0 picks a free one.
    kinds : sequence of str, optional
        Explicit kind of each observation instead of the default mix.
    credentials : (str, str)
        Username and password accepted for proprietary data.
    producer : callable, optional
        Writes an observation's PPS files (default: the simulator).

    Examples
    --------
    >>> with LocalArchive(tmp_path) as archive:  # doctest: +SKIP
    ...     XMMNewtonClass(tap_handler=TapPlus(url=archive.tap_url))
    """

    def __init__(
        self,
        root: Path,
        *,
        n_observations: int = 6,
        seed: int = 0,
        faults: FaultPlan | None = None,
        port: int = 0,
        kinds: Sequence[str] | None = None,
        credentials: tuple[str, str] = DEFAULT_CREDENTIALS,
        producer: Producer | None = None,
    ) -> None:
        self.root = Path(root)
        self.faults = faults or FaultPlan()
        self.credentials = tuple(credentials)
        self._port = int(port)
        self._producer = producer
        self.observations: list[StandinObservation] = plan_observations(
            n_observations, seed=seed, kinds=kinds)
        self._by_obsid = {o.obsid: o for o in self.observations}
        self._faults = FaultState(self.faults)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._db = self.root / "xsa.sqlite"

    # -- lifecycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write the database and produce (or reuse) the product files, without serving."""
        self.root.mkdir(parents=True, exist_ok=True)
        build_database(self._db, self.observations)
        for obs in self.observations:
            if obs.pn_exposures:
                files = ensure_products(self.root, obs, producer=self._producer)
                obs.files = {f.name: f for f in files}

    def start(self) -> LocalArchive:
        """Prepare the data and start serving in a background thread; returns ``self``."""
        if self._server is not None:
            return self
        self.prepare()
        handler = type("_BoundHandler", (_Handler,), {"archive": self})
        server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        server.daemon_threads = True
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="xsa-standin", daemon=True)
        self._thread.start()
        logger.info("local archive serving on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving (pending delayed replies are released)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalArchive:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port served (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the local archive is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def tap_url(self) -> str:
        """TAP service URL, for ``TapPlus(url=...)``."""
        return f"{self.base_url}{TAP_PATH}"

    @property
    def aio_url(self) -> str:
        """AIO URL ending with ``?``, for ``XMMNewtonClass.data_aio_url``."""
        return f"{self.base_url}{AIO_PATH}?"

    def faults_injected(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        return self._faults.injected()

    def observation(self, obsid: str) -> StandinObservation:
        """The observation with this id (KeyError if unknown)."""
        return self._by_obsid[obsid]

    # -- data access for the handler ---------------------------------------------------------
    def _run_sql(self, sql: str, maxrec: int | None) -> tuple[list[str], list[tuple]]:
        conn = sqlite3.connect("file::memory:", uri=True)
        try:
            conn.execute("ATTACH DATABASE ? AS xsa", (f"file:{self._db}?mode=ro",))
            register_functions(conn)
            try:
                cur = conn.execute(sql)
                rows = cur.fetchmany(maxrec) if maxrec is not None else cur.fetchall()
            except sqlite3.Error as exc:
                raise AdqlError(f"query failed: {exc}") from exc
            names = [d[0] for d in cur.description or []]
            return names, rows
        finally:
            conn.close()

    def _match_files(self, obsid: str, params: dict[str, str]) -> list[Path]:
        obs = self._by_obsid.get(obsid)
        if obs is None:
            return []
        if params.get("level", "PPS").upper() != "PPS":
            return []
        want = {
            "inst": params.get("instname"), "expflag": params.get("expflag"),
            "name": params.get("name"), "ext": params.get("extension"),
            "subset": params.get("datasubsetno"), "source": params.get("sourceno"),
        }
        expno = params.get("expno")
        out = []
        for fname, path in sorted(obs.files.items()):
            pps = parse_pps_name(fname)
            if pps is None:
                continue
            if any(v is not None and v != "" and getattr(pps, k).upper() != v.upper()
                   for k, v in want.items()):
                continue
            if expno and expno.isdigit() and int(expno) != int(pps.expno):
                continue
            out.append(path)
        return out
