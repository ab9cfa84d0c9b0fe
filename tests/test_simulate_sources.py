"""AGN number counts and procedural extended sources."""

import numpy as np
import pytest

from xsa_enhance.instrument.background import sigma_b
from xsa_enhance.instrument.grid import GRID_1X
from xsa_enhance.simulate.sources import (
    AGN_LOGNLOGS,
    EXTENDED_KINDS,
    draw_agn,
    draw_extended,
)


def _moretti(s):
    a1, a2, s0, ns = 1.82, 0.60, 1.48e-14, 6150.0
    return ns * (2e-15) ** a1 / (s**a1 + s0 ** (a1 - a2) * s**a2)


def test_lognlogs_numbers_from_design() -> None:
    assert AGN_LOGNLOGS.n_above(1e-15) == pytest.approx(_moretti(1e-15))
    assert AGN_LOGNLOGS.n_above(1e-15) == pytest.approx(780, rel=0.05)
    fov_deg2 = np.pi * 0.25**2
    assert AGN_LOGNLOGS.n_above(1e-15) * fov_deg2 == pytest.approx(150, rel=0.05)


def test_agn_counts_and_flux_distribution() -> None:
    rng = np.random.default_rng(0)
    area = (GRID_1X.nx * 4 / 3600) * (GRID_1X.ny * 4 / 3600)
    n_fields = 60
    counts = []
    fluxes = []
    for _ in range(n_fields):
        pop = draw_agn(rng, s_min=1e-15, absorption=1.0)
        counts.append(len(pop))
        fluxes.append(pop.flux)
        np.testing.assert_allclose(pop.rate, pop.flux * 7e11)
        assert GRID_1X.x_edges[0] <= pop.detx.min() and pop.detx.max() <= GRID_1X.x_edges[-1]
    expected = (_moretti(1e-15) - _moretti(1e-11)) * area
    mean = np.mean(counts)
    assert abs(mean - expected) < 4 * np.sqrt(expected / n_fields)
    # Poisson scatter of the number per field
    assert np.var(counts) == pytest.approx(expected, rel=0.5)
    f = np.concatenate(fluxes)
    frac = (f > 1e-14).mean()
    want = (_moretti(1e-14) - _moretti(1e-11)) / (_moretti(1e-15) - _moretti(1e-11))
    assert frac == pytest.approx(want, abs=4 * np.sqrt(want / f.size))


def test_absorption_divides_fluxes() -> None:
    a = draw_agn(np.random.default_rng(3), absorption=1.0)
    b = draw_agn(np.random.default_rng(3), absorption=20.0)
    np.testing.assert_allclose(b.flux * 20.0, a.flux)
    draws = [draw_agn(np.random.default_rng(i), s_min=1e-14).absorption for i in range(300)]
    logs = np.log10(draws)
    assert 0 <= logs.min() and logs.max() <= 2
    assert np.mean(logs) == pytest.approx(1.0, abs=0.15)  # log-uniform in [1, 100]


@pytest.mark.parametrize("kind", EXTENDED_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extended_sources_are_scaled_to_sigma_b(kind, seed) -> None:
    rng = np.random.default_rng(10 * EXTENDED_KINDS.index(kind) + seed)
    src = draw_extended(rng, kind=kind)
    assert src.kind == kind
    img = src.rate_image(GRID_1X)
    assert np.isfinite(img).all() and img.min() >= 0 and img.max() > 0
    # central box (5 % of the image side) mean, or half the peak, is k sigma_B per 4" pixel
    cx, cy = GRID_1X.pixel_index(*src.centre_det)
    h = int(round(0.025 * GRID_1X.nx))
    box = img[int(cy) - h:int(cy) + h + 1, int(cx) - h:int(cx) + h + 1].mean()
    ref = max(box, 0.5 * img.max())
    k = ref / sigma_b(20000.0)
    # the normalisation uses point samples (peaks sampled at 2"), the image 4" pixel averages
    assert k == pytest.approx(src.params["brightness_sigma"], rel=0.3)
    assert 5 <= src.params["brightness_sigma"] <= 50
