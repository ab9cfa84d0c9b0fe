"""Per-pixel uncertainty of enhanced images (xsa_enhance.models.uncertainty).

The networks here are exact identities (:func:`~xsa_enhance.models.networks.identity_network`)
on small frames, so the spread of the resampled outputs has an analytic value: the Poisson
sigma of the input, scaled to the output exposure and grid.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from xsa_enhance.models import uncertainty as unc
from xsa_enhance.models.networks import identity_network
from xsa_enhance.models.registry import default_registry_dir, load_model, save_weights

SHAPE = (32, 48)
T_IN = 20_000.0


def _identity_model(tmp_path, kind):
    torch.manual_seed(0)
    path = tmp_path / f"id-{kind}.pt"
    save_weights(identity_network(kind), path, name="id", kind=kind,
                 config={"filters": 8, "blocks": 1, "growth": 8, "pad_shape": list(SHAPE)},
                 card={})
    return load_model(path)


def _mask():
    m = np.ones(SHAPE)
    m[:, 22:24] = 0  # a chip gap
    m[:3, :] = 0
    return m


def _flat(mu, seed=0):
    return np.random.default_rng(seed).poisson(mu, SHAPE).astype(float) * _mask()


@pytest.fixture(scope="module")
def dn(tmp_path_factory):
    return _identity_model(tmp_path_factory.mktemp("dn"), "dn")


@pytest.fixture(scope="module")
def sr(tmp_path_factory):
    return _identity_model(tmp_path_factory.mktemp("sr"), "sr")


@pytest.mark.parametrize("kind", ["dn", "sr"])
def test_sigma_grid_units_and_mask(kind, dn, sr):
    model = dn if kind == "dn" else sr
    f = model.factor
    res = unc.estimate_uncertainty(_flat(5.0), T_IN, _mask(), model, n_samples=4,
                                   calibration=None)
    assert res.sigma.shape == (SHAPE[0] * f, SHAPE[1] * f) == res.output.counts.shape
    assert res.sigma.dtype == np.float32 and res.mean.shape == res.sigma.shape
    out_mask = res.output.mask
    assert np.all(res.sigma[~out_mask] == 0) and np.all(res.mean[~out_mask] == 0)
    assert np.mean(res.sigma[out_mask] > 0) > 0.9  # 4 equal draws are possible, rarely
    assert res.n_samples == 4 and res.method == unc.DEFAULT_METHOD[kind]
    assert res.attrs["target_exposure_s"] == model.target_exposure_s
    # same units as the output: the mean of the resamples is close to the output
    assert abs(res.mean[out_mask].mean() / res.output.counts[out_mask].mean() - 1) < 0.05
    z = res.significance()
    assert z.shape == res.sigma.shape and np.all(z[~out_mask] == 0)


@pytest.mark.parametrize("method", unc.METHODS)
def test_flat_field_matches_analytic_poisson_sigma_dn(dn, method):
    """Identity DN: output = counts * T_out / T_in, so sigma = sqrt(mu) * T_out / T_in."""
    mu = 9.0
    res = unc.estimate_uncertainty(_flat(mu, seed=1), T_IN, _mask(), dn, n_samples=16,
                                   method=method, seed=3, calibration=None, restore=False)
    m = res.output.mask.copy()
    m[:, 19:27] = False  # keep away from the gap, where smoothing has fewer neighbours
    m[:6, :] = False
    expected = np.sqrt(mu) * dn.target_exposure_s / T_IN
    rms = float(np.sqrt(np.mean(res.sigma[m].astype(float) ** 2)))
    assert rms == pytest.approx(expected, rel=0.05)
    # the uncalibrated sigma is the raw spread
    np.testing.assert_array_equal(res.sigma, res.sigma_raw)


def test_flat_field_matches_analytic_poisson_sigma_sr(sr):
    """Identity SR: each of the 2x2 output pixels carries a quarter of the input pixel."""
    mu = 9.0
    res = unc.estimate_uncertainty(_flat(mu, seed=2), T_IN, _mask(), sr, n_samples=16,
                                   seed=4, calibration=None, restore=False)
    m = res.output.mask.copy()
    m[:, 38:54] = False
    m[:12, :] = False
    expected = np.sqrt(mu) / 4 * sr.target_exposure_s / T_IN
    rms = float(np.sqrt(np.mean(res.sigma[m].astype(float) ** 2)))
    assert rms == pytest.approx(expected, rel=0.05)
    naive = unc.naive_sigma(_flat(mu, seed=2), T_IN, _mask(), factor=2,
                            target_exposure_s=sr.target_exposure_s)
    assert float(np.sqrt(np.mean(naive[m].astype(float) ** 2))) == pytest.approx(expected,
                                                                                 rel=0.05)


def test_seeded_determinism(dn):
    c = _flat(4.0)
    a = unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=3, seed=7, calibration=None)
    b = unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=3, seed=7, calibration=None)
    d = unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=3, seed=8, calibration=None)
    np.testing.assert_array_equal(a.sigma, b.sigma)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert not np.array_equal(a.sigma, d.sigma)


def test_given_output_is_used_and_n_samples_checked(dn):
    from xsa_enhance.models.inference import enhance

    c = _flat(4.0)
    out = enhance(c, T_IN, _mask(), dn)
    res = unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=3, seed=7,
                                   calibration=None, output=out)
    assert res.output is out
    ref = unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=3, seed=7, calibration=None)
    np.testing.assert_array_equal(res.sigma, ref.sigma)
    with pytest.raises(ValueError, match="n_samples"):
        unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=1)
    with pytest.raises(ValueError, match="method"):
        unc.estimate_uncertainty(c, T_IN, _mask(), dn, n_samples=2, method="bogus")


def test_poisson_model_is_dn_only(sr):
    with pytest.raises(ValueError, match="DN model"):
        unc.estimate_uncertainty(_flat(4.0), T_IN, _mask(), sr, n_samples=2,
                                 method="poisson-model")


def test_unknown_weights_fall_back_with_warning(dn, caplog):
    with caplog.at_level(logging.WARNING, logger="xsa_enhance.models.uncertainty"):
        res = unc.estimate_uncertainty(_flat(4.0), T_IN, _mask(), dn, n_samples=2)
    assert any("no uncertainty calibration" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(res.sigma, res.sigma_raw)
    assert res.attrs["uncertainty_calibration"].startswith("none")
    assert res.attrs["uncertainty_calibration_key"] is None


def test_given_table_is_applied_per_brightness_bin(dn):
    table = {"edges": [20.0], "factors": [2.0, 3.0], "floors": [0.0, 0.0]}
    res = unc.estimate_uncertainty(_flat(9.0), T_IN, _mask(), dn, n_samples=3,
                                   calibration=table)
    o, m = res.output.counts, res.output.mask
    k = np.where(o < 20.0, 2.0, 3.0)  # bin i: edges[i-1] <= v < edges[i]
    np.testing.assert_allclose(res.sigma[m], (k * res.sigma_raw)[m], rtol=1e-6)
    assert res.attrs["uncertainty_calibration"] == "given"


def test_shipped_tables_cover_the_default_models():
    data = unc.load_calibration()
    reg = json.loads((default_registry_dir() / "registry.json").read_text())
    shas = {f"{m['name']}-v{m['version']}": m["sha256"] for m in reg["models"]}
    for name in ("xmm-denoise-v3", "xmm-superres-v5"):
        kind = "dn" if "denoise" in name else "sr"
        key = f"{shas[name]}:constant:{unc.DEFAULT_METHOD[kind]}"
        assert key in data["tables"], name
        t = data["tables"][key]
        assert len(t["factors"]) == len(t["edges"]) + 1 == len(t["floors"])
        assert all(np.isfinite(t["factors"])) and min(t["factors"]) > 0
        assert list(t["edges"]) == sorted(t["edges"])

        class _M:  # lookup needs only name, kind, sha256 and clamp
            sha256 = shas[name]
            clamp = "constant"

        _M.name, _M.kind = name, kind
        assert unc.lookup_calibration(_M()) == t


def test_fit_calibration_table_recovers_a_known_factor():
    rng = np.random.default_rng(0)
    n = 200_000
    output = rng.uniform(0, 100, n)
    sigma_raw = rng.uniform(0.5, 2.0, n)
    true_k = np.where(output < 50, 1.5, 3.0)
    truth = output + rng.normal(0, 1, n) * true_k * sigma_raw
    sigma_raw[:1000] = 0.0  # pixels without spread get a floor
    table = unc.fit_calibration_table(output, truth, sigma_raw, n_bins=4)
    assert len(table["edges"]) == 3
    np.testing.assert_allclose(table["factors"], [1.5, 1.5, 3.0, 3.0], rtol=0.03)
    assert max(table["floors"]) > 0
    cal = unc.apply_calibration(sigma_raw, output, table)
    cov = unc.coverage_by_bin(output, truth, cal, table["edges"])
    np.testing.assert_allclose(cov, unc.COVERAGE_1SIGMA, atol=0.01)
    raw = unc.coverage_by_bin(output, truth, sigma_raw, table["edges"])
    assert raw[-1] < 0.35  # uncalibrated: a factor 3 too narrow


def test_write_calibration_adds_one_entry(tmp_path):
    p = tmp_path / "cal.json"
    unc.write_calibration({"key": "a:constant:poisson-bootstrap", "edges": [], "factors": [1.0],
                           "floors": [0.0]}, p)
    unc.write_calibration({"key": "b:none:poisson-bootstrap", "edges": [], "factors": [2.0],
                           "floors": [0.0]}, p)
    data = unc.load_calibration(p)
    assert sorted(data["tables"]) == ["a:constant:poisson-bootstrap", "b:none:poisson-bootstrap"]


def test_peak_significance_and_significance_map():
    img = np.full((40, 40), 2.0)
    sig = np.full((40, 40), 0.5)
    img[20, 20] = 12.0
    img[10, 10] = 2.0  # a non-peak: local median equals it
    s = unc.peak_significance(img, sig, [(20, 20), (10, 10), (100, 5)], annulus=(3, 6))
    assert s[0] == pytest.approx((12.0 - 2.0) / 0.5)
    assert s[1] == pytest.approx(0.0)
    assert np.isnan(s[2])
    sig[5, 5] = 0
    z = unc.significance_map(img, sig)
    assert z[5, 5] == 0 and z[20, 20] == pytest.approx(24.0)
    with pytest.raises(ValueError):
        unc.peak_significance(img, sig, [(20, 20)], annulus=(5, 3))
