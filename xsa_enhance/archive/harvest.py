"""Download, verification and caching of the pn PPS products of one observation."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import requests
from astropy.io import fits
from astroquery.exceptions import LoginError

from xsa_enhance.archive.client import NoResults, UnexpectedReply, XsaClient, scrub
from xsa_enhance.archive.config import ArchiveConfig, Credentials, load_credentials, validate_obsid
from xsa_enhance.archive.retry import call_with_retries
from xsa_enhance.errors import InputFileError, ObservationError
from xsa_enhance.formats.pps import PpsName, parse_pps_name, structure_problem

__all__ = [
    "HarvestResult",
    "harvest_observation",
    "verify_product",
    "safe_extract",
    "UnsafeArchive",
    "MARKER",
    "DEFAULT_PRODUCTS",
    "OPTIONAL_PRODUCTS",
]

logger = logging.getLogger(__name__)

#: Name of the completion marker written last into a verified observation folder.
MARKER = ".harvest.json"
DEFAULT_PRODUCTS = ("PIEVLI", "FBKTSR")
#: Products whose absence is not an error (timing-mode exposures have no FBKTSR; the events
#: stage then builds the 10-12 keV light curve from the events).
OPTIONAL_PRODUCTS = ("FBKTSR",)


class UnsafeArchive(Exception):
    """A tar reply with a member that could escape or is not a regular file."""


class _Permanent(Exception):
    """A failure retrying cannot fix."""


@dataclass(frozen=True)
class HarvestResult:
    """Outcome of harvesting one observation.

    Attributes
    ----------
    obsid : str
    status : str
        ``"downloaded"``, ``"cached"`` (verified earlier, not downloaded again) or ``"failed"``.
    products : dict of str to Path
        Product name (``"PIEVLI"``, ``"FBKTSR"``) -> file in ``out_dir/<obsid>/``.
    reason : str or None
        Why it failed (``None`` otherwise).
    missing : tuple of str
        Optional products the archive does not have (e.g. FBKTSR in timing mode).
    exposure_id : str or None
        The pn exposure the products belong to (e.g. ``S003``).
    attempts : int
        Download attempts made (0 when cached).
    """

    obsid: str
    status: str
    products: dict[str, Path] = field(default_factory=dict)
    reason: str | None = None
    missing: tuple[str, ...] = ()
    exposure_id: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """Whether the products are available."""
        return self.status in {"downloaded", "cached"}


# ------------------------------------------------------------------------------------------
# Verification


def _gzip_open(path: Path):
    """A binary reader of the gunzipped content (igzip when installed, else gzip)."""
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a dependency; gzip is the fallback
        return gzip.open(path, "rb")
    return igzip.open(path, "rb")


def verify_product(path: Path, *, obsid: str | None = None, product: str | None = None) -> None:
    """Check that a product file is complete and usable.

    Every HDU's data are read (a truncated or corrupt gzip stream fails here), then the
    product's layout is checked (:func:`xsa_enhance.formats.pps.structure_problem`: an event
    list needs an ``EVENTS`` table with the columns the events stage uses and at least one
    ``STDGTInn``; FBKTSR needs a ``RATE`` table with ``TIME`` and ``RATE``). ``OBS_ID``, when
    present, must be ``obsid``.

    Parameters
    ----------
    path : Path
        The file.
    obsid : str, optional
        Expected observation.
    product : str, optional
        ``"PIEVLI"``, ``"FBKTSR"`` or another PPS product type (generic checks only);
        taken from the file name when omitted.

    Raises
    ------
    InputFileError
        Naming the file and what is wrong.
    """
    path = Path(path)
    if product is None:
        parsed = parse_pps_name(path.name)
        product = parsed.name if parsed else None
    plain = None
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        if gz:
            # Decompress once to a scratch file next to it: astropy reading HDU data straight
            # from a gzip stream re-seeks through it and is several times slower.
            # ISA-L's igzip (a dependency, also used by the events reader) decompresses about
            # 1.5x faster than the standard gzip module; the CRC and length are checked alike.
            plain = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.verify")
            with _gzip_open(path) as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        with warnings.catch_warnings():
            # A damaged file shows as odd header cards first; the checks below decide.
            warnings.simplefilter("ignore")
            hdul = fits.open(plain or path, memmap=True)
        with hdul:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hdul.readall()
            for hdu in hdul:
                _ = hdu.data
            header_obsid = None
            for hdu in hdul:
                if "OBS_ID" in hdu.header:
                    header_obsid = str(hdu.header["OBS_ID"]).strip()
                    break
            if obsid is not None and header_obsid is not None and header_obsid != obsid:
                raise InputFileError(path, f"OBS_ID is {header_obsid}, expected {obsid}")
            problem = structure_problem(hdul, product) if product else None
            if problem is not None:
                raise InputFileError(path, problem)
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any read failure means an unusable file
        raise InputFileError(path, f"not a readable FITS file ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:120]})") from None
    finally:
        if plain is not None:
            plain.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------
# Tar replies


def safe_extract(tar_path: Path, dest: Path, *, obsid: str) -> list[Path]:
    """Extract the PPS files of a tar reply into ``dest``, refusing anything unsafe.

    Members must be regular files with relative paths without ``..``; links, devices, FIFOs
    and absolute or escaping paths make the whole archive refused. Files are written under
    their PPS name only (the ``<obsid>/pps/`` folders are dropped); non-PPS members of
    regular type (e.g. a manifest) are ignored.

    Raises
    ------
    UnsafeArchive
        Naming the offending member.
    """
    try:
        return _safe_extract(tar_path, dest, obsid=obsid)
    except (tarfile.TarError, EOFError) as exc:
        raise InputFileError(tar_path, f"not a complete tar archive ({exc})") from None


def _safe_extract(tar_path: Path, dest: Path, *, obsid: str) -> list[Path]:
    out: list[Path] = []
    with tarfile.open(tar_path, mode="r:") as tar:
        members = tar.getmembers()
        for m in members:
            p = PurePosixPath(m.name)
            if m.name.startswith(("/", "\\")) or p.is_absolute() or re.match(r"^[A-Za-z]:", m.name):
                raise UnsafeArchive(f"absolute path {m.name!r}")
            if ".." in p.parts:
                raise UnsafeArchive(f"path with '..' {m.name!r}")
            if m.issym() or m.islnk():
                raise UnsafeArchive(f"link member {m.name!r} -> {m.linkname!r}")
            if m.isdev() or m.isfifo() or not (m.isfile() or m.isdir()):
                raise UnsafeArchive(f"special file member {m.name!r}")
        for m in members:
            if not m.isfile():
                continue
            name = PurePosixPath(m.name).name
            pm = parse_pps_name(name)
            if pm is None or pm.obsid != obsid:
                logger.debug("%s: ignoring tar member %s", obsid, m.name)
                continue
            src = tar.extractfile(m)
            if src is None:  # pragma: no cover - regular members always have data
                continue
            target = dest / name
            with src, open(target, "wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 20)
            out.append(target)
    return out


# ------------------------------------------------------------------------------------------
# Download


def _fetch(client: XsaClient, obsid: str, product: str, work: Path, *, prop: bool,
           exposure_id: str | None) -> list[Path]:
    """One astroquery download of a product; returns the PPS files it gave, in ``work``."""
    dl = work / f".dl-{product}-{uuid.uuid4().hex[:8]}"
    dl.mkdir()
    client.target_dir = dl
    kwargs: dict[str, str] = {"level": "PPS", "instname": "PN"}
    if exposure_id:
        kwargs["expflag"] = exposure_id[0]
        kwargs["expno"] = exposure_id[1:]
    kwargs.update(name=product, extension="FTZ")
    try:
        client.download_data(obsid, cache=False, prop=prop, **kwargs)
        got = [p for p in dl.iterdir() if p.is_file()]
        if len(got) != 1:
            raise InputFileError(dl, f"expected one downloaded file, found {len(got)}")
        file = got[0]
        real = Path(client.last_filename or "").name
        named = parse_pps_name(real)
        if real.lower().endswith(".tar") or (named is None and tarfile.is_tarfile(file)):
            files = safe_extract(file, work, obsid=obsid)
        else:
            if named is None or named.obsid != obsid:
                raise InputFileError(file, f"the archive named it {real!r}, not a PPS file of {obsid}")
            target = work / real
            os.replace(file, target)
            files = [target]
        files = [f for f in files if _pps_name(f).name == product]
        if not files:
            raise NoResults(f"the reply held no {product} file")
        return files
    finally:
        shutil.rmtree(dl, ignore_errors=True)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status in (408, 429)
    return isinstance(exc, (requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError,
                            requests.exceptions.ContentDecodingError, http.client.HTTPException,
                            ConnectionError, TimeoutError, InputFileError, UnexpectedReply, EOFError))


def _describe(exc: BaseException, product: str, creds: Credentials | None) -> str:
    if isinstance(exc, LoginError):
        if creds is None:
            return ("proprietary data (HTTP 401): no XSA credentials configured "
                    "(credentials file or XSA_USERNAME/XSA_PASSWORD)")
        return "proprietary data (HTTP 401): the archive refused the credentials"
    if isinstance(exc, NoResults):
        return f"the archive has no pn {product} for this observation ('No results')"
    if isinstance(exc, UnsafeArchive):
        return f"unsafe tar reply refused: {exc}"
    if isinstance(exc, UnexpectedReply):
        return f"{product}: {exc}"
    if isinstance(exc, InputFileError):
        return f"{product} failed verification: {exc.reason}"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"{product}: HTTP {exc.response.status_code} from the archive"
    if isinstance(exc, requests.Timeout):
        return f"{product}: no answer within the timeout"
    text = " ".join(str(exc).split())[:200]
    return f"{product}: {type(exc).__name__}: {text}"


def _download_with_retries(client: XsaClient, obsid: str, product: str, work: Path, *,
                           config: ArchiveConfig, creds: Credentials | None,
                           exposure_id: str | None) -> tuple[list[Path], int]:
    def attempt() -> list[Path]:
        try:
            files = _fetch(client, obsid, product, work, prop=creds is not None,
                           exposure_id=exposure_id)
            for f in files:
                verify_product(f, obsid=obsid, product=product)
            return files
        except Exception:
            for f in work.glob(f"P{obsid}*{product}*"):
                f.unlink(missing_ok=True)
            raise

    def reason(exc: BaseException) -> str:
        return scrub(_describe(exc, product, creds), creds)

    def give_up(exc: BaseException, attempts: int, exhausted: bool) -> ObservationError:
        return ObservationError(
            obsid, reason(exc) + (f" (after {attempts} attempts)" if attempts > 1 else ""))

    def announce(exc: BaseException, attempt: int, wait: float) -> None:
        logger.warning("%s: %s; retry %d/%d in %.2f s", obsid, reason(exc), attempt + 1,
                       config.retries, wait)

    return call_with_retries(attempt, config=config, transient=_transient, give_up=give_up,
                             announce=announce)


def _pps_name(path: Path) -> PpsName:
    """The name fields of a file this module wrote under its PPS name."""
    parsed = parse_pps_name(path.name)
    assert parsed is not None, path
    return parsed


def _choose_exposure(files: Sequence[Path], wanted: str | None) -> str:
    ids = []
    for f in files:
        ids.append((_pps_name(f).exposure_id, f.stat().st_size))
    if wanted is not None:
        for eid, _ in ids:
            if eid == wanted:
                return eid
    # Scheduled exposures first, then the largest event list.
    ids.sort(key=lambda t: (t[0][0] != "S", -t[1], t[0]))
    return ids[0][0]


def _read_marker(obs_dir: Path, products: Sequence[str]) -> HarvestResult | None:
    marker = obs_dir / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    have = info.get("products", {})
    missing = tuple(info.get("missing", []))
    paths: dict[str, Path] = {}
    for name in products:
        if name in missing:
            continue
        entry = have.get(name)
        if not entry:
            return None
        p = obs_dir / entry["file"]
        try:
            if p.stat().st_size != int(entry["size"]):
                return None
        except OSError:
            return None
        paths[name] = p
    return HarvestResult(obsid=info.get("obsid", obs_dir.name), status="cached", products=paths,
                         missing=tuple(m for m in missing if m in products),
                         exposure_id=info.get("exposure_id"))


def harvest_observation(
    obsid: str,
    out_dir: Path,
    *,
    config: ArchiveConfig | None = None,
    products: Sequence[str] = DEFAULT_PRODUCTS,
    optional: Sequence[str] = OPTIONAL_PRODUCTS,
    exposure_id: str | None = None,
    force: bool = False,
) -> HarvestResult:
    """Download, verify and cache the pn PPS products of one observation.

    Files land in ``out_dir/<obsid>/`` under their real PPS names, which appear only once
    every product is verified (download into a private temporary folder inside ``out_dir``,
    then an atomic rename, the completion marker written before it). A verified observation
    is not downloaded again. Transient faults (5xx, timeouts, resets, truncated or corrupt
    bodies, HTML pages) are retried with exponential backoff; the rest fail at once. Nothing
    is written outside ``out_dir``, whatever the working directory.

    Parameters
    ----------
    obsid : str
        Observation id (10 digits).
    out_dir : Path
        Output root.
    config : ArchiveConfig, optional
        Endpoints, timeout, retries, credentials (default: the real XSA).
    products : sequence of str
        PPS product types to fetch for the pn exposure.
    optional : sequence of str
        Products whose absence ("No results") is recorded in ``missing``, not an error.
    exposure_id : str, optional
        The pn exposure to take (e.g. ``"S003"`` from the selection); by default the
        scheduled exposure with the largest event list.
    force : bool
        Download again even if a verified copy exists.

    Returns
    -------
    HarvestResult
        Never raises for archive or data failures: those come back as ``status="failed"``
        with the reason.
    """
    config = config or ArchiveConfig()
    try:
        obsid = validate_obsid(obsid)
    except ObservationError as exc:
        return HarvestResult(obsid=str(obsid)[:40], status="failed", reason=exc.reason)
    if exposure_id is not None and not re.fullmatch(r"[SUX]\d{3}", exposure_id):
        return HarvestResult(obsid=obsid, status="failed", reason=f"invalid exposure id {exposure_id!r}")
    products = tuple(dict.fromkeys(p.upper() for p in products))
    for p in products:
        if not re.fullmatch(r"[A-Z0-9]{6}", p):
            return HarvestResult(obsid=obsid, status="failed", reason=f"invalid product type {p!r}")
    if "PIEVLI" in products:  # the event list decides the exposure; fetch it first
        products = ("PIEVLI",) + tuple(p for p in products if p != "PIEVLI")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    obs_dir = out_dir / obsid
    if not force:
        cached = _read_marker(obs_dir, products)
        if cached is not None:
            logger.info("%s: cached, not downloaded again", obsid)
            return cached
    creds = load_credentials(config)
    client = XsaClient(config, credentials=creds)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{obsid}-", dir=out_dir))
    attempts = 0
    try:
        found: dict[str, Path] = {}
        missing: list[str] = []
        chosen = exposure_id
        for product in products:
            try:
                files, n = _download_with_retries(
                    client, obsid, product, work, config=config, creds=creds,
                    exposure_id=chosen if product != "PIEVLI" else exposure_id)
            except ObservationError as exc:
                if product in optional and "No results" in exc.reason:
                    logger.info("%s: no %s in the archive (optional)", obsid, product)
                    missing.append(product)
                    continue
                raise
            attempts += n
            if chosen is None:
                chosen = _choose_exposure(files, None)
            keep = [f for f in files if _pps_name(f).exposure_id == chosen]
            for f in files:
                if f not in keep:
                    f.unlink()
            if not keep:
                if product in optional:
                    missing.append(product)
                    continue
                raise ObservationError(obsid, f"no {product} for exposure {chosen}")
            found[product] = keep[0]
        info = {
            "obsid": obsid, "exposure_id": chosen, "missing": missing,
            "products": {k: {"file": v.name, "size": v.stat().st_size} for k, v in found.items()},
            "harvested_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "aio_url": config.aio_url,
        }
        (work / MARKER).write_text(json.dumps(info, indent=1))
        try:
            _publish(work, obs_dir)
        except OSError:
            # Another harvest of the same observation published first: use its copy if valid.
            other = _read_marker(obs_dir, products)
            if other is None:
                raise
            return other
        logger.info("%s: downloaded %s", obsid, ", ".join(sorted(found)))
        return HarvestResult(
            obsid=obsid, status="downloaded",
            products={k: obs_dir / v.name for k, v in found.items()},
            missing=tuple(missing), exposure_id=chosen, attempts=attempts)
    except ObservationError as exc:
        logger.warning("%s: failed: %s", obsid, exc.reason)
        return HarvestResult(obsid=obsid, status="failed", reason=exc.reason, attempts=attempts)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _publish(work: Path, obs_dir: Path) -> None:
    """Atomically replace ``obs_dir`` by the verified folder ``work``."""
    old = None
    if obs_dir.exists():
        old = obs_dir.with_name(f".old-{obs_dir.name}-{uuid.uuid4().hex[:8]}")
        os.replace(obs_dir, old)
    try:
        os.replace(work, obs_dir)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
