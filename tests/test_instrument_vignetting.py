"""Vignetting: the table against the real calibration file, and the event simulator's flat field."""

import numpy as np
import pytest
from astropy.io import fits

from xsa_enhance.instrument import geometry as geo
from xsa_enhance.instrument.vignetting import VIGNETTING_TABLE, vignetting


def test_table_values_and_interpolation() -> None:
    for theta, v in VIGNETTING_TABLE:
        assert vignetting(theta) == pytest.approx(v)
    assert vignetting(1.0) == pytest.approx((1.0 + 0.953) / 2)
    assert vignetting(16.0) < 0.329
    assert np.all(np.diff(vignetting(np.linspace(0, 20, 50))) < 0)


def test_table_agrees_with_xrt3_xareaef_ccf(xmm_reference) -> None:
    with fits.open(xmm_reference / "XRT3_XAREAEF_0012.CCF") as h:
        tab = h["VIGNETTING"].data
        energy = tab["ENERGY"]
        factor = tab["VIGNETTING_FACTOR"]
    band = (energy >= 500) & (energy <= 2000)
    ccf = factor[band].mean(axis=0)
    theta = np.arange(ccf.size) * 0.6  # 0.01 deg steps
    inside = theta <= 15.0
    np.testing.assert_allclose(vignetting(theta[inside]), ccf[inside], rtol=0.03)


def test_flat_field_from_simulated_events_matches_the_table(tmp_path) -> None:
    from xsa_enhance.simulate.observation import SourceMix, simulate_observation

    mix = SourceMix(agn=False, extended=None, particle_rate=0.0, sky_rate=0.03)
    obs = simulate_observation(tmp_path, obsid="0000000101", exposure_ks=20, seed=3,
                               flares=False, with_fbktsr=False, sources=mix, out_of_time=False)
    with fits.open(obs.pievli) as h:
        ev = h["EVENTS"].data
    keep = (ev["FLAG"] == 0) & (ev["PATTERN"] <= 4) & (ev["PI"] >= 500) & (ev["PI"] < 2000)
    detx = ev["DETX"][keep].astype(float)
    dety = ev["DETY"][keep].astype(float)
    theta_ev = geo.off_axis_arcmin(detx, dety)
    # good area per annulus from a fine sampling of the geometry
    g = np.arange(-19000, 16000, 20.0)
    xx, yy = np.meshgrid(g, g)
    c, rx, ry = geo.det_to_raw(xx.ravel(), yy.ravel())
    good = (c > 0) & (rx >= 2) & (rx <= 63) & (ry >= 13) & (ry <= 199)
    good &= geo.in_fov(xx.ravel(), yy.ravel())
    theta_g = geo.off_axis_arcmin(xx.ravel(), yy.ravel())[good]
    edges = np.arange(0.0, 14.01, 1.0)
    n_ev, _ = np.histogram(theta_ev, bins=edges)
    area, _ = np.histogram(theta_g, bins=edges)
    surf = n_ev / area
    # expected: the vignetting averaged over each annulus' good area
    vg, _ = np.histogram(theta_g, bins=edges, weights=vignetting(theta_g))
    expect = vg / area
    # absolute: events / (area [arcmin^2] * on-axis rate * exposure) is the vignetting
    area_arcmin2 = area * (20.0 * 0.05 / 60.0) ** 2
    measured = n_ev / (area_arcmin2 * mix.sky_rate * obs.ontime)
    np.testing.assert_allclose(measured, expect, rtol=0.03)
