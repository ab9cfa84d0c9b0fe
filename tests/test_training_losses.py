"""Losses and metrics equal independent computations (numpy formulas or another library)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xsa_enhance.errors import ConfigError
from xsa_enhance.training import losses as L
from xsa_enhance.training.metrics import compute_metrics, region_metrics, upsample_nearest


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    y = torch.rand(2, 1, 200, 208, generator=g) ** 3
    x = (y + 0.05 * torch.randn(y.shape, generator=g)).clamp(0.0, 1.0)
    return x, y


def test_l1_poisson_psnr_match_numpy(pair):
    x, y = pair
    xn, yn = x.double().numpy(), y.double().numpy()
    assert float(L.l1_term(x, y)) == pytest.approx(np.mean(np.abs(xn - yn)), rel=1e-5)
    pois = np.mean(xn - yn * np.log(xn + 1e-8))
    assert float(L.poisson_term(x, y)) == pytest.approx(pois, rel=1e-4)
    mse = np.mean((xn - yn) ** 2, axis=(1, 2, 3))
    assert float(L.psnr_term(x, y)) == pytest.approx(np.mean(10 * np.log10(1 / mse)), rel=1e-4)


def test_ssim_terms_match_piq_with_paper_parameters(pair):
    import piq

    x, y = pair
    ref = piq.ssim(x, y, kernel_size=13, kernel_sigma=2.5, k1=0.01, k2=0.05, data_range=1.0,
                   downsample=False)
    assert float(L.ssim_term(x, y)) == pytest.approx(float(ref), abs=2e-5)
    # the defaults (window 11, sigma 1.5, K2 0.03) give a different value: parameters matter
    default = piq.ssim(x, y, data_range=1.0, downsample=False)
    assert abs(float(default) - float(ref)) > 1e-3
    ref_ms = piq.multi_scale_ssim(
        x, y, kernel_size=13, kernel_sigma=2.5, k1=0.01, k2=0.05, data_range=1.0,
        scale_weights=torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333]))
    # piq and pytorch-msssim pad differently when downsampling odd sizes: close, not equal
    assert float(L.ms_ssim_term(x, y)) == pytest.approx(float(ref_ms), abs=1e-3)


def test_ms_ssim_refuses_small_crops():
    x = torch.rand(1, 1, 64, 64)
    with pytest.raises(ConfigError, match="193"):
        L.ms_ssim_term(x, x)


def test_lc_preset_is_the_paper_formula(pair):
    x, y = pair
    psnr = float(L.psnr_term(x, y))
    ms = float(L.ms_ssim_term(x, y))
    assert float(L.LC_PAPER(x, y)) == pytest.approx(5.43 - 0.0609 * psnr - 1.51 * ms, rel=1e-5)
    assert L.loss_from_config("lc") is L.LC_PAPER


def test_normalisation_maps_untrained_to_one_and_trained_to_zero(pair):
    x, y = pair
    untrained = {"l1": 0.2, "psnr": 20.0}
    trained = {"l1": 0.01, "psnr": 40.0}
    loss = L.normalised_loss(untrained, trained)
    # evaluate the linear form at the two reference points by hand
    def value(vals):
        return loss.offset + sum(loss.weights[k] * v for k, v in vals.items())

    assert value(untrained) == pytest.approx(2.0)  # two terms, each 1
    assert value(trained) == pytest.approx(0.0, abs=1e-12)
    # and on tensors: equals the sum of the per-term normalisations
    l1, ps = float(L.l1_term(x, y)), float(L.psnr_term(x, y))
    expect = (l1 - 0.01) / (0.2 - 0.01) + (ps - 40.0) / (20.0 - 40.0)
    assert float(loss(x, y)) == pytest.approx(expect, rel=1e-5)


def test_loss_config_errors():
    with pytest.raises(ConfigError, match="unknown loss term"):
        L.loss_from_config({"weights": {"nope": 1.0}})
    with pytest.raises(ConfigError):
        L.loss_from_config("banana")
    assert L.loss_from_config("ssim").weights == {"ssim": -1.0}


def test_metrics_match_independent_values():
    import piq
    from pytorch_msssim import ms_ssim, ssim

    rng = np.random.default_rng(5)
    t = rng.random((210, 200)) ** 4
    p = np.clip(t + rng.normal(0, 0.02, t.shape), 0, 1)
    got = compute_metrics(p, t)
    assert got["l1"] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-5)
    assert got["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((p - t) ** 2)), rel=1e-4)
    assert got["poisson"] == pytest.approx(np.mean(p - t * np.log(p + 1e-8)), rel=1e-4)
    xt = torch.tensor(p, dtype=torch.float32)[None, None]
    yt = torch.tensor(t, dtype=torch.float32)[None, None]
    assert got["ssim"] == pytest.approx(
        float(ssim(xt, yt, data_range=1.0, win_size=13, win_sigma=2.5, K=(0.01, 0.05))), abs=2e-5)
    assert got["ms_ssim"] == pytest.approx(
        float(ms_ssim(xt, yt, data_range=1.0, win_size=13, win_sigma=2.5, K=(0.01, 0.05))),
        abs=1e-3)
    assert got["fsim"] == pytest.approx(float(piq.fsim(xt, yt, chromatic=False)), rel=1e-6)
    assert got["haarpsi"] == pytest.approx(float(piq.haarpsi(xt, yt)), rel=1e-6)
    perfect = compute_metrics(t, t)
    assert perfect["l1"] == 0.0 and perfect["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["psnr"] >= 79.0  # piq's epsilon caps a perfect match at 80 dB


def test_small_images_have_no_ms_ssim_and_region_metrics():
    rng = np.random.default_rng(1)
    t = rng.random((64, 64))
    got = compute_metrics(t * 0.5, t, metrics=("l1", "ms_ssim"))
    assert math.isnan(got["ms_ssim"])
    assert got["l1"] == pytest.approx(np.mean(t) * 0.5, rel=1e-5)
    regions = {"left": np.zeros_like(t, bool), "all": np.ones_like(t, bool)}
    regions["left"][:, :32] = True
    r = region_metrics(t * 0.5, t, regions)
    assert r["left"]["n_pixels"] == 64 * 32
    assert r["left"]["l1"] == pytest.approx(np.mean(t[:, :32]) * 0.5)
    assert r["all"]["bias"] == pytest.approx(-np.mean(t) * 0.5)
    up = upsample_nearest(np.arange(4.0).reshape(2, 2))
    assert up.shape == (4, 4) and up[3, 3] == 3.0 and up[0, 1] == 0.0
