"""The main calls against the real XSA (skipped unless ``--remote-data`` is given)."""

from __future__ import annotations

import pytest

from xsa_enhance.archive import ArchiveConfig, Selection, harvest_observation, select_observations

# A public pn full-frame observation (the one the astroquery documentation uses).
PUBLIC_OBSID = "0112880801"


@pytest.mark.remote_data
def test_real_xsa_tables_have_the_columns_we_use():
    from astroquery.esa.xmm_newton import XMMNewtonClass

    xmm = XMMNewtonClass()
    cols = set(xmm.get_columns("xsa.v_exposure"))
    assert {"observation_id", "exposure_id", "instrument", "instrument_mode_oid", "duration",
            "is_scientific", "filter"} <= cols
    assert {"instrument_mode_oid", "mode"} <= set(xmm.get_columns("xsa.v_instrument_mode"))


@pytest.mark.remote_data
def test_real_xsa_selection_in_a_cone():
    # around the Lockman Hole, a deep field with many long pn full-frame observations
    records = select_observations(Selection(cone=(163.0, 57.5, 0.5)), config=ArchiveConfig())
    assert records, "expected pn observations in the Lockman Hole"
    for r in records:
        assert r.duration >= 20000 and r.submode in ("PrimeFullWindow", "PrimeFullWindowExtended")


@pytest.mark.remote_data
def test_real_xsa_harvest_one_observation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = harvest_observation(PUBLIC_OBSID, tmp_path / "out", config=ArchiveConfig(timeout=300))
    assert res.status == "downloaded", res.reason
    assert res.products["PIEVLI"].name.startswith(f"P{PUBLIC_OBSID}PN")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
