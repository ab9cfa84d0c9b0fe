"""Training sets: Zarr layout, determinism, split, component physics, point-source grid."""

import numpy as np
import pytest
import zarr

from xsa_enhance.errors import InputFileError
from xsa_enhance.instrument.geometry import off_axis_arcmin
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X
from xsa_enhance.instrument.psf import PSF_HANDBOOK
from xsa_enhance.simulate.images import (
    COMPONENTS,
    config_for_kind,
    render_point_sources,
    simulate_component,
    simulate_point_source_grid,
)
from xsa_enhance.simulate.training import open_training_set, split_sizes, write_training_set


@pytest.fixture(scope="module")
def sr_set(tmp_path_factory):
    return write_training_set(tmp_path_factory.mktemp("sr") / "sr.zarr", kind="sr", n=4, seed=7)


def test_split_sizes() -> None:
    assert split_sizes(10) == {"train": 8, "val": 1, "test": 1}
    assert split_sizes(100) == {"train": 80, "val": 10, "test": 10}
    assert split_sizes(3) == {"train": 1, "val": 1, "test": 1}
    assert sum(split_sizes(37).values()) == 37


def test_layout_and_attributes(sr_set) -> None:
    ts = open_training_set(sr_set)
    assert ts.kind == "sr" and ts.factor == 2
    assert ts.input_exposure_s == 20000.0 and ts.target_exposure_s == 100000.0
    assert ts.mask.shape == (411, 403) and ts.mask.dtype == bool
    assert ts.target_mask.shape == (822, 806)
    assert ts.splits == split_sizes(4)
    root = zarr.open_group(str(sr_set), mode="r")
    assert root.attrs["format"].startswith("xsa-enhance-training-set")
    assert root.attrs["background_target"] == "zeros"
    for split, count in ts.splits.items():
        for comp in COMPONENTS:
            c = ts.component(comp, split)
            assert len(c) == count
            assert c.input.shape == (count, 411, 403)
            assert c.target.shape == (count, 822, 806)
            assert c.input.chunks == (1, 411, 403)
            assert c.target.chunks == (1, 822, 806)
            assert c.input.dtype == np.float32
            assert len(c.samples) == count
    bg = ts.component("background", "train")
    assert float(np.asarray(bg.target[0]).sum()) == 0.0
    assert float(np.asarray(bg.input[0]).sum()) > 1000
    # counts are integers
    x = np.asarray(ts.component("extended", "train").input[0])
    np.testing.assert_array_equal(x, np.round(x))
    # images are multiplied by the detector mask (zero outside it), inputs and targets
    for comp in COMPONENTS:
        c = ts.component(comp, "train")
        assert float(np.asarray(c.input[0])[~ts.mask].sum()) == 0.0
        assert float(np.asarray(c.target[0])[~ts.target_mask].sum()) == 0.0
        assert float(np.asarray(c.input[0])[ts.mask].sum()) > 0.0
    with pytest.raises(Exception):
        ts.component("stars", "train")


def test_samples_are_reproducible_from_their_seed(sr_set) -> None:
    ts = open_training_set(sr_set)
    cfg = config_for_kind("sr")
    # sample index 3 of "agn" (component 1) is the first of the "val" split (train has 2)
    i = ts.splits["train"]
    rng = np.random.default_rng(np.random.SeedSequence([7, 1, i]))
    pair = simulate_component("agn", rng, cfg)
    c = ts.component("agn", "val")
    np.testing.assert_array_equal(np.asarray(c.input[0]), pair.input)
    np.testing.assert_array_equal(np.asarray(c.target[0]), pair.target)
    assert c.samples[0]["index"] == i


def test_same_seed_same_data_other_seed_differs(tmp_path) -> None:
    a = open_training_set(write_training_set(tmp_path / "a", kind="dn", n=1, seed=3))
    b = open_training_set(write_training_set(tmp_path / "b", kind="dn", n=1, seed=3))
    c = open_training_set(write_training_set(tmp_path / "c", kind="dn", n=1, seed=4))
    ea = np.asarray(a.component("extended", "train").input[0])
    np.testing.assert_array_equal(ea, np.asarray(b.component("extended", "train").input[0]))
    assert not np.array_equal(ea, np.asarray(c.component("extended", "train").input[0]))
    # DN: 1x targets with background
    assert a.factor == 1 and a.target_exposure_s == 50000.0
    t = np.asarray(a.component("background", "train").target[0])
    assert t.shape == (411, 403) and t.sum() > 0


def test_workers_give_the_same_set(tmp_path) -> None:
    a = open_training_set(write_training_set(tmp_path / "a", kind="dn", n=1, seed=5))
    b = open_training_set(write_training_set(tmp_path / "b", kind="dn", n=1, seed=5, workers=2))
    for comp in COMPONENTS:
        np.testing.assert_array_equal(np.asarray(a.component(comp, "train").input[...]),
                                      np.asarray(b.component(comp, "train").input[...]))
        np.testing.assert_array_equal(np.asarray(a.component(comp, "train").target[...]),
                                      np.asarray(b.component(comp, "train").target[...]))
        assert a.component(comp, "train").samples == b.component(comp, "train").samples


def test_reader_rejects_missing_and_foreign_stores(tmp_path) -> None:
    with pytest.raises(InputFileError, match="no such"):
        open_training_set(tmp_path / "nothing")
    zarr.open_group(str(tmp_path / "other"), mode="w").attrs["x"] = 1
    with pytest.raises(InputFileError, match="not an xsa-enhance training set"):
        open_training_set(tmp_path / "other")
    write_training_set(tmp_path / "t", kind="sr", n=1, seed=1)
    with pytest.raises(InputFileError, match="exists"):
        write_training_set(tmp_path / "t", kind="sr", n=1, seed=1)


def test_background_counts_match_the_rates() -> None:
    cfg = config_for_kind("dn")
    rng = np.random.default_rng(5)
    pair = simulate_component("background", rng, cfg)
    fp, fs = pair.meta["particle_factor"], pair.meta["sky_factor"]
    # independent expectation over fully good pixels: (particle + sky * vignetting) * area * T
    from xsa_enhance.instrument.mask import detector_mask
    from xsa_enhance.instrument.vignetting import vignetting

    m = detector_mask(GRID_1X)
    xx, yy = np.meshgrid(GRID_1X.x_centres, GRID_1X.y_centres)
    theta = off_axis_arcmin(xx, yy)
    inner = m & (theta < 10)  # away from edges of the mask
    rate = (1.1e-3 * fp + 1.4e-3 * fs * vignetting(theta)) * (4.0 / 60.0) ** 2
    for img, t in ((pair.input, 20000.0), (pair.target, 50000.0)):
        expected = (rate[inner] * t).sum()
        got = img[inner].sum()
        assert abs(got - expected) < 4 * np.sqrt(expected) + 0.01 * expected
    # the mean background per 4" pixel at the boresight is the paper's mu_B for factors 1
    centre = theta < 2
    mu = (1.1e-3 + 1.4e-3 * vignetting(theta[centre])).mean() * (4.0 / 60.0) ** 2
    assert mu == pytest.approx(1.1168e-5, rel=0.05)


def test_sr_components_target_is_sharper_and_deeper() -> None:
    cfg = config_for_kind("sr")
    pair = simulate_component("agn", np.random.default_rng(11), cfg)
    assert pair.target.shape == (822, 806)
    # same flux: target counts per second ~ input counts per second (mask blur aside)
    rin = pair.input.sum() / 20000.0
    rt = pair.target.sum() / 100000.0
    assert rt == pytest.approx(rin, rel=0.15) or pair.input.sum() < 100


def test_point_source_grid_psf_and_counts() -> None:
    g = simulate_point_source_grid(rates=(0.02,), seed=1, background=False)
    assert g.input_counts.shape == (411, 403) and g.target_expected.shape == (822, 806)
    n = len(g.rates)
    assert n > 50
    # total input counts: rate * T * EE(120") (stamp radius) per source, Poisson
    ee_in = PSF_HANDBOOK.encircled_energy(120.0)
    expected = 0.02 * 20000.0 * ee_in * n
    assert abs(g.input_counts.sum() - expected) < 4 * np.sqrt(expected) + 0.01 * expected
    # target: encircled energy of the halved PSF measured on the 2x image
    yy, xx = np.mgrid[0:822, 0:806]
    for r_arcsec in (5.0, 10.0, 20.0):
        fr = []
        for (py, px) in g.positions[:20]:
            cy, cx = 2 * py + 0.5, 2 * px + 0.5
            d = np.hypot(yy - cy, xx - cx) * 2.0
            fr.append(g.target_expected[d <= r_arcsec].sum() / (0.02 * 100000.0))
        want = PSF_HANDBOOK.with_scale(0.5).encircled_energy(r_arcsec)
        assert np.mean(fr) == pytest.approx(want, rel=0.05)
        # and the input PSF at twice the radius encloses the same fraction
        assert PSF_HANDBOOK.encircled_energy(2 * r_arcsec) == pytest.approx(want, rel=1e-9)
    # positions are where the counts are: centroid of the brightest input stamp
    py, px = g.positions[0]
    iy, ix = int(round(py)), int(round(px))
    stamp = g.input_counts[iy - 3:iy + 4, ix - 3:ix + 4]
    sy, sx = np.mgrid[iy - 3:iy + 4, ix - 3:ix + 4]
    assert (stamp * sy).sum() / stamp.sum() == pytest.approx(py, abs=0.5)
    assert (stamp * sx).sum() / stamp.sum() == pytest.approx(px, abs=0.5)
    assert GRID_2X.nx == 2 * GRID_1X.nx


def test_sr_input_keeps_where_in_its_pixel_a_source_lies(monkeypatch) -> None:
    # The input of a point source must be the PSF integrated over 4" pixels at the source's
    # own position (the independent stamp renderer), for each of the four 2" positions inside
    # one 4" pixel: rebinning before blurring (simulator revision 1) gave all four the same
    # input, so no SR network could learn where inside the pixel to put the sharp source.
    from xsa_enhance.simulate import images

    monkeypatch.setattr(images, "poisson_image", lambda rng, lam: np.asarray(lam, np.float32))
    cfg = config_for_kind("sr", target_noise="none")
    rate = 0.01
    inputs = []
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        iy, ix = 300 + dy, 300 + dx  # 1x pixel (150, 150), away from chip gaps
        rate2x = np.zeros(GRID_2X.shape, np.float32)
        rate2x[iy, ix] = rate
        inp, tgt, _lam = images._observe_intrinsic(np.random.default_rng(0), rate2x, cfg)
        got = inp[140:161, 140:161] / cfg.input_exposure_s
        ref = render_point_sources(GRID_1X, GRID_2X.x_centres[ix], GRID_2X.y_centres[iy], [rate],
                                   psf=cfg.psf)[140:161, 140:161]
        assert np.abs(got - ref).max() < 0.03 * ref.max()
        inputs.append(got)
        # the target is the same source, sharper, on the 2x grid at the same place
        t = tgt[280:321, 280:321] / cfg.target_exposure_s
        assert np.unravel_index(np.argmax(t), t.shape) == (iy - 280, ix - 280)
    # the four positions give four different inputs
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.abs(inputs[a] - inputs[b]).max() > 0.1 * inputs[a].max()


def test_coarse_grid_blur_equals_fine_blur_then_rebin() -> None:
    # the polyphase shortcut the simulator uses for inputs against the direct computation:
    # blur on the 2x grid with the pixel-integrated kernel (scipy), then sum 2x2 blocks
    from scipy.signal import fftconvolve

    from xsa_enhance.instrument.psf import psf_kernel
    from xsa_enhance.simulate import images

    rng = np.random.default_rng(3)
    img = np.zeros((120, 96))
    img[rng.integers(0, 120, 40), rng.integers(0, 96, 40)] = rng.uniform(1e-3, 2e-2, 40)
    img += rng.uniform(0, 1e-6, img.shape)
    k = psf_kernel(PSF_HANDBOOK, pixel_arcsec=2.0)
    direct = fftconvolve(img, k, mode="same").reshape(60, 2, 48, 2).sum(axis=(1, 3))
    got = images._blur_rebin2(img.astype(np.float32), PSF_HANDBOOK, 2.0)
    assert got.shape == (60, 48)
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-5 * direct.max())
