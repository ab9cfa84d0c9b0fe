"""Inference engine: grids, masks, padding, seamless tiling, batching, determinism, attrs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsa_enhance._version import __version__
from xsa_enhance.errors import XsaError
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X
from xsa_enhance.models.inference import enhance, enhance_batch, pad_frame, plan_tiles
from xsa_enhance.models.networks import build_network
from xsa_enhance.models.registry import load_model, save_weights


def _model(tmp_path, kind, *, blocks=1, exposure_channel=False, pad=None, seed=0):
    torch.manual_seed(seed)
    net = build_network(kind, filters=8, blocks=blocks, growth=8,
                        exposure_channel=exposure_channel)
    path = tmp_path / f"{kind}-{blocks}-{exposure_channel}.pt"
    config = {} if pad is None else {"pad_shape": list(pad)}
    save_weights(net, path, name="t", kind=kind, config=config, card={})
    return load_model(path)


def _frame(shape=GRID_1X.shape, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.6, shape).astype(float)
    counts[shape[0] // 2, shape[1] // 3] += 400
    mask = np.ones(shape)
    mask[:, 100:103] = 0
    mask[:20, :] = 0
    return counts, 20_000.0, mask


@pytest.mark.parametrize("kind,grid,expo", [("sr", GRID_2X, 100_000.0), ("dn", GRID_1X, 50_000.0)])
def test_full_frame_grid_exposure_mask_attrs(tmp_path, kind, grid, expo):
    model = _model(tmp_path, kind)
    counts, t_in, mask = _frame()
    out = enhance(counts, t_in, mask, model)
    assert out.counts.shape == grid.shape and out.counts.dtype == np.float32
    assert out.grid == grid and out.exposure_s == expo
    f = model.factor
    expected_mask = np.kron(mask, np.ones((f, f))) > 0
    np.testing.assert_array_equal(out.mask, expected_mask)
    assert np.all(out.counts[~expected_mask] == 0)
    assert out.counts[expected_mask].max() > 0
    a = out.attrs
    assert a["model"] == model.name and a["weights_sha256"] == model.sha256
    assert (a["clamp_mode"], a["stretch"]) == ("constant", "sqrt")
    assert a["clamp_value"] == pytest.approx(0.0022336)
    assert a["software_version"] == __version__
    assert a["input_exposure_s"] == t_in and a["target_exposure_s"] == expo
    assert a["restored_pixels"] >= 1  # the 400-count source is above the clamp
    assert "hallucinat" in a["caveats"]


def test_pad_frame_centres():
    img = np.arange(411 * 403, dtype=float).reshape(411, 403)
    padded, (top, left) = pad_frame(img, (416, 416))
    assert padded.shape == (416, 416) and (top, left) == (2, 6)
    np.testing.assert_array_equal(padded[2:413, 6:409], img)
    assert padded[:2].sum() == 0 and padded[:, 409:].sum() == 0
    refl, _ = pad_frame(img, (416, 416), mode="reflect")
    np.testing.assert_array_equal(refl[1, 6:409], img[1])  # mirrored about row 0


@pytest.mark.parametrize("shape,tile,overlap", [((416, 416), 100, 34), ((130, 75), 16, 5),
                                                ((50, 50), None, 10), ((64, 64), 30, 40)])
def test_plan_tiles_partition(shape, tile, overlap):
    (wh, ww), tiles = plan_tiles(shape, tile=tile, overlap=overlap)
    cover = np.zeros(shape, dtype=int)
    for wy, wx, cy, cx in tiles:
        assert wy.stop - wy.start == wh and wx.stop - wx.start == ww
        assert wy.start >= 0 and wy.stop <= shape[0] and wx.start >= 0 and wx.stop <= shape[1]
        cover[wy, wx][cy, cx] += 1
        # a core has `overlap` pixels of context on each side unless it touches the frame edge
        assert wy.start + cy.start - wy.start >= overlap or wy.start == 0
        assert (wy.stop - (wy.start + cy.stop)) >= overlap or wy.stop == shape[0]
        assert (wx.stop - (wx.start + cx.stop)) >= overlap or wx.stop == shape[1]
        assert cx.start >= overlap or wx.start == 0
    np.testing.assert_array_equal(cover, 1)


@pytest.mark.parametrize("kind", ["sr", "dn"])
def test_tiled_equals_untiled(tmp_path, kind):
    """Seamless: tiles with the default overlap (receptive radius) reproduce the untiled pass."""
    model = _model(tmp_path, kind, blocks=1, seed=4, pad=(152, 152))  # receptive radius 19
    counts, t_in, mask = _frame((150, 141))
    full = enhance(counts, t_in, mask, model)
    scale = full.attrs["clamp_value_output"] * model.target_exposure_s  # counts of a 1.0 output
    tiled = enhance(counts, t_in, mask, model, tile=40, batch_size=3)
    assert tiled.attrs["overlap"] == 19
    assert np.abs(tiled.counts - full.counts).max() / scale < 1e-5
    # too little overlap shows seams: the check above can fail
    seams = enhance(counts, t_in, mask, model, tile=40, overlap=3)
    assert np.abs(seams.counts - full.counts).max() / scale > 1e-4


def test_batch_equals_single_and_cpu_is_deterministic(tmp_path):
    model = _model(tmp_path, "sr", pad=(128, 128))
    frames = [_frame((120, 110), seed=s) for s in range(3)]
    batch = enhance_batch([f[0] for f in frames], [f[1] for f in frames],
                          [f[2] for f in frames], model, batch_size=2)
    for (c, t, m), b in zip(frames, batch):
        single = enhance(c, t, m, model, batch_size=1)
        np.testing.assert_allclose(b.counts, single.counts, rtol=0, atol=1e-5 * b.counts.max())
        again = enhance(c, t, m, model, batch_size=1)
        np.testing.assert_array_equal(again.counts, single.counts)
        assert b.grid is None  # not a standard 411 x 403 frame


def test_exposure_channel_is_used(tmp_path):
    model = _model(tmp_path, "dn", exposure_channel=True, pad=(128, 128))
    counts, _, mask = _frame((100, 90))
    rate_counts_10 = counts  # the same rate image seen as 10 ks and as 40 ks
    a = enhance(rate_counts_10, 10_000.0, mask, model, restore=False)
    b = enhance(rate_counts_10 * 4, 40_000.0, mask, model, restore=False)
    assert a.attrs["input_exposure_s"] == 10_000.0
    assert not np.allclose(a.counts, b.counts)  # only the exposure channel differs


def test_bad_inputs(tmp_path):
    model = _model(tmp_path, "dn", pad=(64, 64))
    with pytest.raises(ValueError, match="exposure"):
        enhance(np.ones((10, 10)), 0.0, None, model)
    with pytest.raises(ValueError, match="2-D"):
        enhance(np.ones((2, 10, 10)), 100.0, None, model)
    with pytest.raises(ValueError, match="mask shape"):
        enhance(np.ones((10, 10)), 100.0, np.ones((9, 10)), model)
    for bad in (np.nan, np.inf):
        img = np.ones((10, 10))
        img[3, 4] = bad
        with pytest.raises(ValueError, match="non-finite"):
            enhance(img, 100.0, None, model)
        with pytest.raises(XsaError):  # executors record it per observation
            enhance(img, 100.0, None, model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_autocast_close_to_cpu(tmp_path):
    model = _model(tmp_path, "sr")
    counts, t_in, mask = _frame()
    cpu = enhance(counts, t_in, mask, model)
    gpu = enhance(counts, t_in, mask, model, device="cuda", precision="auto")
    assert gpu.attrs["precision"] in ("bf16", "fp16")
    scale = cpu.attrs["clamp_value_output"] * model.target_exposure_s
    assert np.abs(gpu.counts - cpu.counts).max() / scale < 0.05


def test_reduced_precision_autocast_on_cpu(tmp_path):
    """bf16 autocast runs through the same path as on CUDA and stays close to fp32."""
    model = _model(tmp_path, "sr", pad=(64, 64))
    counts, t_in, mask = _frame((60, 50))
    ref = enhance(counts, t_in, mask, model, precision="fp32")
    low = enhance(counts, t_in, mask, model, precision="bf16")
    assert (ref.attrs["precision"], low.attrs["precision"]) == ("fp32", "bf16")
    scale = ref.attrs["clamp_value_output"] * model.target_exposure_s
    diff = np.abs(low.counts - ref.counts).max() / scale
    assert 0 < diff < 0.05
    with pytest.raises(ValueError, match="precision"):
        enhance(counts, t_in, mask, model, precision="fp8")  # type: ignore[arg-type]
