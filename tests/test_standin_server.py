"""The local archive answers astroquery's TAP and AIO requests like the XSA does."""

from __future__ import annotations

import io
import math
import os
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import requests
from astropy.io import fits
from astroquery.esa.xmm_newton import XMMNewtonClass
from astroquery.exceptions import LoginError
from astroquery.utils.tap.core import TapPlus

from xsa_enhance.standin import DEFAULT_CREDENTIALS, LocalArchive
from xsa_enhance.standin.products import minimal_products

ALL_KINDS = ["normal", "extended", "flares", "corrupt", "proprietary", "short", "timing", "mos_only"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("standin")
    with LocalArchive(root, kinds=ALL_KINDS, seed=3, producer=minimal_products) as la:
        yield la


@pytest.fixture()
def xmm(archive):
    x = XMMNewtonClass(tap_handler=TapPlus(url=archive.tap_url))
    x.data_aio_url = archive.aio_url
    return x


def _ids(table):
    return sorted(str(v) for v in table["observation_id"])


def test_listens_on_loopback_only(archive):
    assert archive.tap_url.startswith("http://127.0.0.1:")
    assert archive.aio_url.endswith("data-action-aio?")
    assert archive._server.server_address[0] == "127.0.0.1"


def test_tables_and_columns_through_astroquery(xmm):
    assert xmm.get_tables() == ["xsa.v_public_observations", "xsa.v_all_observations",
                                "xsa.v_exposure", "xsa.v_instrument_mode"]
    cols = xmm.get_columns("xsa.v_public_observations")
    for c in ("observation_id", "ra", "dec", "duration", "start_utc", "end_utc",
              "position_angle", "revolution", "target", "proprietary_end_date",
              "pps_version", "pps_proc_date", "sas_version", "observation_fov_scircle"):
        assert c in cols
    assert "target" not in xmm.get_columns("xsa.v_all_observations")
    assert {"exposure_id", "instrument", "instrument_mode_oid", "mode_friendly_name", "filter",
            "is_scientific", "epic_bkg_count_rate"} <= set(xmm.get_columns("xsa.v_exposure"))


def test_public_view_hides_proprietary(archive, xmm):
    public = [o.obsid for o in archive.observations if o.public]
    everything = [o.obsid for o in archive.observations]
    assert _ids(xmm.query_xsa_tap("SELECT observation_id FROM xsa.v_public_observations")) == sorted(public)
    assert _ids(xmm.query_xsa_tap("SELECT observation_id FROM xsa.v_all_observations")) == sorted(everything)
    assert len(public) == len(everything) - 1


def test_where_operators_against_python(archive, xmm):
    obs = archive.observations
    # comparisons, AND/OR/NOT, BETWEEN, IN, LIKE computed independently in Python
    lo, hi = sorted([obs[1].ra, obs[5].ra])
    q = (f"SELECT observation_id, ra FROM xsa.v_all_observations WHERE ra BETWEEN {lo} AND {hi} "
         f"AND NOT observation_id IN ('{obs[1].obsid}') OR observation_id LIKE '%0801'")
    expect = {o.obsid for o in obs if (lo <= o.ra <= hi and o.obsid != obs[1].obsid)
              or o.obsid.endswith("0801")}
    assert set(_ids(xmm.query_xsa_tap(q))) == expect
    q = "SELECT TOP 3 observation_id, dec FROM xsa.v_all_observations ORDER BY dec DESC"
    t = xmm.query_xsa_tap(q)
    assert list(t["observation_id"]) == [o.obsid for o in sorted(obs, key=lambda o: -o.dec)[:3]]
    assert np.allclose(t["dec"], sorted((o.dec for o in obs), reverse=True)[:3])


def test_join_with_aliases_and_types(archive, xmm):
    q = ("SELECT o.observation_id, e.exposure_id, e.duration, e.is_scientific, m.mode "
         "FROM xsa.v_all_observations AS o JOIN xsa.v_exposure e ON e.observation_id = o.observation_id "
         "JOIN xsa.v_instrument_mode AS m ON m.instrument_mode_oid = e.instrument_mode_oid "
         "WHERE e.instrument = 'EPN' ORDER BY o.observation_id, e.exposure_id")
    t = xmm.query_xsa_tap(q)
    expect = sorted((o.obsid, e.exposure_id, e.duration, e.mode) for o in archive.observations
                    for e in o.pn_exposures)
    got = [(str(r["observation_id"]), str(r["exposure_id"]), float(r["duration"]), str(r["mode"]))
           for r in t]
    assert got == expect
    assert t["is_scientific"].dtype == bool and all(t["is_scientific"])
    assert t["duration"].unit is None or True  # units are informative only


def _sep(ra1, dec1, ra2, dec2):
    # spherical law of cosines, an independent formula
    r = math.radians
    c = (math.sin(r(dec1)) * math.sin(r(dec2))
         + math.cos(r(dec1)) * math.cos(r(dec2)) * math.cos(r(ra1 - ra2)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


@pytest.mark.parametrize("radius", [0.2, 30.0, 90.0])
def test_cone_predicates(archive, xmm, radius):
    c = archive.observations[2]
    ra0, dec0 = c.ra + 1.0, c.dec
    q = (f"SELECT observation_id FROM xsa.v_all_observations WHERE "
         f"1=CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra0}, {dec0}, {radius}))")
    expect = sorted(o.obsid for o in archive.observations if _sep(o.ra, o.dec, ra0, dec0) <= radius)
    assert _ids(xmm.query_xsa_tap(q)) == expect
    q = (f"SELECT observation_id FROM xsa.v_all_observations WHERE "
         f"1=INTERSECTS(observation_fov_scircle, CIRCLE('ICRS', {ra0}, {dec0}, {radius}))")
    expect = sorted(o.obsid for o in archive.observations
                    if _sep(o.ra, o.dec, ra0, dec0) <= radius + 0.25)
    assert _ids(xmm.query_xsa_tap(q)) == expect


@pytest.mark.parametrize("query, message", [
    ("SELECT * FROM xsa.v_exposure LIMIT 3", "LIMIT"),
    ("SELECT observation_id FROM xsa.v_exposure UNION SELECT observation_id FROM xsa.v_exposure", "UNION"),
    ("SELECT * FROM xsa.v_exposure WHERE 1=CONTAINS(POINT('ICRS',1,2), BOX('ICRS',1,2,3,4))", "BOX"),
    ("SELECT * FROM xsa.nothing_here", "nothing_here"),
    ("SELECT nosuchcolumn FROM xsa.v_exposure", "nosuchcolumn"),
    ("DELETE FROM xsa.v_exposure", "SELECT"),
    ("SELECT * FROM (SELECT * FROM xsa.v_exposure) AS t", "sub-queries"),
])
def test_unsupported_adql_is_an_adql_error(xmm, query, message):
    with pytest.raises(requests.HTTPError) as err:
        xmm.query_xsa_tap(query)
    assert "Error 400" in str(err.value)
    assert message in str(err.value)


def test_error_reply_is_a_query_status_error_votable(archive):
    data = "REQUEST=doQuery&LANG=ADQL&FORMAT=votable&QUERY=SELECT+*+FROM+xsa.v_exposure+LIMIT+1"
    req = urllib.request.Request(archive.tap_url + "/sync", data=data.encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    body = err.value.read().decode()
    assert err.value.code == 400
    assert '<INFO name="QUERY_STATUS" value="ERROR">' in body


def test_aio_single_file_reply_shape(archive):
    obs = archive.observations[1]
    url = f"{archive.aio_url}obsno={obs.obsid}&level=PPS&instname=PN&name=PIEVLI&extension=FTZ"
    r = requests.get(url, timeout=10)
    assert r.status_code == 200
    assert "Content-Length" not in r.headers
    assert r.headers["Content-Disposition"] == f'inline; filename="P{obs.obsid}PNS003PIEVLI0000.FTZ"'
    assert "text" not in r.headers["Content-Type"]
    assert r.content == (archive.root / obs.obsid / f"P{obs.obsid}PNS003PIEVLI0000.FTZ").read_bytes()


def test_aio_several_files_is_a_tar_of_obsid_pps(archive):
    obs = archive.observations[0]  # has a second pn exposure U002
    url = f"{archive.aio_url}obsno={obs.obsid}&level=PPS&instname=PN&name=PIEVLI&extension=FTZ"
    r = requests.get(url, timeout=10)
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = sorted(tar.getnames())
    assert names == [f"{obs.obsid}/pps/P{obs.obsid}PNS003PIEVLI0000.FTZ",
                     f"{obs.obsid}/pps/P{obs.obsid}PNU002PIEVLI0000.FTZ"]
    # expflag/expno narrow it to one file
    r = requests.get(url + "&expflag=U&expno=002", timeout=10)
    assert "PNU002PIEVLI" in r.headers["Content-Disposition"]


def test_aio_no_results_and_astroquery_crash(archive, xmm, tmp_path, monkeypatch):
    mos = next(o for o in archive.observations if o.kind == "mos_only")
    url = f"{archive.aio_url}obsno={mos.obsid}&level=PPS&instname=PN&name=PIEVLI&extension=FTZ"
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.text == "No results"
    assert r.headers["Content-Type"].startswith("text/")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnboundLocalError):  # astroquery 0.4.11's own behaviour
        xmm.download_data(mos.obsid, level="PPS", instname="PN", name="PIEVLI", extension="FTZ",
                          cache=False)


def test_aio_proprietary_needs_credentials(archive, xmm, tmp_path, monkeypatch):
    prop = next(o for o in archive.observations if o.kind == "proprietary")
    base = f"{archive.aio_url}obsno={prop.obsid}&level=PPS&instname=PN&name=PIEVLI&extension=FTZ"
    assert requests.get(base, timeout=10).status_code == 401
    assert requests.get(base + "&AIOUSER=x&AIOPWD=y", timeout=10).status_code == 401
    user, pwd = DEFAULT_CREDENTIALS
    assert requests.get(base + f"&AIOUSER={user}&AIOPWD={pwd}", timeout=10).status_code == 200
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LoginError):
        xmm.download_data(prop.obsid, level="PPS", instname="PN", name="PIEVLI", extension="FTZ",
                          cache=False)
    ini = tmp_path / "creds.ini"
    ini.write_text(f"[xmm_newton]\nusername={user}\npassword={pwd}\n")
    xmm.download_data(prop.obsid, level="PPS", instname="PN", name="PIEVLI", extension="FTZ",
                      cache=False, prop=True, credentials_file=str(ini))
    assert (tmp_path / f"{prop.obsid}.FTZ").is_file()


def test_astroquery_download_writes_to_cwd_and_loses_names(archive, xmm, tmp_path, monkeypatch):
    """The behaviour the harvester works around, reproduced with the real client."""
    obs = archive.observations[1]
    monkeypatch.chdir(tmp_path)
    xmm.download_data(obs.obsid, level="PPS", instname="PN", name="FBKTSR", extension="FTZ",
                      cache=False)
    assert os.listdir(tmp_path) == [f"{obs.obsid}.FTZ"]
    with fits.open(tmp_path / f"{obs.obsid}.FTZ") as hdul:
        assert "RATE" in [h.name for h in hdul]


def test_timing_mode_has_no_fbktsr(archive):
    timing = next(o for o in archive.observations if o.kind == "timing")
    assert sorted(timing.files) == [f"P{timing.obsid}PNS003PIEVLI0000.FTZ"]
    with fits.open(timing.files[f"P{timing.obsid}PNS003PIEVLI0000.FTZ"]) as hdul:
        assert hdul["EVENTS"].header["DATAMODE"] == "TIMING"


def test_expected_outcomes_cover_the_mix(archive):
    outcomes = {o.kind: o.expected for o in archive.observations}
    assert outcomes["normal"] == "ok"
    assert outcomes["corrupt"].startswith("fail:")
    for k in ("proprietary", "short", "timing", "mos_only"):
        assert outcomes[k].startswith("skip:")
    assert len({o.obsid for o in archive.observations}) == len(archive.observations)


def test_files_are_cached_between_runs(tmp_path):
    calls = []

    def counting(out_dir, obs):
        calls.append(obs.obsid)
        return minimal_products(out_dir, obs)

    with LocalArchive(tmp_path, kinds=["normal", "extended"], producer=counting):
        pass
    first = len(calls)
    with LocalArchive(tmp_path, kinds=["normal", "extended"], producer=counting):
        pass
    assert first == 2 and len(calls) == 2
