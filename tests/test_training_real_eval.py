"""Real-data evaluation: loader, peak confirmation, flux ratio, metrics, empty field, CLI."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner
from scipy import stats

from xsa_enhance.errors import InputFileError
from xsa_enhance.training.real_eval import (
    MethodSpec,
    confirm_peaks,
    derive_mask,
    empty_field_check,
    find_peaks,
    flux_ratio,
    image_metrics,
    load_real_observations,
    peak_purity,
    poisson_significance,
    rebin2,
)

REAL_DIR = Path(__file__).resolve().parents[2] / "shared/data/xmm-real"


def _write(path: Path, counts: np.ndarray, exposure: float | None) -> None:
    hdu = fits.PrimaryHDU(np.asarray(counts, dtype=np.int32))
    if exposure is not None:
        hdu.header["EXPOSURE"] = exposure
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(path)


def _fake_dir(tmp_path: Path, *, full_exposure: float = 60000.0) -> Path:
    rng = np.random.default_rng(1)
    c20 = rng.poisson(0.5, (30, 40))
    cfull = c20 + rng.poisson(1.0, (30, 40))
    _write(tmp_path / "20ks" / "0123456789_image_split_500_2000_20ks_1_1.fits", c20, 20000.0)
    _write(tmp_path / "full" / "0123456789_image_500_2000_60ks.fits", cfull, full_exposure)
    return tmp_path


# ---------------------------------------------------------------- loader


def test_loader_reads_pairs_and_builds_the_deep_image(tmp_path):
    d = _fake_dir(tmp_path)
    (obs,) = load_real_observations(d)
    assert obs.obsid == "0123456789"
    assert obs.exposure_20ks == 20000.0 and obs.exposure_deep == 40000.0
    c20 = fits.getdata(d / "20ks" / "0123456789_image_split_500_2000_20ks_1_1.fits")
    cfull = fits.getdata(d / "full" / "0123456789_image_500_2000_60ks.fits")
    np.testing.assert_array_equal(obs.counts_deep, cfull.astype(np.int64) - c20)


def test_loader_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(InputFileError, match="no such folder"):
        load_real_observations(tmp_path / "nope")
    d = _fake_dir(tmp_path)
    with pytest.raises(InputFileError, match="9999999999.*file not found"):
        load_real_observations(d, obsids=["9999999999"])
    # a missing full-exposure partner
    (d / "full" / "0123456789_image_500_2000_60ks.fits").unlink()
    with pytest.raises(InputFileError, match=r"full/0123456789\*.*file not found"):
        load_real_observations(d)


def test_loader_rejects_corrupt_file_missing_exposure_and_non_nested_split(tmp_path):
    d = _fake_dir(tmp_path / "a")
    bad = d / "full" / "0123456789_image_500_2000_60ks.fits"
    bad.write_bytes(gzip.compress(b"not a fits file"))
    with pytest.raises(InputFileError, match="60ks.fits: not a readable FITS image"):
        load_real_observations(d)

    d = _fake_dir(tmp_path / "b")
    f = d / "20ks" / "0123456789_image_split_500_2000_20ks_1_1.fits"
    data = fits.getdata(f)
    f.unlink()
    _write(f, data, None)
    with pytest.raises(InputFileError, match="20ks_1_1.fits: missing or invalid EXPOSURE"):
        load_real_observations(d)

    d = _fake_dir(tmp_path / "c")
    f = d / "full" / "0123456789_image_500_2000_60ks.fits"
    data = fits.getdata(f)
    f.unlink()
    _write(f, data * 0, 60000.0)
    with pytest.raises(InputFileError, match="20ks_1_1.fits: not contained in"):
        load_real_observations(d)


# ---------------------------------------------------------------- mask


def test_derive_mask_removes_dead_columns_only():
    rng = np.random.default_rng(3)
    counts = rng.poisson(3.0, (120, 80))
    counts[:, 40] = 0  # a dead column
    counts[:60, 20] = 0  # half a dead column
    base = np.ones(counts.shape, bool)
    base[:, :5] = False
    m = derive_mask(counts, base=base)
    assert not m[:, 40].any()
    assert not m[:55, 20].any() and m[70:, 20].all()
    assert not m[:, :5].any()
    # every other pixel is kept (a chance run of 15 zeros at mean 3 is impossible here)
    keep = base.copy()
    keep[:, 40] = False
    keep[:60, 20] = False
    assert np.count_nonzero(m & ~keep) == 0
    assert np.count_nonzero(keep & ~m) <= 16  # the closing may reach one run past the end


# ---------------------------------------------------------------- figures


def test_flux_ratio_of_an_image_against_itself_is_one():
    rng = np.random.default_rng(0)
    rate = rng.gamma(2.0, 1e-5, (50, 60))
    mask = rng.random((50, 60)) > 0.2
    assert flux_ratio(rate, rate, mask) == pytest.approx(1.0, abs=1e-12)
    # against an independent computation: sums inside the mask, background subtracted
    ref = rate * 1.3 + 2e-6
    n = mask.sum()
    exp = (rate[mask].sum() - 1e-6 * n) / (ref[mask].sum() - 3e-6 * n)
    got = flux_ratio(rate, ref, mask, background=1e-6, reference_background=3e-6)
    assert got == pytest.approx(exp, rel=1e-12)
    assert math.isnan(flux_ratio(rate, np.zeros_like(rate), mask))


def test_metrics_of_deep_against_deep_are_perfect_and_noise_is_not():
    rng = np.random.default_rng(2)
    deep = rng.poisson(20.0, (200, 200)) / 40000.0  # ~5e-4 counts/s/px, inside the scale
    m = image_metrics(deep, deep)
    assert m["psnr"] > 70 and m["psnr_sqrt"] > 70  # piq's PSNR of identical images
    assert m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["ms_ssim_sqrt"] == pytest.approx(1.0, abs=1e-6)
    assert m["l1"] == 0.0
    noisy = rng.poisson(4.0, (200, 200)) / 8000.0
    mn = image_metrics(noisy, deep)
    # PSNR against an independent numpy computation on the same scale
    a = np.clip(noisy / 0.0022336, 0, 1)
    b = np.clip(deep / 0.0022336, 0, 1)
    psnr = 10 * np.log10(1.0 / np.mean((a - b) ** 2))
    assert mn["psnr"] == pytest.approx(psnr, abs=0.01)
    assert mn["ms_ssim"] < 0.99


def test_rebin2_sums_blocks():
    img = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(rebin2(img), [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                                                [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])


def test_poisson_significance_matches_the_tail_probability():
    sig = poisson_significance(np.array([0, 5, 12, 40]), np.array([3.0, 3.0, 3.0, 3.0]))
    assert sig[0] < 0
    for n, s in zip((5, 12, 40), sig[1:]):
        # the tail P(N >= n) summed term by term (independent of scipy's Poisson code)
        p = sum(math.exp(-3.0) * 3.0**k / math.factorial(k) for k in range(n, n + 60))
        assert s == pytest.approx(stats.norm.isf(p), rel=1e-6)
    assert 0.5 < sig[1] < 1.2 and 3.0 < sig[2] < 4.5 and sig[3] > 10  # 5 on 3: ~0.9 sigma
    assert poisson_significance(np.array([3]), np.array([0.0]))[0] == np.inf


def _psf_blob(shape, y, x, counts, sigma=1.2):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return counts * g / g.sum()


def test_purity_confirms_real_sources_and_rejects_noise_peaks():
    shape = (160, 160)
    rng = np.random.default_rng(7)
    bkg = 1.0  # counts per deep pixel
    real_pos = [(30, 30), (30, 110), (80, 70), (125, 40), (130, 125)]
    fake_pos = [(60, 20), (100, 100), (140, 80), (20, 70), (75, 135)]
    lam = np.full(shape, bkg)
    for y, x in real_pos:
        lam += _psf_blob(shape, y, x, 150.0)
    deep = rng.poisson(lam)
    mask = np.ones(shape, bool)
    # a "method output" with equally prominent peaks at real and at empty positions
    out = np.full(shape, 1e-5)
    for y, x in real_pos + fake_pos:
        out += _psf_blob(shape, y, x, 1e-2)
    chk = peak_purity(out, deep, mask, n_peaks=10)
    found = {(round(a), round(b)) for a, b in zip(chk.y, chk.x)}
    assert found == set(real_pos + fake_pos)
    real = {(round(a), round(b)) for a, b, r in zip(chk.y, chk.x, chk.real) if r}
    assert real == set(real_pos)
    assert chk.purity == pytest.approx(0.5)
    # the same check with the output on the 2x grid (SR): positions map back to 1x
    out2 = np.repeat(np.repeat(out, 2, 0), 2, 1) / 4
    chk2 = peak_purity(out2, deep, mask, factor=2, n_peaks=10)
    assert np.all(np.abs(chk2.y - np.round(chk2.y)) == 0.25)  # 2x pixel centres
    real2 = {(round(a), round(b)) for a, b, r in zip(chk2.y, chk2.x, chk2.real) if r}
    assert real2 == set(real_pos)
    assert chk2.purity == pytest.approx(0.5)


def test_confirm_peaks_counts_against_an_independent_aperture_sum():
    rng = np.random.default_rng(11)
    deep = rng.poisson(2.0, (60, 60))
    mask = np.ones(deep.shape, bool)
    counts, expected, sig, real = confirm_peaks(deep, mask, np.array([30.0]), np.array([25.0]))
    yy, xx = np.mgrid[:60, :60]
    d = np.hypot(yy - 30, xx - 25)
    ap = d <= 2
    an = (d >= 5) & (d <= 10)
    assert counts[0] == deep[ap].sum()
    assert expected[0] == pytest.approx(deep[an].mean() * ap.sum())
    assert real[0] == (sig[0] >= 3)
    assert not real[0]  # pure noise


def test_find_peaks_respects_min_separation_and_mask():
    img = np.zeros((80, 80))
    img[40, 40] = 10.0
    img[40, 42] = 9.0  # 2 px away: merged into the first
    img[10, 60] = 5.0  # outside the mask
    mask = np.ones(img.shape, bool)
    mask[:20, 50:] = False
    y, x, prom = find_peaks(img, mask, n_peaks=5)
    assert len(y) == 1 and (y[0], x[0]) in {(40.0, 40.0), (40.0, 41.0)}
    assert prom[0] > 0


# ---------------------------------------------------------------- empty field


def test_empty_field_check_passes_an_ideal_denoiser_and_flags_blobs():
    from xsa_enhance.instrument.background import background_rate_map
    from xsa_enhance.instrument.grid import GRID_1X
    from xsa_enhance.instrument.mask import detector_mask, mask_coverage

    m = detector_mask(GRID_1X)
    truth = background_rate_map(GRID_1X, apply_mask=False) * mask_coverage(GRID_1X) * m

    def ideal(c, e, mask):
        return truth.copy()

    def blobby(c, e, mask):
        out = truth.copy()
        ys, xs = np.nonzero(m)
        pick = np.random.default_rng(0).choice(len(ys), 300, replace=False)[:30]
        for i in pick:  # 30 isolated single-pixel spikes (well apart with high probability)
            out[ys[i], xs[i]] *= 10
        return out

    def dim(c, e, mask):
        return truth * 0.8

    def sr_ideal(c, e, mask):
        return np.zeros((2 * m.shape[0], 2 * m.shape[1]))

    res = empty_field_check(methods=[MethodSpec("ideal", "constant", 1, ideal),
                                     MethodSpec("blobby", "constant", 1, blobby),
                                     MethodSpec("dim", "constant", 1, dim),
                                     MethodSpec("sr", "constant", 2, sr_ideal)],
                            references=("input",))
    rows = res.rows
    assert rows["ideal [constant]"]["blobs"] == 0
    assert rows["ideal [constant]"]["flux_ratio"] == pytest.approx(1.0, rel=1e-9)
    assert rows["ideal [constant]"]["passed"] is True
    assert 25 <= rows["blobby [constant]"]["blobs"] <= 30
    assert rows["blobby [constant]"]["passed"] is False
    assert rows["dim [constant]"]["flux_ratio"] == pytest.approx(0.8, rel=1e-9)
    assert rows["dim [constant]"]["passed_flux"] is False
    assert rows["sr [constant]"]["passed"] is True and rows["sr [constant]"]["passed_flux"] is None
    # the raw 20 ks input: every pixel with one count is > 3x the background
    assert rows["input"]["passed"] is None and rows["input"]["blobs"] > 1000
    assert rows["input"]["flux_ratio"] == pytest.approx(1.0, abs=0.05)
    assert res.passed is False


# ---------------------------------------------------------------- CLI, real data


def test_cli_usage_errors_are_one_line(tmp_path):
    from xsa_enhance.cli.main import main

    r = CliRunner().invoke(main, ["evaluate", "--model", "xmm-denoise-v3", "--out",
                                  str(tmp_path / "o")])
    assert r.exit_code == 2 and "--test-set" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["evaluate", "--model", "xmm-denoise-v3", "--real",
                                  str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "missing" in r.output and "no such folder" in r.output
    assert len(r.output.strip().splitlines()) == 1
    d = _fake_dir(tmp_path / "d")
    r = CliRunner().invoke(main, ["evaluate", "--model", "xmm-denoise-v3", "--real", str(d),
                                  "--clamp", "sideways", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason=f"real XMM images not found at {REAL_DIR}")
def test_cli_real_end_to_end_one_observation(tmp_path):
    from xsa_enhance.cli.main import main

    out = tmp_path / "eval"
    obsid = "0206850101"
    r = CliRunner().invoke(main, ["evaluate", "--real", str(REAL_DIR), "--model",
                                  "xmm-denoise-v3", "--clamp", "constant", "--obsid", obsid,
                                  "--no-empty-field", "--out", str(out)])
    assert r.exit_code == 0, r.output
    figs = json.loads((out / "figures.json").read_text())
    rows = figs["per_observation"][obsid]
    assert set(rows) == {"input", "gaussian", "wavelet", "richardson_lucy",
                         "xmm-denoise-v3 [constant]"}
    # the input's figures against an independent computation from the files
    f20 = next((REAL_DIR / "20ks").glob(f"{obsid}*"))
    ffull = next((REAL_DIR / "full").glob(f"{obsid}*"))
    c20, h20 = fits.getdata(f20, header=True)
    cfull, hfull = fits.getdata(ffull, header=True)
    mask = derive_mask(cfull)
    deep = np.where(mask, cfull.astype(float) - c20, 0) / (hfull["EXPOSURE"] - h20["EXPOSURE"])
    rin = np.where(mask, c20, 0) / h20["EXPOSURE"]
    assert rows["input"]["flux_ratio"] == pytest.approx(rin[mask].sum() / deep[mask].sum(),
                                                        rel=1e-9)
    a, b = np.clip(rin / 0.0022336, 0, 1), np.clip(deep / 0.0022336, 0, 1)
    assert rows["input"]["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)),
                                                  abs=0.01)
    # smoothing a 20 ks image brings it closer to the independent deep image
    assert rows["gaussian"]["psnr"] > rows["input"]["psnr"] + 1.0
    model = rows["xmm-denoise-v3 [constant]"]
    assert 0.8 < model["flux_ratio"] < 1.2
    assert model["n_peaks"] == 25 and 0.0 <= model["peak_purity"] <= 1.0
    assert figs["summary"]["constant"]["xmm-denoise-v3"]["psnr"] == pytest.approx(model["psnr"])
    assert figs["empty_field"] is None
    md = (out / "report.md").read_text()
    assert "### clamp `constant`" in md and "| xmm-denoise-v3 |" in md
    assert (out / f"panel_{obsid}.png").stat().st_size > 10_000
    assert json.loads(r.output.strip().splitlines()[-1])["summary"]["constant"]["input"]
