"""Training for every clamp mode: samples normalised as inference normalises, matched exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xsa_enhance.errors import ConfigError
from xsa_enhance.models.networks import build_network
from xsa_enhance.training.data import PairSource, open_pairs
from xsa_enhance.training.losses import WeightedLoss
from xsa_enhance.training.train import _rescale_io, export_weights, load_config, train

TINY = dict(filters=8, blocks=1, growth=8, crop=32, val_crop=32, batch_size=2, n_val=2,
            log_every=1, lr=1e-3, loss="l1", max_minutes=None, num_threads=None, device="cpu")

INPUT_CLAMP = 0.0022336  # the paper's constant, written out
CEILING = 2.0  # the none mode's fixed rate ceiling, counts/s/pixel


@pytest.fixture(scope="module")
def sr_set(tmp_path_factory):
    from xsa_enhance.simulate.training import write_training_set

    path = tmp_path_factory.mktemp("sets") / "sr.zarr"
    write_training_set(str(path), kind="sr", n=10, seed=21)
    return str(path)


def _summed(ts, combo, split, which):
    total = None
    for name, idx in combo.items():
        if idx is None:
            continue
        a = np.asarray(getattr(ts.component(name, split), which)[idx], dtype=np.float64)
        total = a if total is None else total + a
    return total


def test_quantile_samples_use_the_whole_frame_quantile_of_the_input(sr_set):
    ts = open_pairs(sr_set)
    src = PairSource(ts, "val", crop=32, clamp="quantile:0.999", output_clamp_ratio=1.0)
    rng = np.random.default_rng(3)
    combo, (y0, x0) = src.draw(rng)
    s = src.make(combo, (y0, x0))
    # independent: the q quantile of the masked input rate over the whole frame
    full_in = _summed(ts, combo, "val", "input")
    mask = src.mask
    rate = full_in * mask / ts.input_exposure_s
    v = np.quantile(rate[mask], 0.999)
    crop_rate = rate[y0:y0 + 32, x0:x0 + 32]
    np.testing.assert_allclose(s.input[0].numpy(), np.sqrt(np.clip(crop_rate / v, 0, 1)),
                               rtol=1e-5, atol=1e-6)
    # the target is divided by the *input's* value (times the output clamp ratio, here 1)
    full_t = _summed(ts, combo, "val", "target")
    tgt = full_t[2 * y0:2 * y0 + 64, 2 * x0:2 * x0 + 64] / ts.target_exposure_s
    np.testing.assert_allclose(s.target[0].numpy(), np.sqrt(np.clip(tgt / v, 0, 1)),
                               rtol=1e-5, atol=1e-6)
    # and it is not the crop's own quantile (unless the crop happens to hold the frame's top)
    assert v != pytest.approx(np.quantile(crop_rate, 0.999))


def test_none_samples_use_the_hdr_normalisation(sr_set):
    ts = open_pairs(sr_set)
    src = PairSource(ts, "val", crop=32, clamp="none", stretch="hdr", output_clamp_ratio=1.0)
    combo, pos = src.draw(np.random.default_rng(4))
    s = src.make(combo, pos)
    inp, _tgt, mask = src.counts(combo, pos)
    u = inp * mask / ts.input_exposure_s / INPUT_CLAMP
    gain = 1 + 0.5 * np.log(CEILING / INPUT_CLAMP)
    expect = np.where(u <= 1, np.sqrt(u), 1 + 0.5 * np.log(np.maximum(u, 1))) / gain
    np.testing.assert_allclose(s.input[0].numpy(), expect, rtol=1e-5, atol=1e-6)


def test_rescaled_init_reproduces_the_constant_model_on_hdr_inputs():
    """init_rescale: a network fed x / g gives its old output / g (below the old clamp)."""
    torch.manual_seed(0)
    for kind in ("dn", "sr"):
        net = build_network(kind, filters=8, blocks=1, growth=8)
        x = torch.rand(1, 1, 24, 24) * 0.5
        with torch.no_grad():
            before = net(x)
            _rescale_io(net, 4.4)
            after = net(x / 4.4)
        mid = (before > 0) & (before < 1)  # away from the output clamp
        torch.testing.assert_close(after[mid] * 4.4, before[mid], rtol=1e-4, atol=1e-5)


def test_linear_gain_makes_hdr_linear_terms_equal_the_constant_ones():
    g = 4.4
    pred = torch.rand(2, 1, 16, 16) * 0.9
    tgt = torch.rand(2, 1, 16, 16) * 0.9
    plain = WeightedLoss(weights={"mse_linear": 1.0, "poisson_linear": 1.0})
    hdr = WeightedLoss(weights={"mse_linear": 1.0, "poisson_linear": 1.0}, linear_gain=g)
    a = plain.terms(pred, tgt)
    b = hdr.terms(pred / g, tgt / g)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)


def test_config_ties_the_none_mode_to_the_hdr_stretch(sr_set):
    with pytest.raises(ConfigError, match="hdr"):
        load_config(preset="small", overrides={**TINY, "kind": "sr", "train_set": sr_set,
                                               "clamp": "none"})
    with pytest.raises(ConfigError, match="hdr"):
        load_config(preset="small", overrides={**TINY, "kind": "sr", "train_set": sr_set,
                                               "stretch": "hdr"})
    with pytest.raises(ConfigError, match="init_rescale"):
        load_config(preset="small", overrides={**TINY, "kind": "sr", "train_set": sr_set,
                                               "init_rescale": "big"})
    # the shipped presets of the clamp-matched rounds resolve through their base preset
    q = load_config(preset="small-v4-quantile", overrides={"kind": "sr", "train_set": sr_set})
    assert q.clamp == "quantile:0.9999" and q.filters == 16 and q.output_clamp_ratio == 1.0
    n = load_config(preset="small-v3-none", overrides={"kind": "dn", "train_set": sr_set})
    assert n.clamp == "none" and n.stretch == "hdr" and n.init_rescale_value() > 4


@pytest.mark.parametrize("clamp,stretch", [("quantile:0.999", "sqrt"), ("none", "hdr")])
def test_exported_weights_record_the_trained_clamp(sr_set, tmp_path, clamp, stretch):
    from xsa_enhance.models.registry import load_model

    cfg = load_config(preset="small", overrides={**TINY, "kind": "sr", "train_set": sr_set,
                                                  "clamp": clamp, "stretch": stretch,
                                                  "steps": 2, "val_every": 2})
    train(cfg, tmp_path / "run")
    vals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
            if '"val"' in x]
    assert all(np.isfinite(v["val_loss"]) for v in vals)
    export_weights(tmp_path / "run", tmp_path / "w.pt", name="tiny-sr", card={})
    m = load_model(tmp_path / "w.pt")
    assert m.config["clamp"] == clamp and m.stretch == stretch


@pytest.fixture(scope="module")
def dn_expected_set(tmp_path_factory):
    from xsa_enhance.simulate.training import write_training_set

    path = tmp_path_factory.mktemp("sets") / "dn.zarr"
    write_training_set(str(path), kind="dn", n=10, seed=22, target_noise="none")
    return str(path)


@pytest.mark.parametrize("clamp", ["constant", "quantile:0.999"])
def test_brightness_augmentation_redraws_inputs_of_a_brighter_sky(dn_expected_set, clamp):
    ts = open_pairs(dn_expected_set)
    src = PairSource(ts, "train", crop=None, clamp=clamp,
                     brightness={"extended": (1.0, 20.0, 20.0)}, p_extended=1.0, p_agn=0.0)
    combo, pos = src.draw(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    inp, tgt, mask, _v = src._counts_and_value(combo, pos, scales={"extended": 20.0}, rng=rng)
    comp = ts.component("extended", "train")
    t_ext = np.asarray(comp.target[combo["extended"]], dtype=np.float64)
    t_bkg = np.asarray(ts.component("background", "train").target[combo["background"]])
    i_bkg = np.asarray(ts.component("background", "train").input[combo["background"]])
    # the target is 20x the stored expectation (plus the unscaled background)
    np.testing.assert_allclose(tgt, 20 * t_ext + t_bkg, rtol=1e-6)
    # the input is a Poisson draw of 20 x the 20 ks expectation: mean and variance agree
    drawn = inp - i_bkg
    lam = 20 * t_ext * ts.input_exposure_s / ts.target_exposure_s
    assert drawn.sum() == pytest.approx(lam.sum(), rel=0.01)
    bright = lam > 50
    z = (drawn[bright] - lam[bright]) / np.sqrt(lam[bright])
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    # without the augmentation, no extra random draws: the old stream is unchanged
    plain = PairSource(ts, "train", crop=32)
    a = next(plain.iterate(3, batch_size=2))
    b = next(PairSource(ts, "train", crop=32).iterate(3, batch_size=2))
    assert torch.equal(a[0], b[0])


def test_brightness_augmentation_refuses_sets_it_cannot_redraw(sr_set):
    with pytest.raises(ConfigError, match="expected targets"):
        PairSource(open_pairs(sr_set), "train", crop=32, brightness={"extended": (0.5, 1, 30)})


def test_points_rate_range_sets_the_brightness_of_the_points_component(tmp_path):
    import zarr

    from xsa_enhance.simulate.training import write_training_set

    path = tmp_path / "bright.zarr"
    write_training_set(str(path), kind="dn", n=10, seed=5, components=("background", "points"),
                       points_rate_range=(0.2, 0.2))
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["points_rate_range"] == [0.2, 0.2]
    samples = root["train/points"].attrs["samples"]
    for s in samples:
        assert s["total_rate"] == pytest.approx(0.2 * s["n_sources"])
    with pytest.raises(ConfigError, match="points_rate_range"):
        write_training_set(str(tmp_path / "bad.zarr"), kind="dn", n=10, seed=5,
                           points_rate_range=(0.0, 1.0))


@pytest.fixture(scope="module")
def sr_expected_set(tmp_path_factory):
    from xsa_enhance.simulate.training import write_training_set

    path = tmp_path_factory.mktemp("sets") / "sr_expected.zarr"
    write_training_set(str(path), kind="sr", n=10, seed=23, target_noise="none")
    return str(path)


def test_sr_sets_with_expected_targets_keep_the_expected_inputs(sr_expected_set, sr_set):
    ts = open_pairs(sr_expected_set)
    comp = ts.component("extended", "train")
    lam = np.asarray(comp.input_expected[0], dtype=np.float64)
    counts = np.asarray(comp.input[0], dtype=np.float64)
    # the stored input is a Poisson draw of the stored expectation (8x8-pixel block sums, so
    # that the faint emission of a simulated cluster gives Gaussian-like counts)
    def blocks(a):
        return a[:408, :400].reshape(51, 8, 50, 8).sum(axis=(1, 3))

    lb, cb = blocks(lam), blocks(counts)
    bright = lb > 30
    z = (cb[bright] - lb[bright]) / np.sqrt(lb[bright])
    assert bright.sum() > 50 and abs(z.mean()) < 0.25 and 0.8 < z.std() < 1.2
    # the same sky as the 100 ks target: equal totals at the 20 ks exposure (the field-of-view
    # edges lose a little flux on each grid in different ways)
    tgt = np.asarray(comp.target[0], dtype=np.float64)
    assert lam.sum() == pytest.approx(tgt.sum() * ts.input_exposure_s / ts.target_exposure_s,
                                      rel=0.03)
    # Poisson-target sets do not keep them
    assert open_pairs(sr_set).component("extended", "train").input_expected is None


def test_sr_brightness_augmentation_draws_from_the_expected_input(sr_expected_set):
    ts = open_pairs(sr_expected_set)
    src = PairSource(ts, "train", crop=None, clamp="none", stretch="hdr",
                     output_clamp_ratio=1.0, brightness={"extended": (1.0, 20.0, 20.0)},
                     p_extended=1.0, p_agn=0.0)
    combo, pos = src.draw(np.random.default_rng(0))
    inp, tgt, _mask, _v = src._counts_and_value(combo, pos, scales={"extended": 20.0},
                                                rng=np.random.default_rng(1))
    ext = ts.component("extended", "train")
    bkg = ts.component("background", "train")
    np.testing.assert_allclose(
        tgt, 20 * np.asarray(ext.target[combo["extended"]], dtype=np.float64), rtol=1e-6)
    drawn = inp - np.asarray(bkg.input[combo["background"]], dtype=np.float64)
    lam = 20 * np.asarray(ext.input_expected[combo["extended"]], dtype=np.float64)
    assert drawn.sum() == pytest.approx(lam.sum(), rel=0.01)
    bright = lam > 20
    z = (drawn[bright] - lam[bright]) / np.sqrt(lam[bright])
    assert bright.sum() > 100 and abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
