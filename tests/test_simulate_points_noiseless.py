"""Training sets with expected (noiseless) targets and the optional bright point-source component."""

import numpy as np
import pytest
from click.testing import CliRunner

from xsa_enhance.cli.main import main as cli
from xsa_enhance.errors import ConfigError
from xsa_enhance.simulate.images import (
    POINTS_PER_FIELD,
    POINTS_RATE_RANGE,
    config_for_kind,
    simulate_component,
)
from xsa_enhance.simulate.training import open_training_set, write_training_set
from xsa_enhance.training.data import PairSource
from xsa_enhance.training.train import TrainConfig


@pytest.fixture(scope="module")
def dn_sets(tmp_path_factory):
    """The same DN set (n=3, seed 21) with Poisson targets, and with expected targets + points."""
    d = tmp_path_factory.mktemp("noiseless")
    plain = write_training_set(d / "plain.zarr", kind="dn", n=3, seed=21)
    rich = write_training_set(d / "rich.zarr", kind="dn", n=3, seed=21,
                              components=("extended", "agn", "background", "points"),
                              target_noise="none")
    return open_training_set(plain), open_training_set(rich)


def test_attributes_record_components_and_noise(dn_sets) -> None:
    plain, rich = dn_sets
    assert plain.components == ("extended", "agn", "background")
    assert plain.target_noise == "poisson"
    assert rich.components == ("extended", "agn", "background", "points")
    assert rich.target_noise == "none"


@pytest.mark.parametrize("comp", ["extended", "agn", "background"])
def test_inputs_identical_and_targets_are_the_poisson_mean(dn_sets, comp) -> None:
    plain, rich = dn_sets
    a = plain.component(comp, "train")
    b = rich.component(comp, "train")
    # same seed: the same inputs, whatever the target noise and whichever other components
    np.testing.assert_array_equal(np.asarray(a.input[0]), np.asarray(b.input[0]))
    poisson = np.asarray(a.target[0], dtype=np.float64)
    expected = np.asarray(b.target[0], dtype=np.float64)
    assert np.all(poisson == np.round(poisson))
    assert not np.all(expected == np.round(expected))  # real-valued expectations
    # the Poisson targets scatter around the expected ones with variance = mean
    sel = expected > 0.1
    assert sel.sum() > 300
    resid = (poisson[sel] - expected[sel]) / np.sqrt(expected[sel])
    assert abs(resid.mean()) < 5.0 / np.sqrt(sel.sum())
    assert 0.7 < resid.var() < 1.3
    total = expected.sum()
    assert abs(poisson.sum() - total) < 5.0 * np.sqrt(total)


def test_sr_expected_target_has_no_background_and_no_noise() -> None:
    cfg = config_for_kind("sr", target_noise="none")
    pair = simulate_component("background", np.random.default_rng(3), cfg)
    assert pair.target is None
    ext = simulate_component("extended", np.random.default_rng(4), cfg)
    # the expected 100 ks 2x target of a smooth source is smooth: neighbouring pixels differ by
    # far less than the Poisson noise a sampled target would have
    t = ext.target.astype(np.float64)
    bright = t[1:, :] > 2.0
    jump = np.abs(np.diff(t, axis=0))[bright]
    assert bright.sum() > 100
    assert np.median(jump / np.sqrt(t[1:, :][bright])) < 0.3


def test_unknown_target_noise_and_components_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="target noise"):
        config_for_kind("sr", target_noise="gaussian")
    with pytest.raises(ConfigError, match="target noise"):
        write_training_set(tmp_path / "a", kind="sr", n=1, seed=1, target_noise="gaussian")
    with pytest.raises(ConfigError, match="components"):
        write_training_set(tmp_path / "b", kind="sr", n=1, seed=1, components=("extended", "agn"))
    with pytest.raises(ConfigError, match="components"):
        write_training_set(tmp_path / "c", kind="sr", n=1, seed=1,
                           components=("background", "stars"))


def test_points_component_rates_and_counts() -> None:
    cfg = config_for_kind("dn", target_noise="none")
    ns, kept = [], []
    for seed in range(6):
        pair = simulate_component("points", np.random.default_rng(seed), cfg)
        n = pair.meta["n_sources"]
        ns.append(n)
        total_rate = pair.meta["total_rate"]
        lo, hi = POINTS_RATE_RANGE
        assert lo * n <= total_rate <= hi * n
        # the expected target holds the sources' counts after vignetting (0.33-1), the mask and
        # the PSF wings beyond the kernel: between a quarter and all of rate * exposure
        frac = pair.target.sum() / (total_rate * cfg.target_exposure_s)
        kept.append(frac)
        assert 0.25 < frac <= 1.0
        # the input is an independent 20 ks Poisson draw of the same sources
        exp_in = pair.target.sum() * cfg.input_exposure_s / cfg.target_exposure_s
        assert abs(pair.input.sum() - exp_in) < 5 * np.sqrt(exp_in)
    assert 20 < np.mean(ns) < 60 and abs(np.mean(ns) - POINTS_PER_FIELD) < 15


def test_points_are_bright_compared_with_the_agn() -> None:
    cfg = config_for_kind("sr")
    rng_p, rng_a = np.random.default_rng(5), np.random.default_rng(5)
    pts = simulate_component("points", rng_p, cfg)
    agn = simulate_component("agn", rng_a, cfg)
    # the brightest 1x pixel of a points field holds far more counts than an AGN field's
    assert pts.input.max() > 3 * max(agn.input.max(), 1.0)


def test_pair_source_draws_points_only_when_asked(dn_sets) -> None:
    plain, rich = dn_sets
    rng = np.random.default_rng
    # p_points = 0 keeps the paper's random streams: the same combos and crops as without points
    a = PairSource(plain, "train", crop=32)
    b = PairSource(rich, "train", crop=32)
    assert [a.draw(rng([1, k])) for k in range(20)] == [b.draw(rng([1, k])) for k in range(20)]
    c = PairSource(rich, "train", crop=32, p_points=0.5)
    combos = [c.draw(rng([2, k]))[0] for k in range(200)]
    share = np.mean([cb.get("points") is not None for cb in combos])
    assert 0.4 < share < 0.6
    with pytest.raises(ConfigError, match="no 'points' component"):
        PairSource(plain, "train", crop=32, p_points=0.5)


def test_train_config_rejects_bad_probabilities() -> None:
    with pytest.raises(ConfigError, match="p_points"):
        TrainConfig(kind="dn", train_set="x", p_points=1.5, crop=64, val_crop=64).validate()


def test_cli_writes_points_and_expected_targets(tmp_path) -> None:
    out = tmp_path / "cli.zarr"
    res = CliRunner().invoke(cli, ["simulate", "training-set", "--kind", "dn", "--n", "1",
                                   "--seed", "2", "--out", str(out), "--points",
                                   "--target-noise", "none"])
    assert res.exit_code == 0, res.output
    ts = open_training_set(out)
    assert "points" in ts.components and ts.target_noise == "none"
    assert np.asarray(ts.component("points", "train").input[0]).sum() > 0


def test_small_v3_preset_draws_points_and_is_offered_by_the_cli() -> None:
    from xsa_enhance.cli.training import PRESETS as CLI_PRESETS
    from xsa_enhance.training.train import PRESETS, load_config

    assert set(CLI_PRESETS) == set(PRESETS) and "small-v3" in PRESETS
    cfg = load_config(preset="small-v3", overrides={"kind": "sr", "train_set": "x.zarr"})
    cfg.validate()
    assert cfg.p_points == 0.5 and cfg.filters == 16


def test_ship_recipe_keeps_test_sets_paper_style(tmp_path) -> None:
    from xsa_enhance.training.ship import make_data

    out = make_data(tmp_path, n=1, seed=4, test_n=1, test_seed=5, kinds=("dn",), points=True,
                    target_noise="none")
    train = open_training_set(out["train_dn"]["path"])
    test = open_training_set(out["test_dn"]["path"])
    assert "points" in train.components and train.target_noise == "none"
    assert "points" not in test.components and test.target_noise == "poisson"
    # the model card records which simulator revision the training set came from
    from xsa_enhance.simulate.images import SIMULATOR_REVISION
    from xsa_enhance.training.ship import _card

    assert SIMULATOR_REVISION == 2
    assert _card("dn", tmp_path)["simulator_revision"] == SIMULATOR_REVISION
    assert _card("sr", tmp_path)["simulator_revision"] is None  # no SR set written here
    assert open_training_set(out["train_dn"]["path"]).simulator_revision == 2
    # a store written before revisions were recorded reads as revision 1
    import zarr

    root = zarr.open_group(str(out["train_dn"]["path"]), mode="r+")
    del root.attrs["simulator_revision"]
    assert open_training_set(out["train_dn"]["path"]).simulator_revision == 1
