"""Normalisation: clamp parsing and values, stretches against their formulas, round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsa_enhance.errors import ConfigError
from xsa_enhance.models.normalise import (
    DN_TARGET_CLAMP,
    INPUT_CLAMP,
    SR_TARGET_CLAMP,
    STRETCHES,
    ClampSpec,
    clamp_value,
    denormalise,
    normalise,
    stretch_forward,
    stretch_inverse,
)

# the formulas of DESIGN.md sec. 7, written out independently
FORMULAS = {
    "linear": lambda x: x,
    "sqrt": lambda x: x**0.5,
    "asinh": lambda x: np.arcsinh(x / 0.02) / np.arcsinh(1 / 0.02),
    "log": lambda x: np.log(1000 * x + 1) / np.log(1001),
    # sqrt of rate / constant clamp up to the constant clamp, 1 + ln / 2 above, over its value
    # at the ceiling of 2 counts/s/pixel
    "hdr": lambda x: np.where(x * 2.0 / 0.0022336 <= 1, np.sqrt(x * 2.0 / 0.0022336),
                              1 + 0.5 * np.log(np.maximum(x * 2.0 / 0.0022336, 1.0)))
    / (1 + 0.5 * np.log(2.0 / 0.0022336)),
}


def test_paper_constants():
    mu_b = 1.1168e-5
    assert INPUT_CLAMP == pytest.approx(200 * mu_b, rel=1e-12)
    assert DN_TARGET_CLAMP == pytest.approx(200 * mu_b, rel=1e-12)
    assert SR_TARGET_CLAMP == pytest.approx(50 * mu_b, rel=1e-12)


@pytest.mark.parametrize(
    "text,mode,q,value",
    [("constant", "constant", None, None), ("quantile:0.9999", "quantile", 0.9999, None),
     ("none", "none", None, None), ("Quantile:0.5", "quantile", 0.5, None),
     ("constant:0.01", "constant", None, 0.01)],
)
def test_clamp_parse(text, mode, q, value):
    spec = ClampSpec.parse(text)
    assert (spec.mode, spec.q, spec.value) == (mode, q, value)
    assert ClampSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("bad", ["", "max", "quantile:0", "quantile:1.5", "quantile:x",
                                 "constant:-1", "none:3"])
def test_clamp_parse_rejects(bad):
    with pytest.raises(ConfigError, match="invalid clamp"):
        ClampSpec.parse(bad)


def test_clamp_values():
    rng = np.random.default_rng(0)
    rate = rng.exponential(1e-4, size=(50, 60))
    mask = np.zeros_like(rate)
    mask[10:40, 5:55] = 1
    rate[mask == 0] = 1.0  # huge values outside the mask must not affect the quantile
    assert clamp_value(rate, "constant") == INPUT_CLAMP
    assert clamp_value(rate, "constant", role="target", factor=2) == SR_TARGET_CLAMP
    assert clamp_value(rate, "constant", role="target", factor=1) == DN_TARGET_CLAMP
    inside = rate[10:40, 5:55].ravel()
    assert clamp_value(rate, "quantile:0.99", mask=mask) == pytest.approx(
        np.quantile(inside, 0.99), rel=1e-12)
    # no clamp: the fixed high-dynamic-range ceiling, whatever the image
    assert clamp_value(rate, "none", mask=mask) == 2.0
    assert clamp_value(np.zeros((8, 8)), "none") == 2.0
    # an empty image falls back to the constant instead of dividing by zero
    assert clamp_value(np.zeros((8, 8)), "quantile:0.9") == INPUT_CLAMP


@pytest.mark.parametrize("stretch", STRETCHES)
def test_stretch_matches_formula_and_inverts(stretch):
    x = np.linspace(0.0, 1.0, 2001)
    y = stretch_forward(x, stretch)
    np.testing.assert_allclose(y, FORMULAS[stretch](x), rtol=1e-12, atol=1e-15)
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(y) > 0)
    np.testing.assert_allclose(stretch_inverse(y, stretch), x, rtol=1e-10, atol=1e-13)
    # torch tensors give the same numbers
    yt = stretch_forward(torch.from_numpy(x), stretch)
    np.testing.assert_allclose(yt.numpy(), y, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stretch_inverse(yt, stretch).numpy(), x, rtol=1e-10, atol=1e-13)


def test_unknown_stretch():
    with pytest.raises(ConfigError, match="unknown stretch"):
        stretch_forward(np.ones(3), "cube")


@pytest.mark.parametrize("stretch", STRETCHES)
@pytest.mark.parametrize("clamp", ["constant", "quantile:0.999", "quantile:0.5", "none"])
def test_normalise_round_trip(stretch, clamp):
    rng = np.random.default_rng(1)
    rate = rng.gamma(0.5, 4e-4, size=(64, 64))
    rate[5, 5] = 0.05  # a bright source pixel
    x, info = normalise(rate, clamp, stretch)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert info.mode == ClampSpec.parse(clamp).mode and info.stretch == stretch
    expected_value = {"constant": INPUT_CLAMP, "none": 2.0,
                      "quantile:0.999": np.quantile(rate, 0.999),
                      "quantile:0.5": np.quantile(rate, 0.5)}[clamp]
    assert info.value == pytest.approx(expected_value, rel=1e-12)
    back = denormalise(x, info)
    # exact inverse below the clamp, the clamp value above it (float32 storage of x)
    np.testing.assert_allclose(back, np.minimum(rate, info.value), rtol=2e-5,
                               atol=2e-6 * info.value)
    assert np.count_nonzero(rate > info.value) == np.count_nonzero(
        np.isclose(back, info.value, rtol=1e-5) & (rate > info.value))


def test_output_info_scales_with_pixel_area():
    _, info = normalise(np.full((4, 4), 1e-3), "quantile:0.5", "sqrt")
    out = info.for_output(2)
    assert out.value == pytest.approx(info.value / 4)
    assert (out.mode, out.stretch, out.q) == (info.mode, info.stretch, info.q)


def test_hdr_stretch_continues_the_constant_clamp_sqrt():
    """Below the constant clamp, hdr values are the constant clamp's sqrt values / HDR_GAIN."""
    from xsa_enhance.models.normalise import HDR_GAIN

    rate = np.array([0.0, 1e-5, 3e-4, 0.0022336, 0.01, 0.5, 2.0, 7.0])
    x_none, info = normalise(rate, "none", "hdr")
    x_const, _ = normalise(rate, "constant", "sqrt")
    below = rate <= INPUT_CLAMP
    np.testing.assert_allclose(x_none[below] * HDR_GAIN, x_const[below], rtol=1e-6)
    # above the constant clamp the hdr values keep growing (not clipped) up to the ceiling
    assert np.all(np.diff(x_none[:7]) > 0) and x_none[6] == pytest.approx(1.0)
    assert x_none[7] == x_none[6]  # only the ceiling clips
    # slope continuity at the knee: the derivative of sqrt(u) and of 1 + ln(u)/2 are 1/2 at 1
    eps = 1e-6
    knee = INPUT_CLAMP / 2.0
    up, dn = stretch_forward(np.array([knee * (1 + eps), knee * (1 - eps)]), "hdr")
    assert (up - dn) * HDR_GAIN / (2 * eps) == pytest.approx(0.5, rel=1e-4)
    np.testing.assert_allclose(denormalise(x_none, info)[:7], rate[:7], rtol=2e-5, atol=1e-9)
