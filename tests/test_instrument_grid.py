"""The DET image grids against the numbers of DESIGN.md section 5 (evselect's grid)."""

import numpy as np

from xsa_enhance.instrument.grid import GRID_1X, GRID_2X


def test_standard_grid_matches_evselect() -> None:
    assert GRID_1X.shape == (411, 403)
    assert GRID_1X.x_centres[0] == -18243.5
    assert GRID_1X.y_centres[0] == -17487.5
    assert GRID_1X.x_edges[-1] == 13956.5
    assert GRID_1X.y_edges[-1] == 15352.5
    assert GRID_1X.pixel_arcsec == 4.0


def test_2x_grid_covers_same_area_with_half_pixels() -> None:
    assert GRID_2X.shape == (822, 806)
    assert GRID_2X.binsize == 40.0
    assert GRID_2X.x_edges[0] == GRID_1X.x_edges[0]
    assert GRID_2X.y_edges[-1] == GRID_1X.y_edges[-1]


def test_pixel_index_agrees_with_histogram2d() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-19000, 14500, 5000)
    y = rng.uniform(-18000, 16000, 5000)
    ix, iy = GRID_1X.pixel_index(x, y)
    keep = (ix >= 0) & (ix < 403) & (iy >= 0) & (iy < 411)
    ours = np.zeros((411, 403))
    np.add.at(ours, (iy[keep], ix[keep]), 1)
    ref, _, _ = np.histogram2d(y, x, bins=[GRID_1X.y_edges, GRID_1X.x_edges])
    np.testing.assert_array_equal(ours, ref)
