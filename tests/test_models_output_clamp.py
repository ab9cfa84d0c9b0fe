"""The model's output clamp ratio (output clamp value / input clamp value).

The paper's SR target clamp is the input clamp / 4. That clips point sources: a PSF that shrinks
with the pixel puts the same fraction of the flux in the central pixel, so SR targets' peaks
are about as high per pixel as the input's. Models may set ``output_clamp_ratio`` (1 for
xmm-superres-v4); training normalises targets and inference denormalises outputs with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.models.normalise import INPUT_CLAMP, SR_TARGET_CLAMP, NormInfo, output_clamp_ratio


def test_ratio_defaults_to_the_papers_constants_and_rejects_nonsense():
    assert output_clamp_ratio(2) == 0.25 and output_clamp_ratio(1) == 1.0
    assert INPUT_CLAMP * output_clamp_ratio(2) == pytest.approx(SR_TARGET_CLAMP, rel=1e-12)
    assert output_clamp_ratio(2, 1) == 1.0
    for bad in (0, -1.0, math.inf, math.nan, "x"):
        with pytest.raises(ConfigError, match="output_clamp_ratio"):
            output_clamp_ratio(2, bad)
    info = NormInfo("constant", 0.002, "sqrt")
    assert info.for_output(2).value == pytest.approx(0.0005)
    assert info.for_output(2, 1.0).value == pytest.approx(0.002)
    assert info.for_output(1).value == pytest.approx(0.002)


def test_a_point_source_peak_per_pixel_is_kept_when_psf_and_pixel_halve():
    """Why the paper's / 4 clips SR point sources: the peak fraction does not drop by 4."""
    from xsa_enhance.training.psf_test import render_point_sources

    ratios = []
    for dy, dx in ((0.0, 0.0), (0.1, 0.25), (0.25, 0.25), (0.4, 0.0)):
        pos = np.array([[20.0 + dy, 20.0 + dx]])
        one = render_point_sources((41, 41), pos, np.array([1.0]), factor=1)
        two = render_point_sources((41, 41), pos, np.array([1.0]), factor=2, resolution=0.5)
        assert one.sum() == pytest.approx(1.0, rel=1e-6)
        assert two.sum() == pytest.approx(1.0, rel=1e-6)
        ratios.append(two.max() / one.max())
    # the brightest 2" target pixel holds 2/3 to 1.1 times what the brightest 4" input pixel
    # holds (depending on where the source sits in the pixels), not the paper's 1/4
    assert 0.6 < min(ratios) and max(ratios) < 1.2


def test_training_targets_are_normalised_with_the_ratio(tmp_path):
    from xsa_enhance.simulate.training import write_training_set
    from xsa_enhance.training.data import PairSource, open_pairs, target_clamp_for

    path = tmp_path / "sr.zarr"
    write_training_set(str(path), kind="sr", n=4, seed=3)
    ts = open_pairs(str(path))
    assert target_clamp_for(2) == SR_TARGET_CLAMP
    assert target_clamp_for(2, 1.0) == pytest.approx(INPUT_CLAMP)
    paper = PairSource(ts, "train", crop=32)
    kept = PairSource(ts, "train", crop=32, output_clamp_ratio=1.0)
    assert paper.clamp_target == pytest.approx(SR_TARGET_CLAMP)
    assert kept.clamp_target == pytest.approx(INPUT_CLAMP)
    rng = np.random.default_rng(1)
    combo, pos = paper.draw(rng)
    _inp, tgt, _m = paper.counts(combo, pos)
    rate = tgt / ts.target_exposure_s
    for src, clamp in ((paper, SR_TARGET_CLAMP), (kept, INPUT_CLAMP)):
        y = src.make(combo, pos).target[0].numpy()
        np.testing.assert_allclose(y, np.sqrt(np.clip(rate / clamp, 0, 1)), rtol=1e-5, atol=1e-6)


def _tiny_weights(tmp_path, name, ratio):
    from xsa_enhance.models.networks import build_network
    from xsa_enhance.models.registry import save_weights

    torch.manual_seed(0)
    net = build_network("sr", filters=8, blocks=1, growth=8)
    config = {"filters": 8, "blocks": 1, "growth": 8, "pad_shape": [32, 32]}
    if ratio is not None:
        config["output_clamp_ratio"] = ratio
    path = tmp_path / f"{name}.pt"
    save_weights(net, path, name=name, kind="sr", config=config, card={})
    return path


def test_inference_denormalises_the_output_with_the_models_ratio(tmp_path):
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.models.registry import load_model

    paper = load_model(_tiny_weights(tmp_path, "paper", None))
    kept = load_model(_tiny_weights(tmp_path, "kept", 1.0))
    assert paper.output_clamp_ratio == 0.25 and kept.output_clamp_ratio == 1.0
    counts = np.random.default_rng(2).poisson(3.0, (24, 24)).astype(float)
    a = enhance(counts, 20_000.0, None, paper, restore=False)
    b = enhance(counts, 20_000.0, None, kept, restore=False)
    # same network and input: the same normalised output, denormalised with a 4x larger value
    assert np.abs(a.counts).sum() > 0
    np.testing.assert_allclose(b.counts, 4.0 * a.counts, rtol=1e-5, atol=1e-6)
    assert b.attrs["output_clamp_ratio"] == 1.0 and a.attrs["output_clamp_ratio"] == 0.25
    assert b.attrs["clamp_value_output"] == pytest.approx(b.attrs["clamp_value"])
    assert a.attrs["clamp_value_output"] == pytest.approx(a.attrs["clamp_value"] / 4)


def test_a_weight_file_with_a_bad_ratio_is_refused(tmp_path):
    from xsa_enhance.models.registry import load_model

    path = _tiny_weights(tmp_path, "bad", -2.0)
    with pytest.raises(InputFileError, match="output_clamp_ratio"):
        load_model(path)


def test_training_config_carries_the_ratio_into_the_weights(tmp_path):
    from xsa_enhance.models.registry import load_model
    from xsa_enhance.simulate.training import write_training_set
    from xsa_enhance.training.train import export_weights, load_config, train

    path = tmp_path / "sr.zarr"
    write_training_set(str(path), kind="sr", n=4, seed=4)
    tiny = dict(filters=8, blocks=1, growth=8, crop=32, val_crop=32, batch_size=2, n_val=2,
                log_every=1, lr=1e-3, loss="l1", max_minutes=None, num_threads=None,
                device="cpu", steps=1, val_every=1)
    with pytest.raises(ConfigError, match="output_clamp_ratio"):
        load_config(preset="small", overrides={**tiny, "kind": "sr", "train_set": str(path),
                                               "output_clamp_ratio": 0}).validate()
    cfg = load_config(preset="small", overrides={**tiny, "kind": "sr", "train_set": str(path),
                                                 "output_clamp_ratio": 1.0})
    train(cfg, tmp_path / "run")
    export_weights(tmp_path / "run", tmp_path / "w.pt", name="tiny-sr")
    assert load_model(tmp_path / "w.pt").output_clamp_ratio == 1.0
    cfg0 = load_config(preset="small", overrides={**tiny, "kind": "sr", "train_set": str(path)})
    train(cfg0, tmp_path / "run0")
    export_weights(tmp_path / "run0", tmp_path / "w0.pt", name="tiny-sr")
    m0 = load_model(tmp_path / "w0.pt")
    assert "output_clamp_ratio" not in m0.config and m0.output_clamp_ratio == 0.25
