"""CLI: xsa-enhance enhance / model list / model export-onnx."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.instrument.grid import GRID_1X
from xsa_enhance.models.networks import build_network
from xsa_enhance.models.registry import register_weights, save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    out = {}
    for kind in ("sr", "dn"):
        net = build_network(kind, filters=4, blocks=1, growth=4)
        out[kind] = (d / f"{kind}.pt",
                     save_weights(net, d / f"{kind}.pt", name=kind, kind=kind, config={},
                                  card={"summary": f"tiny {kind}"}))
    return out


def _image(path, *, exposure=20_000.0, with_mask=True):
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.4, GRID_1X.shape).astype(np.int32)
    counts[200, 150] += 600
    mask = np.ones(GRID_1X.shape, dtype=np.uint8)
    mask[:, :30] = 0
    hdr = fits.Header()
    if exposure is not None:
        hdr["EXPOSURE"] = exposure
    hdr["OBS_ID"] = "0123700101"
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [228.4, 219.9]
    w.wcs.cdelt = [-4 / 3600, 4 / 3600]
    hdr.update(w.to_header())
    hdus = [fits.PrimaryHDU(counts, header=hdr)]
    if with_mask:
        hdus.append(fits.ImageHDU(mask, name="MASK"))
    fits.HDUList(hdus).writeto(path)
    return counts, mask, w


def test_enhance_sr_writes_fits_png_and_wcs(tmp_path, weights):
    path, sha = weights["sr"]
    counts, mask, w_in = _image(tmp_path / "in.fits")
    res = CliRunner().invoke(main, [
        "enhance", str(tmp_path / "in.fits"), "--model", str(path), "--clamp", "quantile:0.9999",
        "--allow-clamp-mismatch",
        "--stretch", "sqrt", "--out", str(tmp_path / "out.fits"), "--png", str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.output
    assert "MISMATCH: trained for constant" in res.output
    with fits.open(tmp_path / "out.fits") as hdul:
        h = hdul[0].header
        data = hdul[0].data
        out_mask = hdul["MASK"].data
        assert "RESTORED" in hdul
    assert data.shape == (822, 806)
    assert h["XSASHA"] == sha and h["XSAMODEL"] == "sr.pt" and h["XSAKIND"] == "sr"
    assert (h["XSACLAMP"], h["XSACLQ"], h["XSASTRCH"]) == ("quantile", 0.9999, "sqrt")
    assert (h["XSATRCL"], h["XSAMISM"]) == ("constant", True)
    assert h["EXPOSURE"] == 100_000.0 and h["INEXPOSE"] == 20_000.0
    assert h["XSAVERS"] and h["OBS_ID"] == "0123700101"
    assert np.all(data[out_mask == 0] == 0) and out_mask[:, :60].sum() == 0
    # sky WCS scaled to the 2x grid: the centre of input pixel (i, j) (1-based) is the corner
    # shared by output pixels 2i-1 and 2i, i.e. output pixel coordinate 2i - 0.5
    w_out = WCS(h)
    for i, j in [(1, 1), (100, 250), (403, 411)]:
        ra_in, dec_in = w_in.all_pix2world([[i, j]], 1)[0]
        ra_out, dec_out = w_out.all_pix2world([[2 * i - 0.5, 2 * j - 0.5]], 1)[0]
        assert ra_out == pytest.approx(ra_in, abs=1e-9) and dec_out == pytest.approx(dec_in,
                                                                                  abs=1e-9)
    scales = [float(getattr(v, "value", v)) for v in w_out.proj_plane_pixel_scales()]
    assert scales == pytest.approx([2 / 3600, 2 / 3600])
    png = plt_read(tmp_path / "o.png")
    assert png.shape[1] > png.shape[0] > 100  # two panels side by side


def plt_read(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def test_enhance_dn_by_registered_alias_without_mask(tmp_path, weights, monkeypatch):
    reg = tmp_path / "reg"
    path, sha = weights["dn"]
    register_weights(path, name="xmm-denoise", kind="dn", registry_dir=reg)
    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    _image(tmp_path / "in.fits", with_mask=False)
    runner = CliRunner()
    res = runner.invoke(main, ["enhance", str(tmp_path / "in.fits"), "--model", "xmm-denoise",
                               "--out", str(tmp_path / "out.fits")])
    assert res.exit_code == 0, res.output
    h = fits.getheader(tmp_path / "out.fits")
    assert (h["XSAMODEL"], h["XSASHA"], h["NAXIS1"], h["EXPOSURE"]) == (
        "xmm-denoise-v1", sha, 403, 50_000.0)
    listing = runner.invoke(main, ["model", "list"])
    assert listing.exit_code == 0 and "xmm-denoise-v1" in listing.output
    assert sha[:12] in listing.output
    # refuses to overwrite
    again = runner.invoke(main, ["enhance", str(tmp_path / "in.fits"), "--model", "xmm-denoise",
                                 "--out", str(tmp_path / "out.fits")])
    assert again.exit_code == 2 and "exists" in again.output


@pytest.mark.parametrize("case,needle", [
    ("no-exposure", "EXPOSURE"),
    ("unknown-model", "known models"),
    ("bad-clamp", "invalid clamp"),
    ("not-fits", "not a readable FITS"),
    ("nan-pixel", "non-finite"),
])
def test_user_errors_are_one_line(tmp_path, weights, monkeypatch, case, needle):
    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(tmp_path / "empty"))
    img = tmp_path / "in.fits"
    model = str(weights["dn"][0])
    clamp = "constant"
    if case == "no-exposure":
        _image(img, exposure=None)
    else:
        _image(img)
    if case == "unknown-model":
        model = "xmm-superres"
    if case == "bad-clamp":
        clamp = "quantile:7"
    if case == "not-fits":
        img.write_text("hello")
    if case == "nan-pixel":
        with fits.open(img, mode="update") as hdul:
            data = hdul[0].data.astype(np.float32)
            data[5, 7] = np.nan
            hdul[0].data = data
    res = CliRunner().invoke(main, ["enhance", str(img), "--model", model, "--clamp", clamp,
                                    "--out", str(tmp_path / "o.fits")])
    assert res.exit_code == 2
    assert needle in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith("error:")]) == 1


@pytest.mark.parametrize("kind,method", [("sr", "poisson-bootstrap"), ("dn", "poisson-model")])
def test_enhance_uncertainty_extension_and_significance_panel(tmp_path, weights, kind, method):
    from xsa_enhance.models.registry import load_model
    from xsa_enhance.models.uncertainty import estimate_uncertainty

    path, sha = weights[kind]
    counts, mask, _ = _image(tmp_path / "in.fits")
    runner = CliRunner()
    base = ["enhance", str(tmp_path / "in.fits"), "--model", str(path)]
    res = runner.invoke(main, base + ["--out", str(tmp_path / "plain.fits"),
                                      "--png", str(tmp_path / "plain.png")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, base + ["--uncertainty", "--uncertainty-samples", "3",
                                      "--out", str(tmp_path / "u.fits"),
                                      "--png", str(tmp_path / "u.png")])
    assert res.exit_code == 0, res.output
    assert f"uncertainty: {method} x3" in res.output
    with fits.open(tmp_path / "u.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "MASK", "RESTORED", "UNCERTAINTY"]
        h0, hu = hdul[0].header, hdul["UNCERTAINTY"].header
        data, sigma = hdul[0].data, hdul["UNCERTAINTY"].data
        out_mask = hdul["MASK"].data.astype(bool)
    with fits.open(tmp_path / "plain.fits") as hdul:
        assert "UNCERTAINTY" not in hdul and hdul[0].header["XSAUNC"] is False
        plain = hdul[0].data
    # same shape, units, exposure and WCS as the primary image
    assert sigma.shape == data.shape == ((822, 806) if kind == "sr" else (411, 403))
    assert hu["BITPIX"] == -32 and h0["XSAUNC"] is True
    assert hu["BUNIT"] == h0["BUNIT"] == "count" and hu["EXPOSURE"] == h0["EXPOSURE"]
    w0, wu = WCS(h0), WCS(hu)
    np.testing.assert_allclose(wu.wcs.crpix, w0.wcs.crpix)
    np.testing.assert_allclose(wu.wcs.crval, w0.wcs.crval)
    np.testing.assert_allclose(wu.pixel_scale_matrix, w0.pixel_scale_matrix)
    assert (hu["UNCMETH"], hu["UNCNSAMP"], hu["UNCSEED"]) == (method, 3, 0)
    assert hu["UNCCAL"].startswith("none")  # no shipped table for these tiny weights
    # sigma: >= 0, zero outside the mask, the library's estimate bit for bit
    assert np.all(sigma >= 0) and np.all(sigma[~out_mask] == 0) and sigma[out_mask].max() > 0
    model = load_model(str(path))
    ref = estimate_uncertainty(counts.astype(float), 20_000.0, mask.astype(float), model,
                               n_samples=3, seed=0)
    np.testing.assert_array_equal(sigma, ref.sigma)
    np.testing.assert_allclose(data, plain, rtol=1e-5, atol=1e-6)
    # the PNG gains a third panel (same height, 3/2 of the width)
    two, three = plt_read(tmp_path / "plain.png"), plt_read(tmp_path / "u.png")
    assert three.shape[0] == two.shape[0]
    assert three.shape[1] / two.shape[1] == pytest.approx(1.5, rel=0.01)


def test_enhance_uncertainty_axes_and_library_field(tmp_path, weights, monkeypatch):
    """The --png figure has 3 image panels and 2 colour bars; enhance(uncertainty=True)
    returns the EnhancedImage with .uncertainty and its provenance."""
    import matplotlib.pyplot as plt

    from xsa_enhance.cli import models as cli_models
    from xsa_enhance.models.inference import enhance
    from xsa_enhance.models.registry import load_model

    counts, mask, _ = _image(tmp_path / "in.fits")
    model = load_model(str(weights["dn"][0]))
    out = enhance(counts, 20_000.0, mask, model, uncertainty=True, uncertainty_samples=2)
    assert out.uncertainty.shape == out.counts.shape and out.uncertainty.dtype == np.float32
    assert out.attrs["uncertainty_n_samples"] == 2
    assert out.attrs["uncertainty_method"] == "poisson-model"
    z = out.significance()
    assert z.shape == out.counts.shape and np.all(z[~out.mask] == 0)
    assert enhance(counts, 20_000.0, mask, model).uncertainty is None
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        enhance(counts, 20_000.0, mask, model, uncertainty=True, uncertainty_samples=1)

    figs = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    cli_models.write_comparison_png(tmp_path / "x.png", counts, 20_000.0, out)
    monkeypatch.setattr(plt, "close", real_close)
    (fig,) = figs
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 3 and len(fig.axes) == 5  # 3 image panels + 2 colour bars
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("output / uncertainty") for t in titles)
    real_close(fig)

    res = CliRunner().invoke(main, ["enhance", str(tmp_path / "in.fits"), "--model",
                                    str(weights["dn"][0]), "--uncertainty",
                                    "--uncertainty-samples", "1",
                                    "--out", str(tmp_path / "o.fits")])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_model_export_onnx(tmp_path, weights):
    res = CliRunner().invoke(main, ["model", "export-onnx", str(weights["sr"][0]),
                                    "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert "max |onnx - torch|" in res.output


# -- clamp modes: aliases pick matched weights, explicit mismatches are refused --------------


@pytest.fixture
def clamp_registry(tmp_path, weights, monkeypatch):
    """xmm-superres v1 (constant), v2 (quantile:0.9999); xmm-denoise v1 (constant)."""
    from xsa_enhance.models.registry import load_model

    reg = tmp_path / "reg"
    sr = weights["sr"][0]
    register_weights(sr, name="xmm-superres", kind="sr", registry_dir=reg)
    register_weights(sr, name="xmm-superres", kind="sr", registry_dir=reg,
                     config={**load_model(sr).config, "clamp": "quantile:0.9999"})
    register_weights(weights["dn"][0], name="xmm-denoise", kind="dn", registry_dir=reg)
    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    return reg


def test_enhance_alias_resolves_weights_by_clamp(tmp_path, clamp_registry):
    _image(tmp_path / "in.fits")
    runner = CliRunner()
    for clamp, version, trained in (("quantile:0.999", "v2", "quantile:0.9999"),
                                    (None, "v1", "constant"), ("constant", "v1", "constant")):
        out = tmp_path / f"out-{clamp}.fits"
        args = ["enhance", str(tmp_path / "in.fits"), "--model", "xmm-superres",
                "--out", str(out)] + (["--clamp", clamp] if clamp else [])
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
        h = fits.getheader(out)
        assert (h["XSAMODEL"], h["XSATRCL"], h["XSAMISM"]) == (
            f"xmm-superres-{version}", trained, False), clamp
    # no weights for the mode: one line naming the alias, the mode and the trained modes
    res = runner.invoke(main, ["enhance", str(tmp_path / "in.fits"), "--model", "xmm-denoise",
                               "--clamp", "none", "--out", str(tmp_path / "x.fits")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == ["error: no xmm-denoise weights trained for clamp mode 'none'; "
                     "trained modes: constant"]


def test_enhance_explicit_version_with_another_mode_is_refused(tmp_path, clamp_registry):
    _image(tmp_path / "in.fits")
    runner = CliRunner()
    out = tmp_path / "out.fits"
    base = ["enhance", str(tmp_path / "in.fits"), "--model", "xmm-superres-v1",
            "--clamp", "quantile:0.9999", "--out", str(out)]
    res = runner.invoke(main, base)
    assert res.exit_code != 0
    assert "Traceback" not in res.output and not out.exists()
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == ["error: xmm-superres-v1 was trained for clamp mode 'constant', not "
                     "'quantile'; use the alias xmm-superres to get matched weights, or "
                     "--allow-clamp-mismatch"]
    res = runner.invoke(main, base + ["--allow-clamp-mismatch"])
    assert res.exit_code == 0, res.output
    h = fits.getheader(out)
    assert (h["XSAMODEL"], h["XSACLAMP"], h["XSATRCL"], h["XSAMISM"]) == (
        "xmm-superres-v1", "quantile", "constant", True)
    # without --clamp an explicit version runs with its own clamp
    res = runner.invoke(main, ["enhance", str(tmp_path / "in.fits"), "--model",
                               "xmm-superres-v2", "--out", str(tmp_path / "o2.fits")])
    assert res.exit_code == 0, res.output
    h = fits.getheader(tmp_path / "o2.fits")
    assert (h["XSACLAMP"], h["XSACLQ"], h["XSATRCL"], h["XSAMISM"]) == (
        "quantile", 0.9999, "quantile:0.9999", False)


def test_model_list_shows_trained_clamps_and_alias_resolution(clamp_registry):
    import json

    runner = CliRunner()
    res = runner.invoke(main, ["model", "list"])
    assert res.exit_code == 0, res.output
    rows = {ln.split()[0]: ln for ln in res.output.splitlines() if ln.startswith("xmm-")}
    assert "clamp constant" in rows["xmm-superres-v1"]
    assert "(= xmm-superres --clamp constant)" in rows["xmm-superres-v1"]
    assert "clamp quantile:0.9999" in rows["xmm-superres-v2"]
    assert "(= xmm-superres --clamp quantile)" in rows["xmm-superres-v2"]
    assert "xmm-superres: constant -> xmm-superres-v1, quantile -> xmm-superres-v2" in res.output
    assert "xmm-denoise: constant -> xmm-denoise-v1" in res.output
    doc = json.loads(runner.invoke(main, ["model", "list", "--json"]).output)
    by_id = {d["id"]: d for d in doc}
    assert by_id["xmm-superres-v2"]["clamp_family"] == "quantile"
    assert by_id["xmm-superres-v2"]["alias_for"] == ["quantile"]
    shown = json.loads(runner.invoke(main, ["model", "show", "xmm-superres", "--clamp",
                                            "quantile:0.99"]).output)
    assert (shown["version"], shown["config"]["clamp"]) == (2, "quantile:0.9999")
