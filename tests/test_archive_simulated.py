"""End to end with the simulator's observations: query -> download -> verify -> read."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from xsa_enhance.archive import ArchiveConfig, Selection, harvest_observation, select_observations
from xsa_enhance.standin import LocalArchive


@pytest.fixture(scope="module")
def sim_archive(tmp_path_factory):
    # Real simulated data (a few seconds per observation): the kinds whose content matters.
    with LocalArchive(tmp_path_factory.mktemp("sim"), kinds=["flares", "timing", "corrupt"],
                      seed=21) as la:
        yield la


def test_simulated_observations_through_astroquery(sim_archive, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = ArchiveConfig(tap_url=sim_archive.tap_url, aio_url=sim_archive.aio_url, timeout=20,
                        retries=1, backoff=0.01)
    flares, timing, corrupt = sim_archive.observations
    records = select_observations(Selection(), config=cfg)
    assert [r.obsid for r in records] == sorted([flares.obsid, corrupt.obsid])
    out = tmp_path / "out"
    res = harvest_observation(flares.obsid, out, config=cfg, exposure_id=records[0].exposure_id)
    assert res.status == "downloaded", res.reason
    with fits.open(res.products["PIEVLI"]) as hdul:
        h = hdul["EVENTS"].header
        assert h["OBS_ID"] == flares.obsid and h["SUBMODE"] == "PrimeFullWindow"
        assert abs(h["RA_PNT"] - flares.ra) < 1e-6 and abs(h["DEC_PNT"] - flares.dec) < 1e-6
        assert h["FILTER"] == flares.exposures[0].filter
        assert len(hdul["EVENTS"].data) > 1000
    with fits.open(res.products["FBKTSR"]) as hdul:
        rate = hdul["RATE"].data["RATE"]
        thr = hdul["RATE"].header["FLCUTTHR"]
        good = np.isfinite(rate)
        # the heavy flares: a real part of the light curve is above the threshold, not all
        frac = float(np.mean(rate[good] > thr))
        assert 0.1 < frac < 0.5
    res = harvest_observation(timing.obsid, out, config=cfg)
    assert res.status == "downloaded" and res.missing == ("FBKTSR",)
    with fits.open(res.products["PIEVLI"]) as hdul:
        assert hdul[0].header.get("DATAMODE", hdul["EVENTS"].header.get("DATAMODE")) == "TIMING"
    res = harvest_observation(corrupt.obsid, out, config=cfg)
    assert res.status == "failed" and "PIEVLI failed verification" in res.reason
    assert sorted(p.name for p in out.iterdir()) == sorted([flares.obsid, timing.obsid])
    assert list(tmp_path.iterdir()) == [out]
