"""The image/slice commands end to end, the image WCS, and comparisons with real evselect output."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.events import EventsConfig, process_event_list, read_image_fits, write_image_fits
from xsa_enhance.events.testing import event_header, write_event_list
from xsa_enhance.instrument.grid import GRID_1X, GRID_2X


def _observation(tmp_path, *, pa=60.0, clean_ks=45.0):
    """45 ks of CCD GTI, no flares (no 10-12 keV events), 40 events per 1 ks in pixel (100, 150)."""
    t_end = 1000.0 + clean_ks * 1000
    times = np.arange(1000.0, t_end, 25.0) + 0.5
    n = len(times)
    detx, dety = -18243 + 80 * 100, -17487 + 80 * 150
    ev = {
        "TIME": times,
        "DETX": np.full(n, detx),
        "DETY": np.full(n, dety),
        "PI": np.full(n, 1000),
        "PATTERN": np.zeros(n),
        "FLAG": np.zeros(n),
        "RAWY": np.full(n, 50),
    }
    hdr = event_header(obsid="0765432101", pa_pnt=pa, ra_pnt=210.5, dec_pnt=-33.25)
    return write_event_list(
        tmp_path / "P0765432101PNS003PIEVLI0000.FTZ", ev, ccd_gtis=[[1000.0, t_end]], header=hdr
    )


def test_cli_image(tmp_path):
    ev = _observation(tmp_path)
    out = tmp_path / "img.fits"
    res = CliRunner().invoke(main, ["image", str(ev), "--out", str(out), "--png"])
    assert res.exit_code == 0, res.output
    img = read_image_fits(out)
    assert img.exposure_s == pytest.approx(45000.0)
    assert img.counts[150, 100] == 1800 and img.total_counts == 1800  # one event per 25 s
    assert img.length_ks is None
    assert (tmp_path / "img.png").stat().st_size > 1000
    # another band excludes the 1 keV events
    res = CliRunner().invoke(main, ["image", str(ev), "--band", "1500:2000", "--out", str(out)])
    assert res.exit_code == 0 and read_image_fits(out).total_counts == 0


def test_cli_slice_names_and_counts(tmp_path):
    ev = _observation(tmp_path)
    out = tmp_path / "slices"
    res = CliRunner().invoke(main, ["slice", str(ev), "--exposures", "10,20,50", "--out", str(out)])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    # 45 ks: 4 x 10, 2 x 20, no 50
    assert names == [
        "0765432101_10ks_4_0.fits", "0765432101_10ks_4_1.fits", "0765432101_10ks_4_2.fits",
        "0765432101_10ks_4_3.fits", "0765432101_20ks_2_0.fits", "0765432101_20ks_2_1.fits",
    ]  # fmt: skip
    for name in names:
        img = read_image_fits(out / name)
        # 10 ks holds 400 events of one per 25 s, 20 ks 800
        assert img.total_counts == (400 if "_10ks_" in name else 800)
    res = CliRunner().invoke(main, ["slice", str(ev), "--exposures", "50", "--out", str(out)])
    assert res.exit_code == 2 and "shorter than" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("pa", [0.0, 60.0, 237.5])
def test_sky_wcs_matches_instrument_geometry(tmp_path, pa):
    """The image's TAN WCS agrees with geometry.det_to_sky + sky_to_radec (computed per pixel)."""
    from xsa_enhance.instrument.geometry import det_to_sky, sky_to_radec

    ev = _observation(tmp_path, pa=pa, clean_ks=10)
    obs = process_event_list(ev, None, config=EventsConfig(slice_lengths_ks=(), grids=("1x", "2x")))
    path = write_image_fits(obs.full_image, tmp_path / "i.fits")
    with fits.open(path) as hdul:
        for hdu, grid in ((hdul[0], GRID_1X), (hdul["COUNTS2X"], GRID_2X)):
            w = WCS(hdu.header)
            px = np.array([0, 100, 402, 17, 250]) * grid.nx // 403
            py = np.array([0, 150, 410, 390, 3]) * grid.ny // 411
            world = w.pixel_to_world_values(px, py)  # 0-based pixel centres
            detx = grid.x_edge0 + grid.binsize * (px + 0.5)
            dety = grid.y_edge0 + grid.binsize * (py + 0.5)
            x, y = det_to_sky(detx, dety, pa_deg=pa)
            ra, dec = sky_to_radec(x, y, ra_pnt=210.5, dec_pnt=-33.25)
            sep = np.hypot((world[0] - ra) * np.cos(np.deg2rad(dec)), world[1] - dec) * 3600
            assert np.all(sep < 0.01), sep  # arcsec
            # the physical (L) WCS gives DETX/DETY
            wl = WCS(hdu.header, key="L")
            d = wl.pixel_to_world_values(px, py)
            np.testing.assert_allclose(d[0], detx)
            np.testing.assert_allclose(d[1], dety)


def test_det_wcs_matches_real_evselect_image(xmm_reference):
    """Our DET WCS keywords equal those of a real evselect/eexpmap image on the same grid."""
    ref = fits.getheader(xmm_reference / "pn_mask_500_2000_detxy_1x.ds")
    assert (ref["NAXIS1"], ref["NAXIS2"]) == (GRID_1X.nx, GRID_1X.ny)
    from xsa_enhance.events.fitsio import _det_wcs_cards

    cards = {k: v for k, v, _ in _det_wcs_cards(GRID_1X, primary=True)}
    for key in ("CRPIX1", "CRVAL1", "CDELT1", "CRPIX2", "CRVAL2", "CDELT2", "CTYPE1", "CTYPE2",
                "CRVAL1L", "CRVAL2L", "CDELT1L", "CTYPE1L", "WCSNAMEL",
                "LTV1", "LTV2", "LTM1_1", "LTM2_2", "LTM1_2", "LTM2_1"):  # fmt: skip
        want = ref[key]
        if isinstance(want, str):
            assert cards[key] == want.strip(), key
        else:
            assert cards[key] == pytest.approx(want, rel=1e-12, abs=1e-12), key


def test_real_mask_pixels_are_on_the_grid(xmm_reference):
    """Binning DET positions of the real mask's pixel centres puts each in its own pixel."""
    from xsa_enhance.events import bin_events

    mask = fits.getdata(xmm_reference / "pn_mask_500_2000_detxy_1x.ds").astype(bool)
    hdr = fits.getheader(xmm_reference / "pn_mask_500_2000_detxy_1x.ds")
    iy, ix = np.nonzero(mask)
    detx = hdr["CRVAL1"] + hdr["CDELT1"] * (ix + 1 - hdr["CRPIX1"])
    dety = hdr["CRVAL2"] + hdr["CDELT2"] * (iy + 1 - hdr["CRPIX2"])
    np.testing.assert_array_equal(bin_events(detx, dety).astype(bool), mask)
    # integer DET positions (as in event lists) near the centres land in the same pixels
    np.testing.assert_array_equal(
        bin_events(np.floor(detx).astype(np.int16), np.ceil(dety).astype(np.int16)).astype(bool), mask
    )


def test_cli_config_file(tmp_path):
    ev = _observation(tmp_path, clean_ks=25)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("events:\n  band: [1500, 2000]\n  slice_lengths_ks: [20]\n")
    out = tmp_path / "s"
    res = CliRunner().invoke(main, ["slice", str(ev), "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["0765432101_20ks_1_0.fits"]
    img = read_image_fits(out / "0765432101_20ks_1_0.fits")
    assert img.band == (1500, 2000) and img.total_counts == 0  # the 1 keV events are outside
    # command-line options win over the file
    res = CliRunner().invoke(main, ["slice", str(ev), "--config", str(cfg), "--band", "500:2000",
                                    "--exposures", "10", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_image_fits(out / "0765432101_10ks_2_1.fits").total_counts == 400
    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  bnad: [1, 2]\n")
    res = CliRunner().invoke(main, ["image", str(ev), "--config", str(bad), "--out", str(tmp_path / "o.fits")])
    assert res.exit_code == 2 and str(bad) in res.output and "bnad" in res.output
    assert len(res.output.strip().splitlines()) == 1
