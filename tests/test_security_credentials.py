"""Credentials never appear in logs, output, the store, provenance or error messages.

Whole pipeline runs through the CLI (``xsa-enhance -vv run``, DEBUG logging of every library,
urllib3's request lines included) against a local archive whose first observation needs
credentials (the download servlet answers 401 without them), with transient faults so that
retries, warnings and error paths are exercised too:

- run A: correct credentials from an ini file (``--credentials``): the proprietary observation
  is harvested;
- run B: a wrong password from ``XSA_USERNAME``/``XSA_PASSWORD``: refused, recorded as failed.

Afterwards every byte that the runs produced is searched for the username and the password:
stdout, stderr, the summary JSON, every file of the store (catalogs, attributes, provenance),
the kept downloads and the work folder. The harvest-level check is in
``test_archive_harvest.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_reliability_support import pipeline_dict
from xsa_enhance.standin import FaultPlan, LocalArchive
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore

USER = "xsa-user-Qz81Lm"
PASSWORD = "pw-5ecr3t-Vb7Tq9"
WRONG = "wr0ng-Pw-Kk2Jd4"


def _cli(args: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XSA_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", "from xsa_enhance.cli.main import main; main()",
                           *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=500)


def _files(*roots: Path) -> list[Path]:
    out = []
    for r in roots:
        if r.is_file():
            out.append(r)
        elif r.is_dir():
            out += [p for p in r.rglob("*") if p.is_file()]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("creds")
    plan = FaultPlan(server_errors=1, truncations=1, truncate_declares_length=True)
    results = {}
    with LocalArchive(tmp / "archive", kinds=["normal", "normal"], seed=91,
                      producer=minimal_products, credentials=(USER, PASSWORD), faults=plan) as la:
        prop = la.observations[0]
        prop.public = False  # the servlet now wants credentials for it
        ini = tmp / "xsa.ini"
        ini.write_text(f"[xmm_newton]\nusername = {USER}\npassword = {PASSWORD}\n")
        for name, creds, env in (("A", str(ini), {}),
                                 ("B", None, {"XSA_USERNAME": USER, "XSA_PASSWORD": WRONG})):
            d = tmp / name
            d.mkdir()
            doc = pipeline_dict(la, d / "store.zarr", [], retries=2, work_dir=str(d / "work"),
                                keep_downloads=True)
            if creds:
                doc["archive"]["credentials_file"] = creds
            (d / "p.yaml").write_text(yaml.safe_dump(doc))
            proc = _cli(["-vv", "run", "--pipeline", str(d / "p.yaml"), "--summary-json",
                         str(d / "summary.json")], env, cwd=d)
            results[name] = (d, proc)
        injected = la.faults_injected()
    return prop.obsid, results, injected


def test_runs_did_use_the_credentials(runs):
    obsid, results, injected = runs
    assert injected.get("server_error", 0) >= 2 and injected.get("truncation", 0) >= 2
    for name, (d, proc) in results.items():
        assert proc.returncode == 0, proc.stderr[-2000:]
        status = {o["obsid"]: o for o in json.loads((d / "summary.json").read_text())["outcomes"]}
        if name == "A":
            assert status[obsid]["status"] == "ok", status[obsid]
        else:
            assert status[obsid]["status"] == "failed"
            assert "HTTP 401" in status[obsid]["reason"] and "refused the credentials" in status[obsid]["reason"]
    # DEBUG logging was really on (request lines of the downloads are in the log)
    assert "data-action-aio" in results["A"][1].stderr


@pytest.mark.parametrize("secret", [PASSWORD, WRONG, USER])
def test_secret_is_nowhere(runs, secret):
    _, results, _ = runs
    leaks = []
    for name, (d, proc) in results.items():
        for label, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if secret in text:
                line = next(ln for ln in text.splitlines() if secret in ln)
                leaks.append(f"run {name} {label}: {line[:200]}")
        for f in _files(d / "store.zarr", d / "work", d / "summary.json"):
            if secret.encode() in f.read_bytes():
                leaks.append(f"run {name} file {f.relative_to(d)}")
    assert leaks == []


def test_reasons_and_provenance_in_the_store_are_clean(runs):
    _, results, _ = runs
    for d, _ in results.values():
        store = ProductStore(d / "store.zarr", mode="r")
        text = json.dumps({n: [dict(zip(t.colnames, map(str, r))) for r in t]
                           for n in ("observations", "slices", "runs")
                           for t in [store.catalog(n).read()]})
        text += json.dumps(store.run_log, default=str)
        for obsid in store.list_observations():
            text += json.dumps(store.observation_attrs(obsid), default=str)
        assert "AIOPWD" not in text and "AIOUSER" not in text
        assert PASSWORD not in text and WRONG not in text and USER not in text
