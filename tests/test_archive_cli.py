"""The ``harvest`` and ``archive serve`` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from astroquery.esa.xmm_newton import XMMNewtonClass
from astroquery.utils.tap.core import TapPlus
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.standin import ALWAYS, FaultPlan, LocalArchive
from xsa_enhance.standin.products import minimal_products

KINDS = ["normal", "extended", "corrupt", "proprietary", "short"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("cli-la"), kinds=KINDS, seed=11,
                      producer=minimal_products) as la:
        yield la


def _invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_harvest_selection_summary_and_exit_status(archive, tmp_path):
    out = tmp_path / "out"
    summary = tmp_path / "summary.json"
    args = ["harvest", "--tap-url", archive.tap_url, "--aio-url", archive.aio_url, "--out",
            str(out), "--retries", "1", "--backoff", "0.01", "--summary", str(summary)]
    r = _invoke(args)
    assert r.exit_code == 1, r.output  # the corrupt observation fails
    ok = [o.obsid for o in archive.observations if o.expected == "ok"]
    bad = next(o for o in archive.observations if o.kind == "corrupt")
    assert "done: 2  skipped: 0  failed: 1" in r.output
    assert f"failed   {bad.obsid}  PIEVLI failed verification" in r.output
    for o in ok:
        assert f"done     {o}" in r.output
    data = {d["obsid"]: d for d in json.loads(summary.read_text())}
    assert sorted(data) == sorted(ok + [bad.obsid])
    # a second run: the good ones are cached (skipped), the bad one fails again
    r = _invoke(args)
    assert r.exit_code == 1 and "done: 0  skipped: 2  failed: 1" in r.output


def test_harvest_obsids_without_tap(archive, tmp_path):
    good = archive.observations[1].obsid
    # a TAP URL nobody listens on proves no TAP query is made
    r = _invoke(["harvest", "--tap-url", "http://127.0.0.1:9/tap-server/tap", "--aio-url",
                 archive.aio_url, "--out", str(tmp_path), "--obsid", good])
    assert r.exit_code == 0, r.output
    assert "done: 1  skipped: 0  failed: 0" in r.output
    assert (tmp_path / good / f"P{good}PNS003PIEVLI0000.FTZ").is_file()


def test_harvest_cone_and_min_duration(archive, tmp_path):
    short = next(o for o in archive.observations if o.kind == "short")
    r = _invoke(["harvest", "--tap-url", archive.tap_url, "--aio-url", archive.aio_url,
                 "--out", str(tmp_path), "--min-duration", "10", "--cone", str(short.ra),
                 str(short.dec), "0.01"])
    assert r.exit_code == 0, r.output
    assert f"done     {short.obsid}" in r.output and "done: 1 " in r.output
    # the same cone in sexagesimal (RA in hours) with the radius as an angle
    from astropy import units as u
    from astropy.coordinates import Angle

    ra = Angle(short.ra, u.deg).to_string(unit=u.hour, sep="hms", precision=3)
    dec = Angle(short.dec, u.deg).to_string(unit=u.deg, sep="dms", precision=2, alwayssign=True)
    r = _invoke(["harvest", "--tap-url", archive.tap_url, "--aio-url", archive.aio_url,
                 "--out", str(tmp_path / "sexa"), "--min-duration", "10", "--cone", ra, dec,
                 "0.6arcmin"])
    assert r.exit_code == 0, r.output
    assert f"done     {short.obsid}" in r.output and "done: 1 " in r.output


@pytest.mark.parametrize("args, message", [
    (["--obsid", "12345"], "not an XMM-Newton observation id"),
    (["--cone", "400", "0", "1"], "cone"),
    (["--since", "yesterday-ish"], "not a date"),
    (["--credentials", "/nonexistent/creds.ini"], "credentials file not found"),
    (["--tap-url", "ftp://example.org/tap"], "tap_url must be an http(s) URL"),
])
def test_user_errors_are_one_line(archive, tmp_path, args, message):
    r = CliRunner().invoke(main, ["harvest", "--tap-url", archive.tap_url, "--aio-url",
                                  archive.aio_url, "--out", str(tmp_path)] + args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_output_folder_that_is_a_file(archive, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = CliRunner().invoke(main, ["harvest", "--aio-url", archive.aio_url, "--out", str(f),
                                  "--obsid", archive.observations[0].obsid])
    assert r.exit_code == 2 and "is a file" in r.output and "Traceback" not in r.output
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = CliRunner().invoke(main, ["harvest", "--aio-url", archive.aio_url, "--out",
                                      str(ro / "sub"), "--obsid", archive.observations[0].obsid])
        if os.geteuid() != 0:  # root can write anywhere
            assert r.exit_code == 2 and "cannot create the output folder" in r.output
        assert "Traceback" not in r.output
    finally:
        ro.chmod(0o700)


def test_unreachable_tap_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["harvest", "--tap-url", "http://127.0.0.1:9/tap-server/tap",
                                  "--aio-url", "http://127.0.0.1:9/x?", "--out", str(tmp_path),
                                  "--retries", "0", "--timeout", "2"])
    assert r.exit_code == 2 and "unreachable" in r.output and "Traceback" not in r.output


def test_faults_reported_per_observation(tmp_path):
    with LocalArchive(tmp_path / "root", kinds=["normal", "extended"], seed=12,
                      producer=minimal_products,
                      faults=FaultPlan(server_errors=ALWAYS, obsids={"0912000201"})) as la:
        r = _invoke(["harvest", "--tap-url", la.tap_url, "--aio-url", la.aio_url, "--out",
                     str(tmp_path / "out"), "--retries", "1", "--backoff", "0", "--jobs", "2"])
    assert r.exit_code == 1
    assert "failed   0912000201  PIEVLI: HTTP 503 from the archive (after 2 attempts)" in r.output
    assert "done     0912000101" in r.output


def test_archive_serve_runs_until_interrupted(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from xsa_enhance.cli.main import main; main()", "archive",
         "serve", "--observations", "1", "--seed", "4", "--root", str(tmp_path / "root")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a test run started in the background of a non-interactive shell ignores SIGINT, and
        # children inherit that: give the server the default handling Ctrl-C has at a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("AIO URL:"):
                break
        tap = next(l.split(": ", 1)[1] for l in lines if l.startswith("TAP URL:"))
        aio = next(l.split(": ", 1)[1] for l in lines if l.startswith("AIO URL:"))
        assert tap.startswith("http://127.0.0.1:") and aio.endswith("data-action-aio?")
        xmm = XMMNewtonClass(tap_handler=TapPlus(url=tap))
        t = xmm.query_xsa_tap("SELECT observation_id FROM xsa.v_public_observations")
        assert list(t["observation_id"]) == ["0904000101"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
