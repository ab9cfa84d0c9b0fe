"""Datasets, the training loop (loss decreases, resume, fine-tuning), export and evaluation.

All on small simulator training sets (a few pairs) and tiny networks, CPU, seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from xsa_enhance.training.data import PairSource, open_pairs
from xsa_enhance.training.evaluate import evaluate
from xsa_enhance.training.train import export_weights, load_config, train

TINY = dict(filters=8, blocks=1, growth=8, crop=32, val_crop=32, batch_size=2, n_val=4,
            log_every=1, lr=1e-3, loss="l1", max_minutes=None, num_threads=None, device="cpu")


@pytest.fixture(scope="module")
def dn_set(tmp_path_factory):
    from xsa_enhance.simulate.training import write_training_set

    path = tmp_path_factory.mktemp("sets") / "dn.zarr"
    write_training_set(str(path), kind="dn", n=10, seed=11)
    return str(path)


@pytest.fixture(scope="module")
def sr_set(tmp_path_factory):
    from xsa_enhance.simulate.training import write_training_set

    path = tmp_path_factory.mktemp("sets") / "sr.zarr"
    write_training_set(str(path), kind="sr", n=10, seed=12)
    return str(path)


def _cfg(kind, store, **kw):
    return load_config(preset="small", overrides={**TINY, "kind": kind, "train_set": store, **kw})


def test_samples_are_sums_of_components_from_one_split(sr_set):
    ts = open_pairs(sr_set)
    src = PairSource(ts, "val", crop=32)
    rng = np.random.default_rng(0)
    combo, (y0, x0) = src.draw(rng)
    inp, tgt, _mask = src.counts(combo, (y0, x0))
    # independent: read every chosen component from the store and add
    exp_in = np.zeros((32, 32))
    exp_t = np.zeros((64, 64))
    for name, idx in combo.items():
        if idx is None:
            continue
        comp = ts.component(name, "val")
        exp_in += np.asarray(comp.input[idx])[y0:y0 + 32, x0:x0 + 32]
        exp_t += np.asarray(comp.target[idx])[2 * y0:2 * y0 + 64, 2 * x0:2 * x0 + 64]
    np.testing.assert_allclose(inp, exp_in)
    np.testing.assert_allclose(tgt, exp_t)
    s = src.make(combo, (y0, x0))
    assert tuple(s.input.shape) == (1, 32, 32) and tuple(s.target.shape) == (1, 64, 64)
    # normalisation: sqrt of rate / clamp, clipped
    mask = src.mask[y0:y0 + 32, x0:x0 + 32]
    expect = np.sqrt(np.clip(exp_in * mask / ts.input_exposure_s / 0.0022336, 0, 1))
    np.testing.assert_allclose(s.input[0].numpy(), expect, rtol=1e-5, atol=1e-6)
    # batches are a function of (seed, step): resumable streams
    a = next(src.iterate(5, start_step=3, batch_size=2))
    b = next(src.iterate(5, start_step=3, batch_size=2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_tiny_model_loss_decreases(dn_set, tmp_path):
    cfg = _cfg("dn", dn_set, steps=25, val_every=25)
    res = train(cfg, tmp_path / "run")
    vals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [v for v in vals if v["type"] == "val"]
    assert val[0]["step"] == 0 and val[-1]["step"] == 25
    assert val[-1]["val_loss"] < 0.8 * val[0]["val_loss"]
    assert res.best_step == 25 and (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(sr_set, tmp_path):
    torch.set_num_threads(1)
    full = train(_cfg("sr", sr_set, steps=8, val_every=4), tmp_path / "full")
    part = train(_cfg("sr", sr_set, steps=4, val_every=4), tmp_path / "part")
    assert part.steps_done == 4
    resumed = train(_cfg("sr", sr_set, steps=8, val_every=4), tmp_path / "part", resume=True)
    assert resumed.steps_done == 8
    recs = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in recs if r["type"] == "train"]
    assert train_steps == list(range(1, 9))  # continued at 5, nothing repeated
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_fine_tuning_starts_from_given_weights(dn_set, tmp_path):
    src = train(_cfg("dn", dn_set, steps=6, val_every=6), tmp_path / "a")
    wfile = tmp_path / "dn.pt"
    export_weights(tmp_path / "a", wfile, name="tiny-dn", card={"note": "test"})
    train(_cfg("dn", dn_set, steps=1, val_every=1), tmp_path / "b", init_weights=wfile)
    first = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0
    assert first["val_loss"] == pytest.approx(src.best_val_loss, rel=1e-6)


def test_fine_tuning_a_deeper_network_from_shallower_weights_starts_where_they_were(
        dn_set, tmp_path):
    from xsa_enhance.errors import InputFileError

    src = train(_cfg("dn", dn_set, steps=4, val_every=4), tmp_path / "a")
    deeper = _cfg("dn", dn_set, steps=1, val_every=1, blocks=2)
    train(deeper, tmp_path / "b", init_weights=tmp_path / "a" / "best.pt")
    first = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["val_loss"] == pytest.approx(src.best_val_loss, rel=1e-5)
    narrower = _cfg("dn", dn_set, steps=1, val_every=1, filters=4)
    with pytest.raises(InputFileError, match="cannot fine-tune"):
        train(narrower, tmp_path / "c", init_weights=tmp_path / "a" / "best.pt")


def test_exported_weights_pass_registry_checks(dn_set, tmp_path):
    from xsa_enhance.models.registry import load_model, register_weights

    train(_cfg("dn", dn_set, steps=2, val_every=2), tmp_path / "r")
    wfile = tmp_path / "w.pt"
    sha = export_weights(tmp_path / "r", wfile, name="tiny-dn", card={"note": "test"})
    entry = register_weights(wfile, name="tiny-dn", kind="dn", registry_dir=tmp_path / "reg")
    assert entry.sha256 == sha and entry.id == "tiny-dn-v1"
    m = load_model("tiny-dn-v1", registry_dir=tmp_path / "reg")
    assert m.config["filters"] == 8 and m.card["training"]["steps"] == 2
    assert m.input_exposure_s == 20_000 and m.target_exposure_s == 50_000


def test_evaluation_of_perfect_and_identity_predictors(dn_set, tmp_path):
    ts = open_pairs(dn_set)
    src = PairSource(ts, "test", crop=None)

    def perfect(counts, exposure_s, mask):
        # find the target of this input: same draw as the evaluator (seed 0, image i)
        for i in range(2):
            combo, pos = src.draw(np.random.default_rng([0, i]))
            inp, tgt, _m = src.counts(combo, pos)
            if np.array_equal(inp, counts):
                return tgt / ts.target_exposure_s
        raise AssertionError("unknown input")

    def identity(counts, exposure_s, mask):
        return counts * mask / exposure_s

    rep = evaluate("perfect", dn_set, tmp_path / "p", n_images=2, predictor=perfect,
                   baselines=("gaussian",))
    m = rep.methods["model"]
    assert m["l1"] == 0.0 and m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["psnr"] >= 79.0 and m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert rep.targets["psnr_gain_db"]["passed"]
    rep_id = evaluate("identity", dn_set, tmp_path / "i", n_images=2, predictor=identity,
                      baselines=())
    for k, v in rep_id.methods["input"].items():
        assert rep_id.methods["model"][k] == pytest.approx(v, rel=1e-6), k
    assert rep_id.targets["psnr_gain_db"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert not rep_id.targets["psnr_gain_db"]["passed"]
    figs = json.loads((tmp_path / "i" / "figures.json").read_text())
    assert figs["meta"]["n_images"] == 2 and "model" in figs["methods"]
    assert "| psnr" in (tmp_path / "i" / "report.md").read_text()
    assert math.isfinite(rep.regions["model"]["background"]["l1"])


def test_cli_train_reports_user_errors_in_one_line(tmp_path):
    from xsa_enhance.cli.main import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("filters: 8\nbogus_key: 1\n")
    r = CliRunner().invoke(main, ["train", "--kind", "sr", "--config", str(bad), "--out",
                                  str(tmp_path / "o"), "--train-set", "x"])
    assert r.exit_code == 2
    assert "bogus_key" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "--kind", "sr", "--preset", "small", "--out",
                                  str(tmp_path / "o"), "--train-set", str(tmp_path / "none")])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_cli_evaluate_writes_report_figures_and_panels(dn_set, tmp_path):
    from xsa_enhance.cli.main import main

    train(_cfg("dn", dn_set, steps=2, val_every=2), tmp_path / "r")
    wfile = tmp_path / "w.pt"
    export_weights(tmp_path / "r", wfile, name="tiny-dn")
    out = tmp_path / "eval"
    r = CliRunner().invoke(main, ["evaluate", "--model", str(wfile), "--test-set", dn_set,
                                  "--out", str(out), "--n-images", "1"])
    assert r.exit_code == 0, r.output
    figs = json.loads((out / "figures.json").read_text())
    assert set(figs["methods"]) == {"input", "model", "gaussian", "wavelet", "richardson_lucy"}
    assert (out / "panel_00.png").stat().st_size > 1000
    assert "psnr_gain_db" in (out / "report.md").read_text()
    r = CliRunner().invoke(main, ["evaluate", "--model", "no-such-model", "--test-set", dn_set,
                                  "--out", str(out)])
    assert r.exit_code == 2 and "unknown model" in r.output and "Traceback" not in r.output
