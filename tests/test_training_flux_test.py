"""The bright-source flux test, on networks whose output is known exactly."""

from __future__ import annotations

import json

import pytest

from xsa_enhance.models.networks import identity_network
from xsa_enhance.models.registry import load_model, save_weights
from xsa_enhance.training.flux_test import BRIGHT_RATES, run_flux_test


def _identity(kind, tmp_path):
    path = tmp_path / f"id-{kind}.pt"
    save_weights(identity_network(kind), path, name=f"identity-{kind}", kind=kind,
                 config={"clamp": "none"}, card={})
    return load_model(path)


def test_an_identity_denoiser_keeps_the_flux_of_bright_sources(tmp_path):
    res = run_flux_test(_identity("dn", tmp_path), tmp_path / "out", clamps=("none",), seed=1)
    v = res.per_clamp["none"]
    # the identity's output is the input rate: only Poisson noise (300 counts: ~6 %) and the
    # neighbours' wings separate its aperture fluxes from the truth's
    assert v["median_flux_ratio"] == pytest.approx(1.0, abs=0.02)
    assert v["by_counts"]["8000"] == pytest.approx(1.0, abs=0.02)
    assert v["passed"] and v["fraction_within"] == 1.0
    assert set(v["by_counts"]) == {f"{r * 20000:.0f}" for r in BRIGHT_RATES}
    summary = json.loads((tmp_path / "out" / "flux_test.json").read_text())
    assert summary["per_clamp"]["none"]["weights"] == "id-dn.pt"
    assert "| none |" in (tmp_path / "out" / "flux_test.md").read_text()


def test_an_identity_superres_loses_the_flux_its_wider_psf_spills_out_of_the_aperture(tmp_path):
    """The truth of SR is the 2x target with the PSF halved: the same aperture holds more of a
    source there than in the upsampled input, so a no-op SR model must come out low."""
    res = run_flux_test(_identity("sr", tmp_path), None, clamps=("none",), seed=1)
    v = res.per_clamp["none"]
    assert v["median_flux_ratio"] < 0.95
    assert not v["passed"]
