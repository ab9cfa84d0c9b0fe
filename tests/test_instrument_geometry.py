"""pn geometry: CCD layout, RAW <-> DET <-> sky, against independent computations."""

import numpy as np
import pytest
from astropy.wcs import WCS

from xsa_enhance.instrument import geometry as geo


def test_twelve_ccds_of_64x200_pixels_without_overlap() -> None:
    assert len(geo.CCD_LAYOUT) == 12
    assert [c.ccdnr for c in geo.CCD_LAYOUT] == list(range(1, 13))
    assert geo.PIXEL_DET == pytest.approx(4.12838 / 0.05)
    boxes = [c.bounds() for c in geo.CCD_LAYOUT]
    for (x0, x1, y0, y1) in boxes:
        assert x1 - x0 == pytest.approx(64 * 82.5676, rel=1e-6)
        assert y1 - y0 == pytest.approx(200 * 82.5676, rel=1e-6)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap_x = min(a[1], b[1]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[2], b[2])
            assert overlap_x <= 1e-6 or overlap_y <= 1e-6
    # 4 quadrants of 3 CCDs
    assert sorted({c.quadrant for c in geo.CCD_LAYOUT}) == [0, 1, 2, 3]
    # Optical axis and FOV centre lie on the array
    assert geo.det_to_raw(*geo.OPTICAL_AXIS_DET)[0] > 0


def test_raw_det_round_trip_and_pixel_centres() -> None:
    rng = np.random.default_rng(1)
    ccd = rng.integers(1, 13, 5000)
    rawx = rng.integers(1, 65, 5000)
    rawy = rng.integers(1, 201, 5000)
    detx, dety = geo.raw_to_det(ccd, rawx, rawy)
    c2, x2, y2 = geo.det_to_raw(detx, dety)
    np.testing.assert_array_equal(c2, ccd)
    np.testing.assert_array_equal(x2, rawx)
    np.testing.assert_array_equal(y2, rawy)
    # neighbouring raw pixels are one pixel apart in DET
    a = np.array(geo.raw_to_det(4, 10, 100))
    b = np.array(geo.raw_to_det(4, 11, 100))
    c = np.array(geo.raw_to_det(4, 10, 101))
    assert np.hypot(*(b - a)) == pytest.approx(82.5676)
    assert np.hypot(*(c - a)) == pytest.approx(82.5676)


def test_rawy_one_is_at_the_outer_edge() -> None:
    # read-out nodes at the outer edges: RAWY=1 is farther from the array centre than RAWY=200
    for ccd in range(1, 13):
        _, y1 = geo.raw_to_det(ccd, 32, 1)
        _, y200 = geo.raw_to_det(ccd, 32, 200)
        assert abs(y1 - geo.ARRAY_CENTRE_DET[1]) > abs(y200 - geo.ARRAY_CENTRE_DET[1])


def test_positions_in_gaps_and_outside_have_no_ccd() -> None:
    c, x, y = geo.det_to_raw(np.array([-40000.0, 0.0, 40000.0]), np.array([0.0, 40000.0, 0.0]))
    assert (c == 0).all() and (x == 0).all() and (y == 0).all()


def test_sky_conversion_matches_astropy_wcs() -> None:
    ra0, dec0, pa = 150.25, 62.5, 73.0
    kw = geo.sky_wcs_keywords(ra_nom=ra0, dec_nom=dec0)
    w = WCS(naxis=2)
    w.wcs.ctype = [kw["REFXCTYP"][0], kw["REFYCTYP"][0]]
    w.wcs.crpix = [kw["REFXCRPX"][0], kw["REFYCRPX"][0]]
    w.wcs.crval = [kw["REFXCRVL"][0], kw["REFYCRVL"][0]]
    w.wcs.cdelt = [kw["REFXCDLT"][0], kw["REFYCDLT"][0]]
    assert kw["REFXCRPX"][0] == 25921 and kw["REFXLMAX"][0] == 51840
    rng = np.random.default_rng(2)
    detx = rng.uniform(-18000, 14000, 200)
    dety = rng.uniform(-17000, 15000, 200)
    x, y = geo.det_to_sky(detx, dety, pa_deg=pa)
    ra, dec = geo.sky_to_radec(x, y, ra_pnt=ra0, dec_pnt=dec0)
    ra_ref, dec_ref = w.wcs_pix2world(x, y, 1)
    np.testing.assert_allclose(ra, ra_ref, atol=1e-9)
    np.testing.assert_allclose(dec, dec_ref, atol=1e-9)
    x2, y2 = geo.radec_to_sky(ra, dec, ra_pnt=ra0, dec_pnt=dec0)
    np.testing.assert_allclose(x2, x, atol=1e-5)
    dx, dy = geo.sky_to_det(x, y, pa_deg=pa)
    np.testing.assert_allclose(dx, detx, atol=1e-6)
    np.testing.assert_allclose(dy, dety, atol=1e-6)
    # distances on the sky equal distances on the detector (0.05 arcsec units)
    sep_det = np.hypot(detx - detx[0], dety - dety[0]) * 0.05 / 3600.0
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra, dec, unit="deg")
    np.testing.assert_allclose(c.separation(c[0]).deg, sep_det, rtol=2e-3, atol=1e-7)


def test_position_angle_rotates_north() -> None:
    # PA 90: the DET +y direction points along sky -X (east) ... i.e. sky X decreases
    x, y = geo.det_to_sky(0.0, 1000.0, pa_deg=90.0)
    assert x == pytest.approx(geo.SKY_REFPIX - 1000.0)
    assert y == pytest.approx(geo.SKY_REFPIX)


def test_fov_circle_and_off_axis() -> None:
    assert geo.in_fov(*geo.FOV_CENTRE_DET)
    assert not geo.in_fov(geo.FOV_CENTRE_DET[0] + 18100, geo.FOV_CENTRE_DET[1])
    assert geo.off_axis_arcmin(*geo.OPTICAL_AXIS_DET) == 0.0
    assert geo.off_axis_arcmin(geo.OPTICAL_AXIS_DET[0] + 1200.0, geo.OPTICAL_AXIS_DET[1]) == (
        pytest.approx(1.0)
    )
