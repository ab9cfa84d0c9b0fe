"""Archive faults at the pipeline level: the run finishes, the victims are recorded, the rest is complete.

Each case serves two or three public pn observations from the local archive with one kind of
fault (5xx storms, replies slower than the timeout, truncated bodies, an HTML page instead of
data, "No results", 401) injected into the downloads of one observation (the *victim*), and
runs the whole pipeline through astroquery. The run must finish; the victim must be recorded
in the runs catalog as failed with a reason that says what happened; the other observations
must be complete in the store (slices, and products where models are configured); nothing
half-written may be left. Transient faults on every observation must be absorbed by the
retries and leave a store identical to an undisturbed run.

The harvest-level behaviour of each fault is tested in ``test_archive_harvest.py``; this
module checks what the *pipeline* makes of it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from test_reliability_support import (
    check_store_integrity,
    make_tiny_models,
    outcomes_by_obsid,
    pipeline_dict,
    run_in_process,
    runs_rows,
    snapshot,
)
from xsa_enhance.standin import ALWAYS, FaultPlan, LocalArchive
from xsa_enhance.standin.catalog import plan_observations
from xsa_enhance.standin.products import minimal_products
from xsa_enhance.store import ProductStore

SEED = 21
KINDS = ["normal", "normal", "flares"]


def products_without_pievli_for_the_first(out_dir: Path, obs) -> list[Path]:
    """Minimal products, but the first observation's event list is missing from the archive."""
    files = minimal_products(out_dir, obs)
    if obs.obsid.endswith("000101"):
        for f in files:
            if "PIEVLI" in f.name:
                f.unlink()
        files = [f for f in files if "PIEVLI" not in f.name]
    return files


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Product files shared by every archive of this module (made once)."""
    return tmp_path_factory.mktemp("faults-archive")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def undisturbed(root, models, tmp_path_factory):
    """Store of a fault-free run (the reference for the transient-fault runs)."""
    url = tmp_path_factory.mktemp("ref") / "store.zarr"
    with LocalArchive(root, kinds=KINDS, seed=SEED, producer=minimal_products) as la:
        summary = run_in_process(pipeline_dict(la, url, models))
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.format()
    return url


def _victim(la: LocalArchive) -> str:
    return la.observations[0].obsid


CASES = {
    # name: (fault plan for the victim, archive options, expected reason fragments)
    "5xx-storm": (dict(server_errors=ALWAYS, error_status=502), {}, ["HTTP 502", "after 2 attempts"]),
    "timeout": (dict(delays=ALWAYS, delay_s=2.0), {"timeout_s": 0.4}, ["no answer within the timeout"]),
    "truncated-silent": (dict(truncations=ALWAYS, truncate_declares_length=False), {},
                         ["PIEVLI failed verification", "not a readable FITS file"]),
    "wrong-content-type": (dict(wrong_content_type=ALWAYS), {}, ["text/html", "instead of data"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_permanent_fault_fails_only_the_victim(case, root, models, tmp_path, caplog):
    plan_kw, arch_kw, fragments = CASES[case]
    url = tmp_path / "store.zarr"
    obsids = [o.obsid for o in plan_observations(len(KINDS), seed=SEED, kinds=KINDS)]
    victim = obsids[0]
    plan = FaultPlan(obsids=frozenset({victim}), **plan_kw)
    with LocalArchive(root, kinds=KINDS, seed=SEED, producer=minimal_products, faults=plan) as la:
        doc = pipeline_dict(la, url, models if case == "5xx-storm" else [], retries=1, **arch_kw)
        with caplog.at_level(logging.WARNING):
            summary = run_in_process(doc)
        injected = la.faults_injected()
    assert sum(injected.values()) >= 2, injected  # the fault really hit, on every attempt
    got = outcomes_by_obsid(summary)
    assert set(got) == set(obsids)
    assert got[victim]["status"] == "failed" and got[victim]["stage"] == "harvest"
    for frag in fragments:
        assert frag in got[victim]["reason"], got[victim]["reason"]
    rows = runs_rows(url, summary.run_id)
    assert rows[victim]["status"] == "failed" and rows[victim]["reason"] == got[victim]["reason"]
    for other in obsids[1:]:
        assert got[other]["status"] == "ok", got[other]
        assert rows[other]["status"] == "ok" and rows[other]["n_slices"] > 0
    store = ProductStore(url, mode="r")
    assert store.run_log[-1]["status"] == "finished"
    assert store.run_log[-1]["n_failed"] == 1 and store.run_log[-1]["n_ok"] == len(obsids) - 1
    assert sorted(store.catalog("observations").column("obsid").tolist()) == sorted(obsids[1:])
    assert victim not in store.list_observations()
    n = check_store_integrity(url)
    if models and case == "5xx-storm":
        # every 20 ks slice of the healthy observations got both products
        slices = store.catalog("slices").read()
        assert n["products"] == 2 * int((slices["length_ks"] == 20).sum()) > 0
    assert victim in caplog.text  # the warning names the observation


def test_no_results_is_reported_as_no_such_product(tmp_path_factory, tmp_path):
    root = tmp_path_factory.mktemp("noresults")
    url = tmp_path / "store.zarr"
    with LocalArchive(root, kinds=["normal", "normal"], seed=SEED,
                      producer=products_without_pievli_for_the_first) as la:
        victim = _victim(la)
        summary = run_in_process(pipeline_dict(la, url, [], retries=2))
    got = outcomes_by_obsid(summary)
    assert got[victim]["status"] == "failed"
    assert "no pn PIEVLI" in got[victim]["reason"] and "No results" in got[victim]["reason"]
    # "No results" is not transient: no retries were spent on it
    assert "attempts" not in got[victim]["reason"]
    other = la.observations[1].obsid
    assert got[other]["status"] == "ok"
    assert runs_rows(url, summary.run_id)[victim]["status"] == "failed"
    check_store_integrity(url)


@pytest.mark.parametrize("with_credentials", [False])
def test_401_on_download_is_recorded_as_proprietary(root, tmp_path, monkeypatch, with_credentials):
    """The TAP tables say public, the download servlet says proprietary (rights extended).

    (Wrong credentials through a whole run: ``test_security_credentials.py`` run B.)
    """
    url = tmp_path / "store.zarr"
    monkeypatch.delenv("XSA_USERNAME", raising=False)
    monkeypatch.delenv("XSA_PASSWORD", raising=False)
    if with_credentials:
        monkeypatch.setenv("XSA_USERNAME", "bob")
        monkeypatch.setenv("XSA_PASSWORD", "not-the-password-4711")
    with LocalArchive(root, kinds=KINDS, seed=SEED, producer=minimal_products) as la:
        victim = _victim(la)
        la.observation(victim).public = False
        summary = run_in_process(pipeline_dict(la, url, [], retries=2))
    got = outcomes_by_obsid(summary)
    reason = got[victim]["reason"]
    assert got[victim]["status"] == "failed" and "HTTP 401" in reason
    if with_credentials:
        assert "refused the credentials" in reason and "4711" not in reason
    else:
        assert "no XSA credentials configured" in reason
    assert "attempts" not in reason  # a 401 is not retried
    assert all(got[o.obsid]["status"] == "ok" for o in la.observations[1:])
    check_store_integrity(url)


def test_transient_faults_everywhere_leave_a_store_identical_to_an_undisturbed_run(
        root, models, undisturbed, tmp_path):
    """Every kind of transient fault on every observation and on TAP: absorbed by retries."""
    url = tmp_path / "store.zarr"
    plan = FaultPlan(server_errors=1, delays=1, delay_s=1.0, truncations=1,
                     truncate_declares_length=False, wrong_content_type=1, tap_errors=2)
    with LocalArchive(root, kinds=KINDS, seed=SEED, producer=minimal_products, faults=plan) as la:
        summary = run_in_process(pipeline_dict(la, url, models, retries=5, timeout_s=0.3))
        injected = la.faults_injected()
    n_obs = len(KINDS)
    assert injected["server_error"] == n_obs and injected["delay"] == n_obs
    assert injected["truncation"] == n_obs and injected["wrong_content_type"] == n_obs
    assert injected["tap_error"] == 2
    assert {o["status"] for o in summary.outcomes} == {"ok"}, summary.format()
    check_store_integrity(url)
    assert snapshot(url) == snapshot(undisturbed)


def test_tap_down_is_one_clear_line_and_the_store_is_left_usable(root, models, tmp_path):
    from click.testing import CliRunner

    from xsa_enhance.cli.main import main

    import yaml

    url = tmp_path / "store.zarr"
    with LocalArchive(root, kinds=KINDS, seed=SEED, producer=minimal_products,
                      faults=FaultPlan(tap_errors=ALWAYS)) as la:
        pipeline = tmp_path / "p.yaml"
        pipeline.write_text(yaml.safe_dump(pipeline_dict(la, url, [], retries=1)))
        res = CliRunner().invoke(main, ["run", "--pipeline", str(pipeline)])
        assert la.faults_injected()["tap_error"] == 2  # tried, retried once, gave up
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and "Traceback" not in res.output
    assert "503" in lines[-1] or "TAP" in lines[-1], lines[-1]
    # nothing was processed; the store still opens and holds no observation
    store = ProductStore(url, mode="r")
    assert store.catalog("observations").nrows == 0 and store.list_observations() == []


def test_run_that_could_not_select_is_not_left_running(root, tmp_path):
    from xsa_enhance.errors import XsaError

    url = tmp_path / "store.zarr"
    with LocalArchive(root, kinds=KINDS, seed=SEED, producer=minimal_products,
                      faults=FaultPlan(tap_errors=ALWAYS)) as la:
        with pytest.raises(XsaError):
            run_in_process(pipeline_dict(la, url, [], retries=0))
    last = ProductStore(url, mode="r").run_log[-1]
    assert last["status"] == "failed" and "503" in last.get("error", ""), last
