"""The shipped models xmm-superres-v1…v7, xmm-denoise-v1…v6: registry checks, behaviour."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from xsa_enhance.models.registry import default_registry_dir, file_sha256, load_model

DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


_C, _Q, _N = ("constant", "sqrt"), ("quantile:0.9999", "sqrt"), ("none", "hdr")


@pytest.mark.parametrize("name,kind,factor,target_s,seed,trained", [
    ("xmm-superres-v1", "sr", 2, 100_000.0, 1, _C),
    ("xmm-denoise-v1", "dn", 1, 50_000.0, 1, _C),
    ("xmm-superres-v2", "sr", 2, 100_000.0, 1, _C),
    ("xmm-denoise-v2", "dn", 1, 50_000.0, 1, _C),
    ("xmm-superres-v3", "sr", 2, 100_000.0, 3, _C),
    ("xmm-denoise-v3", "dn", 1, 50_000.0, 3, _C),
    ("xmm-superres-v4", "sr", 2, 100_000.0, 5, _C),
    ("xmm-superres-v5", "sr", 2, 100_000.0, 6, _C),
    ("xmm-superres-v6", "sr", 2, 100_000.0, 11, _Q),
    ("xmm-superres-v7", "sr", 2, 100_000.0, 12, _N),
    ("xmm-denoise-v4", "dn", 1, 50_000.0, 13, _Q),
    ("xmm-denoise-v5", "dn", 1, 50_000.0, 14, _N),
    ("xmm-denoise-v6", "dn", 1, 50_000.0, 23, _Q),
])
def test_shipped_weights_load_and_match_their_digest(name, kind, factor, target_s, seed, trained):
    m = load_model(name)
    assert m.kind == kind and m.factor == factor
    assert m.input_exposure_s == 20_000.0 and m.target_exposure_s == target_s
    # the clamp mode the weights are trained for, in the config and in the card
    assert (m.clamp, m.stretch) == trained
    assert m.card.get("trained_clamp", "constant") == trained[0]
    path = default_registry_dir() / f"{name}.pt"
    assert path.stat().st_size < 5 * 2**20  # small enough to ship in the package
    assert file_sha256(path) == m.sha256
    card = m.card
    assert card["training"]["seed"] == seed and card["caveats"]
    # the model card documents this exact file
    assert m.sha256 in DOCS.read_text()


_FLUX_BIAS = pytest.mark.xfail(strict=True, reason=(
    "known bias, see docs/models.md 'Known problems': trained with PSNR/SSIM on the sqrt "
    "scale against Poisson-sampled targets, the models predict about E[sqrt(counts)]^2 and "
    "underestimate faint rates (point-source wings, background)"))


@functools.lru_cache(maxsize=None)
def _point_source_flux_ratio(name: str) -> float:
    """Output flux / ideal flux of three sources in 20" boxes on a simulated 20 ks frame."""
    from xsa_enhance.instrument.grid import GRID_1X
    from xsa_enhance.instrument.mask import detector_mask
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.training.psf_test import render_point_sources

    mask = np.asarray(detector_mask(GRID_1X), dtype=bool)
    rng = np.random.default_rng(0)
    pos = np.array([[180.0, 160.0], [150.0, 250.0], [260.0, 230.0]])
    for (y, x) in pos:  # well inside CCDs, away from gaps
        assert mask[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7].all()
    rates = np.array([4e-3, 2e-3, 1e-3])
    src = render_point_sources(mask.shape, pos, rates)
    bkg = 1.1168e-5
    counts = rng.poisson((src + bkg) * 20_000.0) * mask
    m = load_model(name)
    out = enhance(counts, 20_000.0, mask, m)
    assert np.isfinite(out.counts).all() and out.counts.min() >= 0
    rate = out.counts / out.exposure_s
    f = m.factor
    # what the model should produce: the sources with the target PSF, noiseless
    ideal = render_point_sources(mask.shape, pos, rates, factor=f,
                                 resolution=0.5 if f == 2 else 1.0)
    tot = 0.0
    expect = 0.0
    for (y, x) in pos:  # 20" half-size boxes, background subtracted for DN
        yc, xc = int(round((y + 0.5) * f - 0.5)), int(round((x + 0.5) * f - 0.5))
        h = 5 * f
        box = rate[yc - h:yc + h + 1, xc - h:xc + h + 1]
        tot += box.sum() - (bkg * box.size if m.kind == "dn" else 0.0)
        expect += ideal[yc - h:yc + h + 1, xc - h:xc + h + 1].sum()
    return float(tot / expect)


_FLUX_BIAS_V2 = pytest.mark.xfail(strict=True, reason=(
    "reduced, not removed, in v2 (docs/models.md, v2 section): the linear-scale loss terms "
    "raise the kept point-source flux from 15 % to ~64 % (SR) and from 10 % to ~42 % (DN)"))


@pytest.mark.parametrize("name", [
    pytest.param("xmm-superres-v1", marks=_FLUX_BIAS),
    pytest.param("xmm-denoise-v1", marks=_FLUX_BIAS),
    pytest.param("xmm-superres-v2", marks=_FLUX_BIAS_V2),
    pytest.param("xmm-denoise-v2", marks=_FLUX_BIAS_V2),
    "xmm-superres-v3",
    "xmm-denoise-v3",
    "xmm-superres-v4",
    "xmm-superres-v5",
    "xmm-superres-v6",
    "xmm-superres-v7",
    "xmm-denoise-v4",
    "xmm-denoise-v5",
    "xmm-denoise-v6",
])
def test_shipped_models_keep_point_source_flux(name):
    """On a 20 ks frame the output keeps the sources' flux (within 25 %) in 20" boxes."""
    assert _point_source_flux_ratio(name) == pytest.approx(1.0, rel=0.25), name


@pytest.mark.parametrize("kind", ["superres", "denoise"])
def test_v2_keeps_much_more_point_source_flux_than_v1(kind):
    """The v2 loss (linear-scale MSE + Poisson terms) fixes most of v1's flux loss."""
    r1 = _point_source_flux_ratio(f"xmm-{kind}-v1")
    r2 = _point_source_flux_ratio(f"xmm-{kind}-v2")
    assert r1 < 0.2  # v1's known bias
    assert r2 > 0.35 and r2 > 3.0 * r1, (r1, r2)


def test_aliases_resolve_per_clamp_mode_and_earlier_rounds_stay_registered():
    latest = {"superres": {"constant": "v5", "quantile:0.9999": "v6", "none": "v7"},
              "denoise": {"constant": "v3", "quantile:0.9999": "v6", "none": "v5"}}
    for kind, per_mode in latest.items():
        last = max(int(v[1:]) for v in per_mode.values())
        versions = [f"v{i}" for i in range(1, last + 1)]
        digests = {v: load_model(f"xmm-{kind}-{v}").sha256 for v in versions}
        assert len(set(digests.values())) == len(versions)
        assert load_model(f"xmm-{kind}").sha256 == digests[per_mode["constant"]]
        for clamp, version in per_mode.items():
            m = load_model(f"xmm-{kind}", clamp=clamp)
            assert m.sha256 == digests[version] and m.name == f"xmm-{kind}-{version}"


def test_pipeline_defaults_name_the_aliases_resolving_to_superres_v5_and_denoise_v3():
    import yaml

    from xsa_enhance.models.registry import resolve_model
    from xsa_enhance.pipeline.config import EnhanceSettings

    assert EnhanceSettings().models == ("xmm-superres", "xmm-denoise")
    root = Path(__file__).resolve().parents[1] / "pipelines"
    for f in sorted(root.glob("*.yaml")):
        cfg = yaml.safe_load(f.read_text())
        assert cfg["enhance"]["models"] == ["xmm-superres", "xmm-denoise"], f.name
    # the weights the aliases pick for the two clamps the pipelines run
    assert resolve_model("xmm-superres", clamp="constant").id == "xmm-superres-v5"
    assert resolve_model("xmm-denoise", clamp="constant").id == "xmm-denoise-v3"
    assert resolve_model("xmm-superres", clamp="quantile:0.9999").id == "xmm-superres-v6"
    assert resolve_model("xmm-denoise", clamp="quantile:0.9999").id == "xmm-denoise-v6"


@functools.lru_cache(maxsize=None)
def _psf_summary(name: str) -> dict:
    from xsa_enhance.training.psf_test import run_psf_test

    # the documented measurements of v3-v5 (constant-clamp weights) with both clamps, as made
    # before weights were matched to clamp modes
    return run_psf_test(name, None, seed=0, clamps=("constant", "quantile:0.9999"),
                        allow_clamp_mismatch=True).summary()


def _psf_test(name: str) -> dict:
    return _psf_summary(name)["psf"]


def test_superres_v4_keeps_point_sources_unclipped_and_sharper_than_v3():
    """v4's output clamp ratio 1: the documented PSF test (seed 0) of docs/models.md."""
    m = load_model("xmm-superres-v4")
    assert m.output_clamp_ratio == 1.0 and load_model("xmm-superres-v3").output_clamp_ratio == 0.25
    v3, v4 = _psf_test("xmm-superres-v3"), _psf_test("xmm-superres-v4")
    for clamp in ("constant", "quantile:0.9999"):
        # flux target met (within 10 %), v3 kept ~79 %
        assert abs(v4[clamp]["median_flux_ratio_pred_target"] - 1.0) <= 0.10
        assert v3[clamp]["median_flux_ratio_pred_target"] < 0.85
        # the brightest sources are no longer flat-topped: their flux is kept
        assert v4[clamp]["by_rate"]["0.02"]["flux_ratio_pred_target"] > 0.9
        assert v3[clamp]["by_rate"]["0.02"]["flux_ratio_pred_target"] < 0.8
        # sharper than v3, though still short of the 1.25 target (docs/models.md)
        assert v4[clamp]["sigma_ratio_pred_target"] < v3[clamp]["sigma_ratio_pred_target"] - 0.08
        assert v4[clamp]["sigma_ratio_pred_target"] > 1.25
        assert v4[clamp]["fit_success_fraction"] >= 0.8


def test_superres_v5_meets_the_psf_test_targets_with_both_clamps():
    """v5, trained on simulator revision 2 (inputs that keep sub-pixel positions): the
    documented PSF test (seed 0) of docs/models.md meets sigma <= 1.25 x target and flux
    within 10 % with constant and quantile clamping; v4 (revision 1) did not."""
    m = load_model("xmm-superres-v5")
    assert m.output_clamp_ratio == 1.0
    assert m.card["simulator_revision"] == 2
    assert "simulator_revision" not in load_model("xmm-superres-v4").card
    v4, v5 = _psf_test("xmm-superres-v4"), _psf_test("xmm-superres-v5")
    for clamp in ("constant", "quantile:0.9999"):
        r = v5[clamp]
        assert r["passed_sigma"] and r["passed_flux"] and r["passed_fits"], (clamp, r)
        # independent of the pass flags: the figures themselves
        assert r["sigma_ratio_pred_target"] <= 1.25
        assert abs(r["median_flux_ratio_pred_target"] - 1.0) <= 0.10
        assert r["sigma_ratio_pred_target"] < v4[clamp]["sigma_ratio_pred_target"] - 0.1
        # bright sources (100-400 counts) come out within 10 % of the target's width
        for rate in ("0.005", "0.01", "0.02"):
            b = r["by_rate"][rate]
            assert b["sigma_pred_px"] <= 1.1 * b["sigma_target_px"], (clamp, rate, b)


@pytest.mark.xfail(strict=True, reason=(
    "known limit, docs/limitations.md 'Close pairs of sources become one': v5 paints one sharp "
    "source between two closer than ~2 input FWHM, where the input still shows two"))
def test_superres_v5_resolves_close_pairs_at_least_as_often_as_its_input():
    deb = _psf_summary("xmm-superres-v5")["deblending"]
    for sep in ("1", "1.25", "1.5"):
        assert deb["model (constant)"][sep] >= deb["input"][sep], (sep, deb)


def test_ship_recipe_names_versions():
    from xsa_enhance.errors import ConfigError
    from xsa_enhance.training.ship import NAMES, names_for

    assert names_for("v1") == NAMES
    assert names_for("v2") == {"sr": "xmm-superres-v2", "dn": "xmm-denoise-v2"}
    with pytest.raises(ConfigError):
        names_for("2")
