"""Linear-scale loss terms (``mse_linear``, ``l1_linear``, ``poisson_linear``).

Checked against independent numpy formulas, and for the property they exist for: over Poisson
samples the best constant prediction of the linear-scale MSE / Poisson NLL is the sample mean
(flux unbiased), whereas the sqrt-scale MSE's best constant is biased low
(``E[sqrt X]^2 < E[X]``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsa_enhance.errors import ConfigError
from xsa_enhance.training import losses as L


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    y = torch.rand(2, 1, 40, 48, generator=g) ** 2
    # predictions partly negative and partly above 1, as raw network outputs can be
    x = y + 0.2 * torch.randn(y.shape, generator=g)
    return x, y


def test_linear_terms_match_numpy(pair):
    x, y = pair
    xn, yn = x.double().numpy(), y.double().numpy()
    xl, yl = np.sign(xn) * xn**2, np.sign(yn) * yn**2  # inverse of the sqrt stretch
    assert float(L.mse_linear_term(x, y)) == pytest.approx(np.mean((xl - yl) ** 2), rel=1e-5)
    assert float(L.l1_linear_term(x, y)) == pytest.approx(np.mean(np.abs(xl - yl)), rel=1e-5)
    pl = np.maximum(xl, 0.0)
    pois = np.mean(pl - yl * np.log(pl + 1e-8))
    assert float(L.poisson_linear_term(x, y)) == pytest.approx(pois, rel=1e-4)
    # on [0, 1] the inverse is the square, the inverse of normalise_rate's sqrt stretch
    u = torch.linspace(0, 1, 11)
    assert torch.allclose(L.sqrt_inverse(u), u**2)


def test_negative_prediction_still_gets_a_gradient_towards_the_target():
    pred = torch.full((1, 1, 16, 16), -0.1, requires_grad=True)
    target = torch.full((1, 1, 16, 16), 0.3)
    L.mse_linear_term(pred, target).backward()
    assert pred.grad is not None and (pred.grad < 0).all()  # descent moves pred up


def _argmin_convex(f, lo: float, hi: float, iters: int = 80) -> float:
    """Ternary search for the minimiser of a convex function on ``[lo, hi]``."""
    for _ in range(iters):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if f(a) < f(b):
            hi = b
        else:
            lo = a
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("lam", [0.5, 2.0, 8.0])
def test_linear_terms_are_minimised_by_the_sample_mean_sqrt_mse_is_biased_low(lam):
    rng = np.random.default_rng(11)
    counts = rng.poisson(lam, size=(2, 1, 64, 64)).astype(np.float64)
    clamp = 40.0  # counts -> linear [0, 1] scale, as normalise_rate does with its clamp
    lin = counts / clamp
    targets = torch.from_numpy(np.sqrt(lin))  # the sqrt-stretched training targets (float64)
    mean_lin = lin.mean()

    def at_flux(term):  # the term for a constant prediction of linear flux s
        return lambda s: float(term(torch.full_like(targets, np.sqrt(s)), targets))

    for term in (L.mse_linear_term, L.poisson_linear_term):
        s = _argmin_convex(at_flux(term), 1e-6, 1.0)
        assert s == pytest.approx(mean_lin, rel=1e-4), term.__name__
    # the sqrt-scale MSE's best constant is the mean of sqrt(X): flux biased low
    c = _argmin_convex(lambda v: float(torch.mean((torch.full_like(targets, v) - targets) ** 2)),
                       0.0, 1.0)
    assert c == pytest.approx(np.sqrt(lin).mean(), rel=1e-4)
    assert c**2 < 0.98 * mean_lin  # Jensen gap: about 1/4 count even at 8 counts a pixel


def test_linear_terms_in_configs_and_their_validation():
    from xsa_enhance.training.train import load_config

    loss = L.loss_from_config({"weights": {"ssim": -1.5, "mse_linear": 3000.0}, "offset": 5.0})
    p = torch.full((1, 1, 32, 32), 0.5)
    t = torch.full((1, 1, 32, 32), 0.6)
    expect = 5.0 - 1.5 * float(L.ssim_term(p, t)) + 3000.0 * (0.25 - 0.36) ** 2
    assert float(loss(p, t)) == pytest.approx(expect, rel=1e-5)
    assert float(L.loss_from_config("mse_linear")(p, t)) == pytest.approx((0.25 - 0.36) ** 2)
    cfg = load_config(preset="small-v2", overrides={"kind": "dn", "train_set": "x.zarr"})
    assert {"mse_linear", "poisson_linear"} <= set(cfg.loss["weights"])
    assert cfg.grad_clip and cfg.grad_clip > 0 and cfg.lr <= 2e-4
    with pytest.raises(ConfigError, match="sqrt stretch"):
        load_config(preset="small-v2", overrides={"kind": "dn", "train_set": "x",
                                                  "stretch": "asinh"})
    with pytest.raises(ConfigError, match="grad_clip"):
        load_config(preset="small-v2", overrides={"kind": "dn", "train_set": "x",
                                                  "grad_clip": -1.0})
    # the box-flux term too needs a stretch it can invert to the linear scale
    with pytest.raises(ConfigError, match="sqrt stretch"):
        load_config(preset="small-v2", overrides={
            "kind": "dn", "train_set": "x", "stretch": "asinh",
            "loss": {"weights": {"ssim": -1.5, "box_flux": 10.0}}})
    with pytest.raises(ConfigError, match="each frame has its own unit"):
        load_config(preset="small-v3-quantile", overrides={
            "train_set": "x", "loss": {"weights": {"ssim": -1.5, "box_flux": 10.0}}})
    flux = load_config(preset="small-v4-none-flux", overrides={"train_set": "x"})
    assert flux.loss["weights"]["box_flux"] > 0 and flux.stretch == "hdr"


def _box_sums(a: np.ndarray, k: int = 16) -> np.ndarray:
    """Sums over k x k boxes at steps of k / 2 (an independent loop)."""
    s = k // 2
    ny, nx = a.shape
    return np.array([[a[y:y + k, x:x + k].sum() for x in range(0, nx - k + 1, s)]
                     for y in range(0, ny - k + 1, s)])


@pytest.mark.parametrize("stretch", ["sqrt", "hdr"])
def test_box_flux_is_the_relative_flux_error_of_bright_boxes(stretch):
    from xsa_enhance.models.normalise import HDR_GAIN, HDR_KNEE, stretch_forward

    rng = np.random.default_rng(4)
    # linear images in units of the constant clamp: a faint sky and one bright source whose
    # flux the prediction gets 28 % too high (for the hdr stretch, far above the clamp)
    peak = 0.9 if stretch == "sqrt" else 300.0
    target = rng.uniform(0.0, 0.02, (64, 64))
    target[28:36, 28:36] = peak
    pred = target.copy()
    pred[28:36, 28:36] *= 1.28
    if stretch == "hdr":  # normalised values: rate / 2 counts/s with the hdr stretch
        norm = [stretch_forward(a * HDR_KNEE, "hdr") for a in (pred, target)]
        loss = L.WeightedLoss(weights={"box_flux": 1.0}, linear_gain=HDR_GAIN, stretch="hdr")
    else:
        pred = np.minimum(pred, 1.0)  # the sqrt stretch stops at the clamp
        norm = [np.sqrt(a) for a in (pred, target)]
        loss = L.WeightedLoss(weights={"box_flux": 1.0})
    x, y = (torch.from_numpy(np.asarray(a, dtype=np.float64))[None, None] for a in norm)
    expected = np.mean(np.abs(np.log1p(_box_sums(pred)) - np.log1p(_box_sums(target))))
    assert float(loss(x, y)) == pytest.approx(expected, rel=1e-5)
    # for the bright source it is the relative error: a box holding it all weighs log(1.28)
    if stretch == "hdr":
        one = np.abs(np.log1p(_box_sums(pred)) - np.log1p(_box_sums(target))).max()
        assert one == pytest.approx(np.log(1.28), rel=0.01)
    # equal images cost nothing
    assert float(loss(y, y)) == pytest.approx(0.0, abs=1e-9)
