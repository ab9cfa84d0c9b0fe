"""Source detection (xsa_enhance.detect): Poisson significance and photometry against
independent computations, detection on simulated images, RA/DEC, flags, the CLI, and the
real-data purity check."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.detect.find import (
    FLAG_EDGE,
    FLAG_RESTORED,
    DetectionConfig,
    detect_sources,
    image_sky_wcs,
)
from xsa_enhance.detect.photometry import poisson_photometry, poisson_significance

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "xmm-real"


def _tail_sigma(n: int, mu: float) -> float:
    """P(X >= n), X ~ Poisson(mu), by the explicit sum, as a Gaussian sigma."""
    p_below = sum(math.exp(-mu) * mu ** k / math.factorial(k) for k in range(n))
    return NormalDist().inv_cdf(1.0 - (1.0 - p_below))  # inv_cdf(P(X < n))


@pytest.mark.parametrize("n, mu", [(10, 2.0), (5, 1.0), (3, 0.5), (30, 12.0), (1, 0.3)])
def test_poisson_significance_matches_the_explicit_tail(n, mu):
    assert poisson_significance(np.array([n]), np.array([mu]))[0] == pytest.approx(
        _tail_sigma(n, mu), abs=1e-6)


def test_poisson_significance_deep_tail_is_finite_and_monotonic():
    s = poisson_significance(np.array([200, 400, 800]), np.array([1.0, 1.0, 1.0]))
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) > 0) and s[0] > 20
    # a 5-sigma Gaussian shortcut would overstate a small-number excess: 5 counts on 1
    assert poisson_significance(np.array([5]), np.array([1.0]))[0] < (5 - 1) / 1.0


def test_aperture_photometry_on_a_known_image():
    img = np.ones((60, 60))
    img[30, 25] += 12  # 12 source counts in one pixel on 1 count/pixel
    mask = np.ones(img.shape, bool)
    res = poisson_photometry(img, mask, 1000.0, np.array([25.2]), np.array([30.1]),
                             aperture_px=2.0, annulus_px=(5.0, 10.0))
    yy, xx = np.mgrid[0:60, 0:60]
    n_ap = int((np.hypot(yy - 30.1, xx - 25.2) <= 2.0).sum())  # pixel centres within 2 px
    assert res.area[0] == n_ap
    assert res.counts[0] == n_ap + 12
    assert res.bkg_per_pixel[0] == pytest.approx(1.0)
    assert res.net[0] == pytest.approx(12.0)
    assert res.rate[0] == pytest.approx(12.0 / (1000.0 * res.eef))
    assert res.signif[0] == pytest.approx(_tail_sigma(n_ap + 12, n_ap), abs=1e-6)


def _field(seed=0, sources=((100.3, 120.6, 300.0),), bkg=0.05, shape=(200, 220)):
    """Poisson image: Gaussian-PSF sources (y, x, counts) on a flat background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    lam = np.full(shape, bkg)
    for y, x, n in sources:
        lam += n * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.3 ** 2)) / (2 * np.pi * 1.3 ** 2)
    return rng.poisson(lam).astype(float)


def test_detects_a_source_at_its_position_in_1_based_pixels():
    img = _field()
    tab = detect_sources(img, 20000.0, np.ones(img.shape, bool))
    assert len(tab) == 1
    # 0-based (y=100.3, x=120.6) -> ds9 / FITS 1-based (X=121.6, Y=101.3)
    assert tab["X"][0] == pytest.approx(121.6, abs=0.4)
    assert tab["Y"][0] == pytest.approx(101.3, abs=0.4)
    assert tab["SIGNIF"][0] > 10 and tab["FLAGS"][0] == 0 and bool(tab["POINTLIKE"][0])
    assert np.isnan(tab["RA"][0])


def test_no_detection_on_pure_background():
    n_false = 0
    for seed in range(3):
        img = _field(seed=seed, sources=())
        n_false += len(detect_sources(img, 20000.0, np.ones(img.shape, bool)))
    assert n_false == 0


def test_ra_dec_from_the_wcs_and_the_edge_flag():
    img = _field(sources=((100.0, 120.0, 300.0), (100.0, 12.0, 300.0)))
    mask = np.ones(img.shape, bool)
    mask[:, :9] = False  # a chip gap next to the second source
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [121.0, 101.0]  # 1-based pixel of the first source
    w.wcs.crval = [150.0, -30.0]
    w.wcs.cdelt = [-4 / 3600, 4 / 3600]
    tab = detect_sources(img, 20000.0, mask, wcs=w)
    tab.sort("X")
    assert len(tab) == 2
    assert tab["RA"][1] == pytest.approx(150.0, abs=2.5 / 3600 / math.cos(math.radians(30)))
    assert tab["DEC"][1] == pytest.approx(-30.0, abs=2.5 / 3600)
    assert tab["FLAGS"][0] & FLAG_EDGE and not tab["FLAGS"][1] & FLAG_EDGE


def test_detection_on_a_model_image_is_measured_on_the_input():
    img = _field()
    model = np.zeros((img.shape[0] * 2, img.shape[1] * 2))  # a background-free 2x output
    model[200:202, 240:243] = 100.0
    restored = np.zeros(model.shape, bool)
    restored[201, 241] = True
    tab = detect_sources(img, 20000.0, np.ones(img.shape, bool),
                         config=DetectionConfig(min_signif=3.0, min_det_signif=3.0,
                                                smooth_px=0.0),
                         detection_image=model, detection_exposure_s=100000.0,
                         detection_factor=2, background_free=True, restored=restored)
    assert len(tab) == 1
    ref = poisson_photometry(img, np.ones(img.shape, bool), 20000.0,
                             np.array([tab["X"][0] - 1]), np.array([tab["Y"][0] - 1]))
    assert tab["COUNTS"][0] == ref.counts[0] and tab["SIGNIF"][0] == pytest.approx(ref.signif[0])
    assert tab["FLAGS"][0] & FLAG_RESTORED


def test_image_sky_wcs_from_pointing_keywords():
    from xsa_enhance.instrument.grid import GRID_1X

    hdr = fits.Header({"RA_PNT": 10.0, "DEC_PNT": 20.0, "PA_PNT": 0.0})
    w, src = image_sky_wcs(hdr, GRID_1X.shape)
    assert src == "pointing"
    # the pixel whose centre is DET (0, 0) looks at the pointing
    px = (0.0 - GRID_1X.x_edge0) / GRID_1X.binsize - 0.5
    py = (0.0 - GRID_1X.y_edge0) / GRID_1X.binsize - 0.5
    ra, dec = w.pixel_to_world_values(px, py)
    assert float(ra) == pytest.approx(10.0, abs=1e-6) and float(dec) == pytest.approx(20.0)
    assert image_sky_wcs(fits.Header(), (10, 10)) == (None, "none")


def test_detect_cli(tmp_path):
    img = _field()
    path = tmp_path / "img.fits"
    hdr = fits.Header({"EXPOSURE": 20000.0})
    fits.PrimaryHDU(img.astype(np.int32), header=hdr).writeto(path)
    out = tmp_path / "src.fits"
    r = CliRunner().invoke(main, ["detect", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    t = Table.read(out, hdu="SOURCES")
    for col in ("X", "Y", "RA", "DEC", "RATE", "RATE_ERR", "SIGNIF", "EXTENT", "POINTLIKE",
                "FLAGS"):
        assert col in t.colnames
    assert len(t) == 1 and fits.getheader(out, "SOURCES")["SIGMETH"] == "poisson-tail"
    r = CliRunner().invoke(main, ["detect", str(path), "--out", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output
    bad = tmp_path / "bad.fits"
    fits.PrimaryHDU(img.astype(np.int32)).writeto(bad)
    r = CliRunner().invoke(main, ["detect", str(bad), "--out", str(tmp_path / "x.fits")])
    assert r.exit_code == 2 and "EXPOSURE" in r.output and "Traceback" not in r.output


@pytest.mark.skipif(not (REAL / "20ks").is_dir(), reason="real-data set not available")
def test_real_observation_purity_against_the_deep_image():
    from xsa_enhance.detect.validate import DetectionMode, evaluate_real_sources

    res = evaluate_real_sources(REAL, [DetectionMode("input")], obsids=["0830450101"])
    t = res["totals"]["input"]
    assert t["n_detected"] >= 10
    assert t["purity"] >= 0.9
    assert t["median_position_error_arcsec"] <= 4.0


def test_simulated_validation_and_threshold_sweep(tmp_path):
    from xsa_enhance.detect.validate import (
        DetectionMode,
        evaluate_simulated,
        simulated_field,
        sweep_thresholds,
        write_report,
    )

    fld = simulated_field(7, n_sources=20)
    assert fld.counts.shape == (411, 403) and len(fld.x) == 20 and np.all(fld.mask[
        np.round(fld.y).astype(int), np.round(fld.x).astype(int)])
    modes = [DetectionMode("input")]
    sim = evaluate_simulated(modes, n_fields=1, seed=7, n_sources=20, n_bins=4)
    r = sim["modes"]["input"]
    assert r["completeness"][-1] == 1.0  # the brightest quarter (> 7e-3 counts/s) all found
    assert r["purity"] >= 0.9
    sw = sweep_thresholds(modes, n_fields=1, seed=7, grid_signif=(2.0, 4.5), grid_smooth=(0.5,))
    rows = {row[1]: row for row in sw["input"]["grid"]}
    assert rows[2.0][3] > rows[4.5][3] and rows[2.0][5] < rows[4.5][5]  # more, less pure
    files = write_report(tmp_path, simulated=sim, real=None)
    assert {f.name for f in files} == {"sources_eval.json", "sources_eval.md",
                                       "sources_completeness.png"}


def test_low_confidence_and_extended_flags():
    from xsa_enhance.detect.find import FLAG_EXTENDED, FLAG_LOW_CONFIDENCE

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:200, 0:220]
    lam = 0.05 + 3000 * np.exp(-((yy - 60) ** 2 + (xx - 60) ** 2) / (2 * 4.0 ** 2)) / (
        2 * np.pi * 16.0)  # a blob of sigma 16" (4 px): extended
    lam += 300 * np.exp(-((yy - 140) ** 2 + (xx - 160) ** 2) / (2 * 1.3 ** 2)) / (2 * np.pi * 1.69)
    img = rng.poisson(lam).astype(float)
    mask = np.ones(img.shape, bool)
    tab = detect_sources(img, 20000.0, mask)
    blob = tab[np.hypot(tab["X"] - 61, tab["Y"] - 61) < 3]
    point = tab[np.hypot(tab["X"] - 161, tab["Y"] - 141) < 3]
    assert len(blob) >= 1 and blob["FLAGS"][0] & FLAG_EXTENDED and not blob["POINTLIKE"][0]
    assert len(point) == 1 and point["POINTLIKE"][0] and not point["FLAGS"][0] & FLAG_EXTENDED
    # a model output whose uncertainty swamps its excess is flagged, a confident one is not
    model = lam * 2.5
    cfg = DetectionConfig(min_signif=3.0, min_det_signif=0.0)
    for sigma, flagged in ((np.full(img.shape, 50.0), True), (np.full(img.shape, 0.01), False)):
        t = detect_sources(img, 20000.0, mask, config=cfg, detection_image=model,
                           detection_exposure_s=50000.0, uncertainty=sigma)
        p = t[np.hypot(t["X"] - 161, t["Y"] - 141) < 3]
        assert len(p) == 1 and bool(p["FLAGS"][0] & FLAG_LOW_CONFIDENCE) == flagged


def test_extended_field_judges_knots_by_the_deep_image():
    from xsa_enhance.detect.validate import simulated_field, true_detections

    plain = simulated_field(7, n_sources=20)
    fld = simulated_field(7, n_sources=20, n_extended=1)
    assert plain.deep is None and fld.deep is not None and len(fld.extended) == 1
    # the same point sources; the extended source adds counts, the deep image is 3x deeper
    assert np.array_equal(plain.x, fld.x) and fld.counts.sum() > plain.counts.sum()
    assert fld.deep.sum() > 2.5 * fld.counts.sum()
    # a detection on the brightest extended pixel away from any point source is real (the
    # deep image confirms it); one on faint background far from everything is not
    lam_ext = fld.counts - plain.counts  # noisy, but the core stands out
    yy, xx = np.mgrid[:411, :403]
    far = np.ones((411, 403), bool)
    for x, y in zip(fld.x, fld.y):
        far &= np.hypot(xx - x, yy - y) > 8
    smooth = np.where(far & fld.mask, lam_ext, -np.inf)
    from scipy import ndimage
    smooth = ndimage.uniform_filter(np.where(np.isfinite(smooth), smooth, 0.0), 5)
    smooth[~(far & fld.mask)] = -np.inf
    cy, cx = np.unravel_index(np.argmax(smooth), smooth.shape)
    by, bx = np.argwhere(far & fld.mask & (ndimage.uniform_filter(fld.deep, 15) < 0.3))[0]
    tab = Table({"X": [cx + 1.0, bx + 1.0], "Y": [cy + 1.0, by + 1.0]})
    real, found = true_detections(tab, fld)
    assert list(real) == [True, False] and not found.any()
    # without extended sources only the point-source match counts
    real_plain, _ = true_detections(tab, plain)
    assert not real_plain.any()


def test_a_source_split_in_two_detections_counts_once():
    from xsa_enhance.detect.validate import duplicate_detections, match_sources

    # two detections 1.5 px from one true source, a third on a second source, a fourth on
    # nothing: only one of the pair is a true detection
    tab = Table({"X": [11.0, 12.5, 41.0, 81.0], "Y": [11.0, 11.0, 41.0, 81.0]})
    true_x, true_y = np.array([10.2, 40.0]), np.array([10.0, 40.0])  # 0-based
    real, found = match_sources(tab, true_x, true_y)
    assert list(real) == [True, False, True, False] and list(found) == [True, True]
    # two true sources 2 px apart, each detected: both detections are true
    tab2 = Table({"X": [11.0, 13.0], "Y": [11.0, 11.0]})
    real2, found2 = match_sources(tab2, np.array([10.0, 12.0]), np.array([10.0, 10.0]))
    assert list(real2) == [True, True] and found2.all()
    # the duplicate of a more significant detection (earlier in table order)
    assert list(duplicate_detections(np.array([10.0, 11.5, 30.0]),
                                     np.array([10.0, 10.0, 10.0]))) == [False, True, False]
