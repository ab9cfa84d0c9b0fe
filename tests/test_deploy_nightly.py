"""The nightly job: wrapper (lock, rotation, arguments, time limit), cron entry, systemd units."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
WRAPPER = DEPLOY / "nightly" / "xsa-enhance-nightly.sh"

# Stand-in for xsa-enhance: records its arguments, signals that it started, and waits until the
# test lets it finish (or 20 s); exits with $FAKE_STATUS.
FAKE = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    echo "$*" >> "$FAKE_CALLS"
    echo "fake run output"
    touch "$FAKE_STARTED"
    for _ in $(seq 1 200); do
        [[ -e "$FAKE_RELEASE" ]] && break
        sleep 0.1
    done
    exit "${FAKE_STATUS:-0}"
    """
)


@pytest.fixture()
def nightly(tmp_path):
    fake = tmp_path / "fake-xsa-enhance"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XSA_")}
    env.update(
        XSA_ENHANCE_HOME=str(tmp_path / "home"),
        XSA_STORE=str(tmp_path / "store"),
        XSA_LOG_DIR=str(tmp_path / "logs"),
        XSA_ENHANCE=str(fake),
        FAKE_CALLS=str(tmp_path / "calls"),
        FAKE_STARTED=str(tmp_path / "started"),
        FAKE_RELEASE=str(tmp_path / "release"),
    )
    return tmp_path, env


def _calls(tmp: Path) -> list[str]:
    f = tmp / "calls"
    return f.read_text().splitlines() if f.exists() else []


def test_shell_scripts_parse():
    scripts = [p for p in DEPLOY.rglob("*") if p.suffix in (".sh", ".sbatch")]
    assert WRAPPER in scripts and len(scripts) >= 2
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert os.access(script, os.X_OK) or script.suffix == ".sbatch", script


def test_second_concurrent_run_exits_without_running(nightly):
    tmp, env = nightly
    (tmp / "release").unlink(missing_ok=True)
    first = subprocess.Popen(["bash", str(WRAPPER)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (tmp / "started").exists():
            assert time.monotonic() < deadline and first.poll() is None, "first run never started"
            time.sleep(0.05)
        t0 = time.monotonic()
        second = subprocess.run(
            ["bash", str(WRAPPER)], env=env, capture_output=True, text=True, timeout=20
        )
        assert time.monotonic() - t0 < 10  # it did not wait for the lock
        assert second.returncode == 0
        assert "skipped: a previous nightly run still holds" in second.stderr
        assert len(_calls(tmp)) == 1  # only the first run invoked xsa-enhance
        assert first.poll() is None  # and the first one is unaffected
    finally:
        (tmp / "release").touch()
        first.wait(timeout=30)
    assert first.returncode == 0
    # the lock is released with the first run: the next invocation runs
    third = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, timeout=30)
    assert third.returncode == 0
    assert len(_calls(tmp)) == 2
    log = (tmp / "logs" / "xsa-enhance-nightly.log").read_text()
    assert log.count("start: pipeline") == 2 and log.count("skipped:") == 1


def test_arguments_log_and_exit_status(nightly):
    tmp, env = nightly
    (tmp / "release").touch()
    env.update(FAKE_STATUS="3", XSA_RUN_ARGS="--scheduler-file /shared/s.json --force")
    proc = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 3
    (call,) = _calls(tmp)
    assert call == (
        f"-v run --pipeline {tmp}/home/pipelines/nightly-incremental.yaml "
        f"--store {tmp}/store --scheduler-file /shared/s.json --force"
    )
    log = (tmp / "logs" / "xsa-enhance-nightly.log").read_text().splitlines()
    assert "fake run output" in log
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ end: exit status 3", log[-1])


def test_requires_store(nightly):
    tmp, env = nightly
    del env["XSA_STORE"]
    proc = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "XSA_STORE" in proc.stderr
    assert _calls(tmp) == []


def test_size_based_rotation_keeps_n_files(nightly):
    tmp, env = nightly
    (tmp / "release").touch()
    logs = tmp / "logs"
    logs.mkdir()
    log = logs / "xsa-enhance-nightly.log"
    env.update(XSA_LOG_MAX_BYTES="1000", XSA_LOG_KEEP="3")
    log.write_text("A" * 1500)
    (logs / "xsa-enhance-nightly.log.1").write_text("one")
    (logs / "xsa-enhance-nightly.log.2").write_text("two")
    (logs / "xsa-enhance-nightly.log.3").write_text("three")
    subprocess.run(["bash", str(WRAPPER)], env=env, check=True, timeout=30)
    assert (logs / "xsa-enhance-nightly.log.1").read_text() == "A" * 1500
    assert (logs / "xsa-enhance-nightly.log.2").read_text() == "one"
    assert (logs / "xsa-enhance-nightly.log.3").read_text() == "two"  # "three" dropped
    assert not (logs / "xsa-enhance-nightly.log.4").exists()
    assert "start: pipeline" in log.read_text() and len(log.read_text()) < 1000
    # a small log is not rotated
    subprocess.run(["bash", str(WRAPPER)], env=env, check=True, timeout=30)
    assert (logs / "xsa-enhance-nightly.log.1").read_text() == "A" * 1500
    assert log.read_text().count("start: pipeline") == 2


def test_runtime_limit_stops_the_run(nightly):
    tmp, env = nightly
    (tmp / "release").unlink(missing_ok=True)
    env["XSA_MAX_RUNTIME"] = "1"
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(WRAPPER)], env=env, capture_output=True, timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 124
    assert "stopped after 1" in (tmp / "logs" / "xsa-enhance-nightly.log").read_text()


def test_crontab_entry():
    text = (DEPLOY / "nightly" / "xsa-enhance.crontab").read_text()
    jobs = [
        l for l in text.splitlines() if l.strip() and not l.startswith("#") and "=" not in l.split()[0]
    ]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    minute, hour, dom, month, dow, command = fields
    assert 0 <= int(minute) <= 59 and 0 <= int(hour) <= 23
    assert (dom, month, dow) == ("*", "*", "*")  # every night
    assert command.strip() == "$XSA_ENHANCE_HOME/deploy/nightly/xsa-enhance-nightly.sh"
    assert re.search(r"^XSA_STORE=\S+", text, re.M) and re.search(r"^SHELL=/bin/bash$", text, re.M)


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case sensitive
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_content():
    service = _unit(DEPLOY / "systemd" / "xsa-enhance-nightly.service")
    timer = _unit(DEPLOY / "systemd" / "xsa-enhance-nightly.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("/deploy/nightly/xsa-enhance-nightly.sh")
    assert timer["Timer"]["Unit"] == "xsa-enhance-nightly.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert timer["Timer"]["OnCalendar"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path):
    """systemd's own parser accepts both units (every key known, every value parseable)."""
    timer_src = DEPLOY / "systemd" / "xsa-enhance-nightly.timer"
    calendar = _unit(timer_src)["Timer"]["OnCalendar"]
    subprocess.run(["systemd-analyze", "calendar", calendar], check=True, capture_output=True)
    text = (DEPLOY / "systemd" / "xsa-enhance-nightly.service").read_text()
    text = text.replace("/opt/xsa-enhance/deploy/nightly/xsa-enhance-nightly.sh", str(WRAPPER))
    text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
    (tmp_path / "xsa-enhance-nightly.service").write_text(text)
    shutil.copy(timer_src, tmp_path / "xsa-enhance-nightly.timer")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no",
         str(tmp_path / "xsa-enhance-nightly.service"), str(tmp_path / "xsa-enhance-nightly.timer")],
        capture_output=True, text=True,
    )
    ours = [l for l in (proc.stdout + proc.stderr).splitlines() if "xsa-enhance-nightly" in l]
    assert ours == [], ours


def test_logrotate_policy():
    text = (DEPLOY / "logrotate" / "xsa-enhance").read_text()
    m = re.search(r"^(/\S+\.log)\s*\{(.*?)^\}", text, re.M | re.S)
    assert m, "no log path block"
    directives = {l.split()[0] for l in m.group(2).splitlines() if l.strip()}
    assert {"rotate", "compress", "missingok", "notifempty"} <= directives
    # the logs it rotates are where the systemd unit puts them
    service = (DEPLOY / "systemd" / "xsa-enhance-nightly.service").read_text()
    env = dict(re.findall(r"^Environment=(\w+)=(\S+)$", service, re.M))
    assert m.group(1).startswith(env["XSA_LOG_DIR"] + "/")
