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
