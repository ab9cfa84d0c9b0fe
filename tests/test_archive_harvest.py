"""Harvesting through the real astroquery client against the local archive, with faults."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from astropy.io import fits

from xsa_enhance.archive import (
    ArchiveConfig,
    HarvestResult,
    Selection,
    harvest_observation,
    select_observations,
)
from xsa_enhance.archive.harvest import MARKER
from xsa_enhance.standin import ALWAYS, DEFAULT_CREDENTIALS, FaultPlan, LocalArchive
from xsa_enhance.standin.products import minimal_products

KINDS = ["normal", "extended", "flares", "corrupt", "proprietary", "short", "timing", "mos_only"]


def _config(archive: LocalArchive, **kw) -> ArchiveConfig:
    opts = dict(tap_url=archive.tap_url, aio_url=archive.aio_url, timeout=5.0, retries=3,
                backoff=0.01)
    opts.update(kw)
    return ArchiveConfig(**opts)


def _snapshot(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("la"), kinds=KINDS, seed=5,
                      producer=minimal_products) as la:
        yield la


@pytest.fixture()
def cwd_guard(tmp_path, monkeypatch):
    """Run from an empty working directory and check nothing lands there."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert list(cwd.iterdir()) == [], "something was written to the working directory"


def _by_kind(archive, kind):
    return next(o for o in archive.observations if o.kind == kind)


def test_selection_matches_the_expected_outcomes(archive):
    records = select_observations(Selection(), config=_config(archive))
    expect_selected = sorted(o.obsid for o in archive.observations
                             if o.expected == "ok" or o.expected.startswith("fail"))
    assert [r.obsid for r in records] == expect_selected
    normal = _by_kind(archive, "normal")
    rec = next(r for r in records if r.obsid == normal.obsid)
    assert rec.exposure_id == "S003" and rec.duration == 25000.0  # longest pn exposure
    assert rec.submode == "PrimeFullWindow" and rec.target == normal.target
    assert abs(rec.ra - normal.ra) < 1e-9 and abs(rec.dec - normal.dec) < 1e-9
    ext = next(r for r in records if r.obsid == _by_kind(archive, "extended").obsid)
    assert ext.submode == "PrimeFullWindowExtended"


def test_selection_filters(archive):
    cfg = _config(archive)
    obs = archive.observations
    # min duration: 12 ks includes the short one
    ids = [r.obsid for r in select_observations(Selection(min_duration_ks=10), config=cfg)]
    assert _by_kind(archive, "short").obsid in ids
    # proprietary only with include_proprietary
    ids = [r.obsid for r in select_observations(Selection(include_proprietary=True), config=cfg)]
    assert _by_kind(archive, "proprietary").obsid in ids
    # cone around one observation, small radius
    flare = _by_kind(archive, "flares")
    ids = [r.obsid for r in select_observations(Selection(cone=(flare.ra, flare.dec, 0.05)), config=cfg)]
    assert ids == [flare.obsid]
    # since: processing date strictly after the one of the extended observation
    ext = _by_kind(archive, "extended")
    ids = [r.obsid for r in select_observations(Selection(since=ext.pps_proc_date), config=cfg)]
    assert ids == sorted(o.obsid for o in obs if o.pps_proc_date > ext.pps_proc_date
                         and (o.expected == "ok" or o.expected.startswith("fail")))
    # obsids and time range
    ids = [r.obsid for r in select_observations(Selection(obsids=[ext.obsid, flare.obsid]), config=cfg)]
    assert ids == sorted([ext.obsid, flare.obsid])
    ids = [r.obsid for r in select_observations(
        Selection(start=ext.start_utc, end=flare.start_utc), config=cfg)]
    assert ids == [ext.obsid]


def test_harvest_end_to_end(archive, tmp_path, cwd_guard):
    out = tmp_path / "out"
    cfg = _config(archive)
    for rec in select_observations(Selection(), config=cfg):
        obs = archive.observation(rec.obsid)
        res = harvest_observation(rec.obsid, out, config=cfg, exposure_id=rec.exposure_id)
        if obs.kind == "corrupt":
            assert res.status == "failed" and "PIEVLI failed verification" in res.reason
            assert not (out / rec.obsid).exists()
            continue
        assert res.status == "downloaded", res.reason
        names = {p.name for p in res.products.values()}
        assert names == {f"P{rec.obsid}PNS003PIEVLI0000.FTZ", f"P{rec.obsid}PNS003FBKTSR0000.FTZ"}
        for name, path in res.products.items():
            assert path.parent == out / rec.obsid
            assert path.read_bytes() == (archive.root / rec.obsid / path.name).read_bytes()
    # nothing but the observation folders in out (no temp folders left)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        o.obsid for o in archive.observations if o.expected == "ok")


def test_tar_reply_picks_the_scheduled_exposure(archive, tmp_path, cwd_guard):
    obs = archive.observations[0]  # PIEVLI of S003 and U002 -> a tar
    res = harvest_observation(obs.obsid, tmp_path / "o", config=_config(archive))
    assert res.status == "downloaded", res.reason
    assert res.exposure_id == "S003"
    assert sorted(p.name for p in (tmp_path / "o" / obs.obsid).iterdir()) == sorted(
        [MARKER, f"P{obs.obsid}PNS003PIEVLI0000.FTZ", f"P{obs.obsid}PNS003FBKTSR0000.FTZ"])
    res = harvest_observation(obs.obsid, tmp_path / "u", config=_config(archive), exposure_id="U002")
    assert res.status == "downloaded" and res.exposure_id == "U002"
    assert res.products["PIEVLI"].name == f"P{obs.obsid}PNU002PIEVLI0000.FTZ"
    assert "FBKTSR" in res.missing


def test_cache_is_not_downloaded_again(archive, tmp_path, cwd_guard):
    obs = _by_kind(archive, "extended")
    cfg = _config(archive)
    first = harvest_observation(obs.obsid, tmp_path, config=cfg)
    assert first.status == "downloaded"
    # a server that fails every request proves no request is made
    with LocalArchive(archive.root, kinds=KINDS, seed=5, producer=minimal_products,
                      faults=FaultPlan(server_errors=ALWAYS)) as broken:
        res = harvest_observation(obs.obsid, tmp_path, config=_config(broken))
        assert res.status == "cached" and res.products == first.products
        assert broken.faults_injected() == {}
        # a damaged cache (size changed) is downloaded again -> fails on this broken server
        p = first.products["PIEVLI"]
        p.write_bytes(p.read_bytes()[:100])
        res = harvest_observation(obs.obsid, tmp_path, config=_config(broken, retries=1))
        assert res.status == "failed" and "HTTP 503" in res.reason
        # the old folder stays as it was: nothing partial replaces it
    res = harvest_observation(obs.obsid, tmp_path, config=cfg)
    assert res.status == "downloaded"
    assert res.products["PIEVLI"].read_bytes() == (archive.root / obs.obsid / p.name).read_bytes()


def test_timing_mode_without_fbktsr_is_not_fatal(archive, tmp_path, cwd_guard):
    obs = _by_kind(archive, "timing")
    res = harvest_observation(obs.obsid, tmp_path, config=_config(archive))
    assert res.status == "downloaded" and res.missing == ("FBKTSR",)
    assert list(res.products) == ["PIEVLI"]
    again = harvest_observation(obs.obsid, tmp_path, config=_config(archive))
    assert again.status == "cached" and again.missing == ("FBKTSR",)


def test_mos_only_reports_no_such_product(archive, tmp_path, cwd_guard):
    obs = _by_kind(archive, "mos_only")
    res = harvest_observation(obs.obsid, tmp_path, config=_config(archive))
    assert res.status == "failed"
    assert "no pn PIEVLI" in res.reason and "No results" in res.reason
    assert "after" not in res.reason  # not retried
    assert list(tmp_path.iterdir()) == [cwd_guard]


def test_unknown_and_invalid_obsids(archive, tmp_path, cwd_guard):
    res = harvest_observation("0999999901", tmp_path / "o", config=_config(archive))
    assert res.status == "failed" and "No results" in res.reason
    res = harvest_observation("../../etc", tmp_path / "o", config=_config(archive))
    assert res.status == "failed" and "10 digits" in res.reason
    assert not (tmp_path / "etc").exists()


def test_proprietary_with_and_without_credentials(archive, tmp_path, cwd_guard, monkeypatch):
    obs = _by_kind(archive, "proprietary")
    monkeypatch.delenv("XSA_USERNAME", raising=False)
    monkeypatch.delenv("XSA_PASSWORD", raising=False)
    res = harvest_observation(obs.obsid, tmp_path / "a", config=_config(archive))
    assert res.status == "failed" and "401" in res.reason and "no XSA credentials" in res.reason
    monkeypatch.setenv("XSA_USERNAME", DEFAULT_CREDENTIALS[0])
    monkeypatch.setenv("XSA_PASSWORD", "wrong-password-123")
    res = harvest_observation(obs.obsid, tmp_path / "b", config=_config(archive))
    assert res.status == "failed" and "refused the credentials" in res.reason
    assert "wrong-password-123" not in res.reason
    monkeypatch.delenv("XSA_PASSWORD")
    ini = tmp_path / "creds.ini"
    ini.write_text(f"[xmm_newton]\nusername={DEFAULT_CREDENTIALS[0]}\npassword={DEFAULT_CREDENTIALS[1]}\n")
    res = harvest_observation(obs.obsid, tmp_path / "c", config=_config(archive, credentials_file=ini))
    assert res.status == "downloaded", res.reason
    marker = (tmp_path / "c" / obs.obsid / MARKER).read_text()
    assert DEFAULT_CREDENTIALS[1] not in marker


# ------------------------------------------------------------------------------------------
# Fault modes: each either retried to success or recorded as failed, the others finishing.


def _run_all(la, out, **cfg):
    config = _config(la, **cfg)
    ids = [o.obsid for o in la.observations]
    return {r.obsid: r for r in (harvest_observation(i, out, config=config) for i in ids)}


@pytest.fixture()
def faulty(tmp_path_factory, request):
    """A two-observation archive sharing the generated files, with the plan of the test."""
    root = tmp_path_factory.getbasetemp() / "faulty-root"
    la = LocalArchive(root, kinds=["normal", "extended"], seed=9, producer=minimal_products,
                      faults=request.param)
    with la:
        yield la


def _target(la):
    return la.observations[1].obsid


@pytest.mark.parametrize("faulty", [FaultPlan(server_errors=2)], indirect=True)
def test_5xx_retried_then_ok(faulty, tmp_path, cwd_guard):
    res = _run_all(faulty, tmp_path)
    assert all(r.status == "downloaded" for r in res.values())
    assert faulty.faults_injected()["server_error"] == 2 * 2  # two per observation
    assert res[_target(faulty)].attempts == 3 + 1  # PIEVLI 3 attempts, FBKTSR 1


@pytest.mark.parametrize("faulty", [FaultPlan(server_errors=ALWAYS, obsids=frozenset({"0909000201"}))],
                         indirect=True)
def test_5xx_forever_fails_that_observation_only(faulty, tmp_path, cwd_guard):
    assert _target(faulty) == "0909000201"
    res = _run_all(faulty, tmp_path)
    bad = res[_target(faulty)]
    assert bad.status == "failed" and "HTTP 503" in bad.reason and "after 4 attempts" in bad.reason
    assert res[faulty.observations[0].obsid].status == "downloaded"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cwd", faulty.observations[0].obsid])


@pytest.mark.parametrize("faulty", [FaultPlan(delays=1, delay_s=3.0)], indirect=True)
def test_delay_beyond_timeout_retried(faulty, tmp_path, cwd_guard):
    t0 = time.monotonic()
    res = _run_all(faulty, tmp_path, timeout=0.5)
    assert all(r.status == "downloaded" for r in res.values()), res
    assert faulty.faults_injected()["delay"] == 2
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("faulty", [FaultPlan(delays=ALWAYS, delay_s=2.0, obsids=frozenset({"0909000201"}))],
                         indirect=True)
def test_delay_forever_times_out(faulty, tmp_path, cwd_guard):
    res = _run_all(faulty, tmp_path, timeout=0.3, retries=1)
    assert res[_target(faulty)].status == "failed"
    assert "timeout" in res[_target(faulty)].reason
    assert res[faulty.observations[0].obsid].status == "downloaded"


@pytest.mark.parametrize("faulty", [FaultPlan(truncations=1, truncate_declares_length=True),
                                    FaultPlan(truncations=1, truncate_declares_length=False)],
                         indirect=True)
def test_truncated_body_retried(faulty, tmp_path, cwd_guard):
    res = _run_all(faulty, tmp_path)
    assert all(r.status == "downloaded" for r in res.values()), res
    assert faulty.faults_injected()["truncation"] == 2
    for r in res.values():
        obs = faulty.observation(r.obsid)
        for p in r.products.values():
            assert p.read_bytes() == obs.files[p.name].read_bytes()


@pytest.mark.parametrize("faulty", [FaultPlan(truncations=ALWAYS, truncate_declares_length=False)],
                         indirect=True)
def test_truncated_forever_fails_verification(faulty, tmp_path, cwd_guard):
    res = _run_all(faulty, tmp_path, retries=1)
    for r in res.values():
        assert r.status == "failed" and "PIEVLI failed verification" in r.reason
    assert [p.name for p in tmp_path.iterdir()] == ["cwd"]


@pytest.mark.parametrize("faulty", [FaultPlan(wrong_content_type=1),
                                    FaultPlan(wrong_content_type=ALWAYS)], indirect=True)
def test_wrong_content_type(faulty, tmp_path, cwd_guard):
    res = _run_all(faulty, tmp_path, retries=2)
    if faulty.faults.wrong_content_type == 1:
        assert all(r.status == "downloaded" for r in res.values()), res
    else:
        for r in res.values():
            assert r.status == "failed"
            assert "text/html" in r.reason and "instead of data" in r.reason


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_malicious_tar_refused(tmp_path_factory, tmp_path, cwd_guard, kind):
    root = tmp_path_factory.getbasetemp() / "faulty-root"
    evil = "0909000201"
    with LocalArchive(root, kinds=["normal", "extended"], seed=9, producer=minimal_products,
                      faults=FaultPlan(malicious_tar=kind, obsids={evil})) as la:
        before = _snapshot(tmp_path)
        res = _run_all(la, tmp_path / "out")
    assert res[evil].status == "failed" and "unsafe tar reply refused" in res[evil].reason
    assert res[la.observations[0].obsid].status == "downloaded"
    assert not Path(f"/tmp/xsa-evil-{evil}.txt").exists()
    after = _snapshot(tmp_path)
    assert after - before == {"out", f"out/{la.observations[0].obsid}"} | {
        f"out/{la.observations[0].obsid}/{n}" for n in
        os.listdir(tmp_path / "out" / la.observations[0].obsid)}


@pytest.mark.parametrize("faulty", [FaultPlan(tap_errors=2)], indirect=True)
def test_tap_5xx_retried(faulty):
    records = select_observations(Selection(), config=_config(faulty))
    assert [r.obsid for r in records] == sorted(o.obsid for o in faulty.observations)
    assert faulty.faults_injected()["tap_error"] == 2


@pytest.mark.parametrize("faulty", [FaultPlan(tap_errors=ALWAYS)], indirect=True)
def test_tap_down_is_a_clear_error(faulty):
    from xsa_enhance.archive import ArchiveQueryError

    with pytest.raises(ArchiveQueryError, match="unreachable after 2 attempts"):
        select_observations(Selection(), config=_config(faulty, retries=1))


def test_harvest_result_ok_property():
    assert HarvestResult("0123456789", "cached").ok
    assert not HarvestResult("0123456789", "failed", reason="x").ok


def test_verification_checks_structure(tmp_path):
    from xsa_enhance.archive import verify_product
    from xsa_enhance.errors import InputFileError

    p = tmp_path / "P0123456789PNS003PIEVLI0000.FTZ"
    ev = fits.BinTableHDU.from_columns([fits.Column(name="TIME", format="D", array=[1.0])],
                                       name="EVENTS")
    fits.HDUList([fits.PrimaryHDU(), ev]).writeto(p)
    with pytest.raises(InputFileError, match="EVENTS lacks columns"):
        verify_product(p, obsid="0123456789")
    p.write_bytes(b"<html>hello</html>")
    with pytest.raises(InputFileError, match="not a readable FITS"):
        verify_product(p, obsid="0123456789")


def test_credentials_never_logged_printed_or_stored(tmp_path_factory, tmp_path, cwd_guard,
                                                    monkeypatch, caplog, capsys):
    import logging

    root = tmp_path_factory.getbasetemp() / "prop-root"
    secret = "s3cr3t-Pa55"
    with LocalArchive(root, kinds=["proprietary"], seed=13, producer=minimal_products,
                      credentials=("alice", secret),
                      faults=FaultPlan(server_errors=1, truncations=1)) as la:
        obsid = la.observations[0].obsid
        monkeypatch.setenv("XSA_USERNAME", "alice")
        monkeypatch.setenv("XSA_PASSWORD", secret)
        with caplog.at_level(logging.DEBUG):
            res = harvest_observation(obsid, tmp_path / "out", config=_config(la))
            assert res.status == "downloaded", res.reason
            monkeypatch.setenv("XSA_PASSWORD", secret + "x")  # wrong: refused, not echoed
            bad = harvest_observation(obsid, tmp_path / "out2", config=_config(la))
    assert bad.status == "failed" and secret not in bad.reason
    assert la.faults_injected()["server_error"] == 1
    assert secret not in caplog.text
    out = capsys.readouterr()
    assert secret not in out.out and secret not in out.err
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes()


@pytest.mark.parametrize("faulty", [FaultPlan(tap_delays=1, delay_s=3.0)], indirect=True)
def test_tap_timeout_retried(faulty):
    t0 = time.monotonic()
    records = select_observations(Selection(), config=_config(faulty, timeout=0.5))
    assert [r.obsid for r in records] == sorted(o.obsid for o in faulty.observations)
    assert faulty.faults_injected()["tap_delay"] == 1
    assert time.monotonic() - t0 < 3.0  # did not wait for the delayed reply


def test_concurrent_harvests_of_one_observation(archive, tmp_path, cwd_guard):
    from concurrent.futures import ThreadPoolExecutor

    obs = _by_kind(archive, "extended")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: harvest_observation(obs.obsid, tmp_path, config=_config(archive)),
                                range(3)))
    assert all(r.ok for r in results), [r.reason for r in results]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cwd", obs.obsid])
    files = sorted(p.name for p in (tmp_path / obs.obsid).iterdir())
    assert files == sorted([MARKER, f"P{obs.obsid}PNS003PIEVLI0000.FTZ", f"P{obs.obsid}PNS003FBKTSR0000.FTZ"])
