"""``xsa-enhance archive serve`` and ``xsa-enhance harvest``."""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from xsa_enhance.cli.common import CONE_HELP, UserError, cone_degrees, progress

__all__ = ["archive_group", "harvest_cmd"]

logger = logging.getLogger(__name__)


def _default_root(n: int, seed: int) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xsa-enhance" / f"standin-n{n}-s{seed}"


@click.group("archive")
def archive_group() -> None:
    """The local XSA-compatible archive (for tests, demos and offline work)."""


@archive_group.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TCP port on 127.0.0.1 (0: any free port).")
@click.option("--observations", "n_obs", type=click.IntRange(1, 9999), default=6,
              show_default=True, help="Number of observations (the mix: normal, extended, "
              "flares, corrupt, proprietary, short, timing, MOS-only, then normal).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the generated files (default: a cache folder per N and seed).")
@click.option("--server-errors", type=click.IntRange(0), default=0,
              help="Fault: answer the first N AIO requests per observation with 503.")
@click.option("--delay", "delays", type=click.IntRange(0), default=0,
              help="Fault: delay the first N AIO requests per observation by --delay-s.")
@click.option("--delay-s", type=click.FloatRange(0), default=120.0, show_default=True)
@click.option("--truncations", type=click.IntRange(0), default=0,
              help="Fault: cut the first N AIO downloads per observation in half.")
@click.option("--wrong-content-type", type=click.IntRange(0), default=0,
              help="Fault: answer the first N AIO requests per observation with an HTML page.")
@click.option("--malicious-tar", type=click.Choice(["dotdot", "absolute", "symlink", "hardlink",
                                                    "device"]), default=None,
              help="Fault: serve products in a tar with a hostile member.")
@click.option("--fault-obsid", multiple=True, help="Restrict the AIO faults to these obsids.")
def serve_cmd(port: int, n_obs: int, seed: int, root: Path | None, server_errors: int,
              delays: int, delay_s: float, truncations: int, wrong_content_type: int,
              malicious_tar: str | None, fault_obsid: tuple[str, ...]) -> None:
    """Serve simulated observations over TAP and AIO on 127.0.0.1 until Ctrl-C."""
    from xsa_enhance.standin import FaultPlan, LocalArchive

    plan = FaultPlan(server_errors=server_errors, delays=delays, delay_s=delay_s,
                     truncations=truncations, wrong_content_type=wrong_content_type,
                     malicious_tar=malicious_tar,
                     obsids=frozenset(fault_obsid) if fault_obsid else None)
    root = root or _default_root(n_obs, seed)
    archive = LocalArchive(root, n_observations=n_obs, seed=seed, faults=plan, port=port)
    click.echo(f"preparing {n_obs} observations in {root} ...", err=True)
    try:
        archive.start()
    except OSError as exc:
        raise UserError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    click.echo(f"TAP URL: {archive.tap_url}")
    click.echo(f"AIO URL: {archive.aio_url}")
    click.echo(f"credentials for proprietary data: {archive.credentials[0]} / "
               f"{archive.credentials[1]}")
    for obs in archive.observations:
        click.echo(f"  {obs.obsid}  {obs.kind:<12} {obs.expected}")
    click.echo("serving; press Ctrl-C to stop", err=True)
    stop = threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        archive.stop()


@click.command("harvest")
@click.option("--tap-url", default=None, help="TAP service (default: the real XSA).")
@click.option("--aio-url", default=None, help="AIO download URL (default: the real XSA).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; each observation goes to OUT/<obsid>/.")
@click.option("--obsid", "obsids", multiple=True,
              help="Harvest these observations (no TAP selection). Repeatable.")
@click.option("--min-duration", type=click.FloatRange(0), default=20.0, show_default=True,
              help="Minimum pn exposure, ks.")
@click.option("--cone", type=(str, str, str), default=None, metavar="RA DEC RADIUS",
              help=CONE_HELP)
@click.option("--since", default=None, help="Only PPS processed after this UTC date.")
@click.option("--start", default=None, help="Observations starting at or after this date.")
@click.option("--end", default=None, help="Observations starting before this date.")
@click.option("--include-proprietary", is_flag=True, help="Select proprietary data too.")
@click.option("--credentials", "credentials_file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="ini file with [xmm_newton] username/password (else XSA_USERNAME/XSA_PASSWORD).")
@click.option("--timeout", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="Network timeout, seconds.")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True)
@click.option("--backoff", type=click.FloatRange(0), default=2.0, show_default=True,
              help="Wait before the first retry, seconds (doubled at each retry).")
@click.option("--jobs", type=click.IntRange(1, 32), default=2, show_default=True,
              help="Observations downloaded in parallel.")
@click.option("--summary", "summary_path", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the summary as JSON here.")
def harvest_cmd(tap_url: str | None, aio_url: str | None, out_dir: Path, obsids: tuple[str, ...],
                min_duration: float, cone: tuple[str, str, str] | None, since: str | None,
                start: str | None, end: str | None, include_proprietary: bool,
                credentials_file: Path | None, timeout: float, retries: int, backoff: float, jobs: int,
                summary_path: Path | None) -> None:
    """Select pn observations in the XSA and download their PIEVLI and FBKTSR products.

    Exits with status 1 when any observation failed.
    """
    from xsa_enhance.archive import (
        ArchiveConfig,
        Selection,
        harvest_observation,
        select_observations,
        validate_obsid,
    )
    from xsa_enhance.archive.config import XSA_AIO_URL, XSA_TAP_URL

    config = ArchiveConfig(tap_url=tap_url or XSA_TAP_URL, aio_url=aio_url or XSA_AIO_URL,
                           timeout=timeout, retries=retries, backoff=backoff,
                           credentials_file=credentials_file)
    if credentials_file is not None and not credentials_file.is_file():
        raise UserError(f"{credentials_file}: credentials file not found")
    exposure: dict[str, str | None] = {}
    if obsids:
        todo = [validate_obsid(o) for o in obsids]
        exposure = {o: None for o in todo}
        if cone or since or start or end:
            click.echo("note: --obsid given; selection options are ignored", err=True)
    else:
        selection = Selection(min_duration_ks=min_duration, cone=cone_degrees(cone), since=since, start=start,
                              end=end, include_proprietary=include_proprietary)
        records = select_observations(selection, config=config)
        click.echo(f"selected {len(records)} observations from {config.tap_url}", err=True)
        todo = [r.obsid for r in records]
        exposure = {r.obsid: r.exposure_id for r in records}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None

    def one(obsid: str):
        return harvest_observation(obsid, out_dir, config=config, exposure_id=exposure[obsid])

    results = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for res in progress(pool.map(one, todo), total=len(todo), desc="harvest"):
            results.append(res)
    done = [r for r in results if r.status == "downloaded"]
    cached = [r for r in results if r.status == "cached"]
    failed = [r for r in results if r.status == "failed"]
    click.echo(f"done: {len(done)}  skipped: {len(cached)}  failed: {len(failed)}")
    for r in done:
        extra = f" (no {', '.join(r.missing)})" if r.missing else ""
        click.echo(f"  done     {r.obsid}  {r.exposure_id}{extra}")
    for r in cached:
        click.echo(f"  skipped  {r.obsid}  already harvested and verified")
    for r in failed:
        click.echo(f"  failed   {r.obsid}  {r.reason}")
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps([
            {"obsid": r.obsid, "status": r.status, "reason": r.reason,
             "exposure_id": r.exposure_id, "missing": list(r.missing),
             "products": {k: str(v) for k, v in r.products.items()}} for r in results
        ], indent=1))
    if failed:
        raise SystemExit(1)
