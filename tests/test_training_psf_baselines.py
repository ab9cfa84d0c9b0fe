"""PSF-test measurements and classical baselines against analytic expectations."""

from __future__ import annotations

import numpy as np
import pytest

from xsa_enhance.training.baselines import (
    gaussian_smoothing,
    known_psf_kernel,
    richardson_lucy,
    wavelet_denoise,
)
from xsa_enhance.training.psf_test import (
    aperture_flux,
    fit_gaussian,
    is_resolved,
    point_source_field,
    render_point_sources,
)


def _gauss_img(shape, centres, sigma, amp=1.0, bkg=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, bkg, dtype=float)
    for (y, x) in centres:
        img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return img


@pytest.mark.parametrize("sigma", [0.8, 1.5, 2.5])
def test_fit_gaussian_recovers_sigma_and_position(sigma):
    img = _gauss_img((41, 41), [(20.3, 19.6)], sigma, amp=5.0, bkg=0.2)
    fit = fit_gaussian(img, 20.0, 20.0, half=8)
    assert fit["ok"] == 1.0
    assert fit["sigma"] == pytest.approx(sigma, rel=1e-3)
    assert fit["y"] == pytest.approx(20.3, abs=1e-3) and fit["x"] == pytest.approx(19.6, abs=1e-3)
    assert fit["bkg"] == pytest.approx(0.2, abs=1e-3)


def test_aperture_flux_subtracts_background():
    sigma, amp = 1.5, 4.0
    img = _gauss_img((61, 61), [(30, 30)], sigma, amp=amp, bkg=0.5)
    flux = aperture_flux(img, 30, 30, radius=8, annulus=(10, 14))
    assert flux == pytest.approx(2 * np.pi * sigma**2 * amp, rel=1e-3)


def test_is_resolved_follows_the_separation():
    sigma = 2.0  # FWHM 4.7 px
    far = _gauss_img((61, 61), [(30, 22), (30, 38)], sigma)
    near = _gauss_img((61, 61), [(30, 28.5), (30, 31.5)], sigma)  # 3 px < FWHM: one peak
    assert is_resolved(far, (30, 22), (30, 38))
    assert not is_resolved(near, (30, 28.5), (30, 31.5))


def test_rendered_sources_conserve_rate_and_halved_psf_is_sharper():
    pos = np.array([[50.2, 60.7]])
    one = render_point_sources((100, 120), pos, np.array([0.01]), factor=1)
    two = render_point_sources((100, 120), pos, np.array([0.01]), factor=2, resolution=0.5)
    assert one.sum() == pytest.approx(0.01, rel=1e-9)
    assert two.sum() == pytest.approx(0.01, rel=1e-9)
    y2, x2 = (pos[0] + 0.5) * 2 - 0.5
    s1 = fit_gaussian(np.repeat(np.repeat(one, 2, 0), 2, 1), y2, x2)["sigma"]
    s2 = fit_gaussian(two, y2, x2)["sigma"]
    assert s2 < 0.7 * s1  # every PSF length halved (pixelisation keeps it from exactly 0.5)


def test_point_field_counts_match_expected_rate():
    f = point_source_field(kind="grid", seed=4)
    expected = (f.rates.sum() + 1.1168e-5 * f.mask.sum()) * f.exposure_s
    # sources near the mask edge lose a little flux to masked pixels: within 3 %
    assert f.counts.sum() == pytest.approx(expected, rel=0.03)
    assert f.target_rate.shape == (822, 806)
    assert f.target_rate.sum() == pytest.approx(f.rates.sum(), rel=0.01)


def test_gaussian_and_wavelet_preserve_a_flat_field():
    rng = np.random.default_rng(2)
    mask = np.ones((128, 120))
    mask[:, 60] = 0  # a chip gap must not darken its neighbours
    counts = rng.poisson(2.0, mask.shape) * mask
    g = gaussian_smoothing(counts, 10.0, mask, sigma_px=2.0)
    assert np.mean(g[mask > 0]) == pytest.approx(0.2, rel=0.01)
    assert np.mean(g[:, 59]) == pytest.approx(0.2, rel=0.05)
    assert np.std(g[mask > 0]) < 0.3 * np.std(counts[mask > 0] / 10.0)
    w = wavelet_denoise(counts, 10.0, mask)
    assert np.mean(w[mask > 0]) == pytest.approx(0.2, rel=0.03)
    assert np.std(w[mask > 0]) < 0.5 * np.std(counts[mask > 0] / 10.0)
    assert np.all(g[:, 60] == 0) and np.all(w[:, 60] == 0)
    g2 = gaussian_smoothing(counts, 10.0, mask, factor=2, subtract_background=False)
    assert g2.shape == (256, 240)
    assert g2.sum() == pytest.approx(g.sum(), rel=0.02)


def test_richardson_lucy_sharpens_a_point_source_towards_the_target_psf():
    pos = np.array([[40.0, 40.0]])
    rate = render_point_sources((81, 81), pos, np.array([1.0]), factor=1)
    counts = rate * 1e4  # noiseless, bright
    mask = np.ones_like(counts)
    out = richardson_lucy(counts, 1e4, mask, factor=2, num_iter=30, subtract_background=False)
    target = render_point_sources((81, 81), pos, np.array([1.0]), factor=2, resolution=0.5)
    up = np.repeat(np.repeat(rate, 2, 0), 2, 1) / 4
    s_in = fit_gaussian(up, 80.5, 80.5)["sigma"]
    s_rl = fit_gaussian(out, 80.5, 80.5)["sigma"]
    s_t = fit_gaussian(target, 80.5, 80.5)["sigma"]
    assert abs(s_rl - s_t) < abs(s_in - s_t)
    assert out.sum() == pytest.approx(1.0, rel=0.05)
    k = known_psf_kernel(factor=2, resolution=0.5)
    assert k.sum() == pytest.approx(1.0) and k.shape[0] % 2 == 1


def test_psf_test_with_an_identity_sr_model_measures_the_input_psf(tmp_path):
    """A no-op SR model (nearest-neighbour upsampling) must show the input's sigma and fail."""
    from xsa_enhance.models.networks import identity_network
    from xsa_enhance.models.registry import load_model, save_weights
    from xsa_enhance.training.psf_test import run_psf_test

    net = identity_network("sr")
    path = tmp_path / "id.pt"
    # "trained" for the clamp mode it is tested with (inference refuses other modes)
    save_weights(net, path, name="identity-sr", kind="sr", config={"clamp": "none"}, card={})
    res = run_psf_test(load_model(path), tmp_path / "psf", clamps=("none",), seed=3)
    v = res.per_clamp["none"]
    # the identity's output is the upsampled input rate: same sigma, same flux (no clamp)
    assert v["median_sigma_pred_px"] == pytest.approx(v["median_sigma_input_px"], rel=0.05)
    assert v["sigma_ratio_pred_target"] > 1.5  # the input PSF is about twice the target's
    assert not v["passed_sigma"]
    assert v["by_rate"]["0.02"]["flux_ratio_pred_target"] == pytest.approx(
        v["by_rate"]["0.02"]["flux_ratio_input_target"], rel=0.02)
    # deblending: the noiseless halved-PSF target resolves more pairs than the input
    target = res.deblending["target"]
    assert target["2"] == 1.0
    assert sum(target.values()) > sum(res.deblending["input"].values())
    assert res.deblending["model (none)"] == res.deblending["input"]
    assert (tmp_path / "psf" / "psf_panels.png").is_file()
    assert (tmp_path / "psf" / "deblend_panels.png").is_file()
    assert "| none |" in (tmp_path / "psf" / "psf_test.md").read_text()
