"""Detector mask: against the real pn mask and the numbers of DESIGN.md."""

import numpy as np
import pytest
from astropy.io import fits

from xsa_enhance.instrument.grid import GRID_1X, GRID_2X
from xsa_enhance.instrument.mask import detector_mask


def test_mask_matches_real_pn_mask(xmm_reference) -> None:
    path = xmm_reference / "pn_mask_500_2000_detxy_1x.ds"
    with fits.open(path) as h:
        real = h[0].data.astype(bool)
        assert h[0].header["CRVAL1"] == GRID_1X.x_centres[0]
        assert h[0].header["CRVAL2"] == GRID_1X.y_centres[0]
    ours = detector_mask(GRID_1X)
    assert ours.shape == real.shape == (411, 403)
    iou = (ours & real).sum() / (ours | real).sum()
    assert iou >= 0.95, iou


def test_mask_area_and_extent_match_design() -> None:
    m = detector_mask()
    assert m.dtype == bool and m.shape == GRID_1X.shape
    area = m.sum() * 16.0 / 3600.0
    assert area == pytest.approx(588.0, rel=0.04)
    cols = np.nonzero(m.any(axis=0))[0]
    rows = np.nonzero(m.any(axis=1))[0]
    # valid DETX -18244..+13836, DETY -16608..+14352 (DESIGN.md section 6), within 2 pixels
    assert abs(GRID_1X.x_centres[cols[0]] - -18244) <= 160
    assert abs(GRID_1X.x_centres[cols[-1]] - 13836) <= 160
    assert abs(GRID_1X.y_centres[rows[0]] - -16608) <= 160
    assert abs(GRID_1X.y_centres[rows[-1]] - 14352) <= 160
    # chip gaps: 5 empty columns groups inside the field along DETX through the centre row
    mid = m[300]
    runs = np.diff(mid.astype(int))
    assert (runs == -1).sum() >= 5


def test_2x_mask_is_consistent_with_1x() -> None:
    m1 = detector_mask(GRID_1X)
    m2 = detector_mask(GRID_2X)
    assert m2.shape == (822, 806)
    frac = m2.reshape(411, 2, 403, 2).mean(axis=(1, 3))
    agree = ((frac >= 0.5) == m1).mean()
    assert agree > 0.99
    assert m2.sum() / 4 == pytest.approx(m1.sum(), rel=0.02)
