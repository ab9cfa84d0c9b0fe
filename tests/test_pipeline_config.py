"""Pipeline files, configuration overrides, executors and the `run` command's user errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.errors import ConfigError
from xsa_enhance.pipeline import (
    LAST_SUCCESSFUL_RUN,
    InProcessExecutor,
    PipelineConfig,
    load_pipeline,
    make_executor,
)
from xsa_enhance.pipeline.selection import resolve_since
from xsa_enhance.store import ProductStore

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "archive-reprocess", "nightly-incremental"])
def test_shipped_pipelines_validate(name):
    cfg = load_pipeline(REPO / "pipelines" / f"{name}.yaml")
    assert cfg.name == name
    raw = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
    assert list(cfg.enhance.models) == raw["enhance"]["models"]
    assert cfg.executor.kind == raw["executor"]["kind"]
    # the configuration survives a round trip through its mapping form
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_nightly_selects_since_last_successful_run(tmp_path):
    cfg = load_pipeline(REPO / "pipelines" / "nightly-incremental.yaml")
    assert cfg.selection.since == LAST_SUCCESSFUL_RUN
    store = ProductStore(tmp_path / "s.zarr")
    assert resolve_since(LAST_SUCCESSFUL_RUN, store) is None
    store.record_run({"run_id": "a", "started": "2026-01-02T03:04:05.000000Z", "status": "finished"})
    store.record_run({"run_id": "b", "started": "2026-02-01T00:00:00.000000Z", "status": "interrupted"})
    store.record_run({"run_id": "c", "started": "2025-12-01T00:00:00.000000Z", "status": "finished"})
    assert resolve_since(LAST_SUCCESSFUL_RUN, store) == "2026-01-02T03:04:05.000000"
    assert resolve_since("2024-05-01", store) == "2024-05-01"


def test_invalid_pipeline_reports_every_issue_with_location(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kind: pipeline\nstore: x.zarr\n"
        "selection:\n  obsids: ['123']\n  cone: [10, 95, 1]\n"
        "enhance:\n  clamps: [sometimes]\n"
        "executor:\n  kind: cloud\n  wokers: 3\n"
    )
    with pytest.raises(ConfigError) as info:
        load_pipeline(bad)
    text = str(info.value)
    for where in ("selection.obsids[0]", "selection.cone", "enhance.clamps[0]", "executor.kind",
                  "wokers"):
        assert where in text, (where, text)
    with pytest.raises(ConfigError, match="events config: unknown option"):
        PipelineConfig.from_dict({"kind": "pipeline", "events": {"bnd": [1, 2]}})


def test_overrides_replace_only_given_fields():
    cfg = load_pipeline(REPO / "pipelines" / "demo.yaml")
    new = cfg.with_overrides(store="other.zarr", selection={"obsids": ("0123456789",), "cone": None},
                             executor={"kind": "inprocess"})
    assert new.store == "other.zarr" and new.selection.obsids == ("0123456789",)
    assert new.selection.min_duration_ks == cfg.selection.min_duration_ks
    assert new.enhance == cfg.enhance and new.executor.kind == "inprocess"
    assert isinstance(make_executor(new.executor), InProcessExecutor)


def test_in_process_executor_hands_back_task_errors():
    ex = InProcessExecutor()
    ok = ex.submit(lambda a, b=1: a + b, 2, b=3)
    bad = ex.submit(lambda: 1 / 0)
    done, pending = ex.wait_any([ok, bad])
    assert done == {ok, bad} and not pending
    assert ex.result(ok) == 5
    with pytest.raises(ZeroDivisionError):
        ex.result(bad)


def test_connect_to_missing_scheduler_file_is_a_config_error(tmp_path):
    from xsa_enhance.pipeline import DaskExecutor

    with pytest.raises(ConfigError, match="scheduler file not found"):
        DaskExecutor.connect(scheduler_file=str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="exactly one"):
        DaskExecutor.connect()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--store", "s.zarr", "--in-process", "--scheduler-address", "tcp://x:1"],
         "choose one of"),
        (["run", "--store", "s.zarr", "--in-process", "--workers", "2"], "--workers"),
        (["run"], "--store"),
        (["run", "--store", "s.zarr", "--obsid", "12"], "does not match"),
        (["run", "--pipeline", "missing.yaml"], "missing.yaml"),
    ],
)
def test_run_user_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0


def test_unreachable_archive_fails_the_run_cleanly(tmp_path):
    from xsa_enhance.errors import XsaError
    from xsa_enhance.pipeline import run_pipeline

    cfg = PipelineConfig.from_dict({
        "kind": "pipeline", "store": str(tmp_path / "s.zarr"),
        "archive": {"tap_url": "http://127.0.0.1:9/tap", "aio_url": "http://127.0.0.1:9/aio?",
                    "retries": 0, "timeout_s": 5},
        "enhance": {"models": []},
    })
    with InProcessExecutor() as ex, pytest.raises(XsaError, match="127.0.0.1:9"):
        run_pipeline(cfg, executor=ex)
    last = ProductStore(tmp_path / "s.zarr", mode="r").run_log[-1]
    assert last["status"] == "failed" and "127.0.0.1:9" in last["error"]
    pipe = tmp_path / "p.yaml"
    pipe.write_text(yaml.safe_dump(cfg.to_dict()))
    res = CliRunner().invoke(main, ["run", "--pipeline", str(pipe), "--in-process",
                                    "--model", "none-such"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.startswith("error:") and res.output.strip().count("\n") == 0


def test_demo_fallback_matches_the_shipped_demo_pipeline():
    from xsa_enhance.cli.demo import _DEMO_FALLBACK

    shipped = load_pipeline(REPO / "pipelines" / "demo.yaml")
    fallback = PipelineConfig.from_dict(_DEMO_FALLBACK)
    assert fallback.with_overrides(store=shipped.store) == shipped


def test_demo_uses_whatever_the_registry_has(tmp_path, monkeypatch):
    import torch

    from xsa_enhance.cli.demo import demo_models
    from xsa_enhance.models import build_network
    from xsa_enhance.models.registry import register_weights, save_weights

    monkeypatch.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(tmp_path / "registry"))
    (tmp_path / "registry").mkdir()
    assert demo_models() == ([], "")
    torch.manual_seed(0)
    w = tmp_path / "dn.pt"
    save_weights(build_network("dn", filters=4, blocks=1, growth=4), w, name="my-dn", kind="dn",
                 config={}, card={})
    register_weights(w, name="my-dn", kind="dn")
    register_weights(w, name="my-dn", kind="dn")
    names, note = demo_models()
    assert names == ["my-dn"] and "not installed" in note  # an alias: weights per clamp mode


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The README's main job (minutes: simulates six observations).

    The demo runs the aliases with the constant and the quantile clamp, each with the weights
    trained for it.
    """
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "1 failed" in res.output and "2 skipped" in res.output and "3 ok" in res.output
    assert list((tmp_path / "demo" / "quicklooks").glob("*.png"))
    store = ProductStore(tmp_path / "demo" / "store.zarr", mode="r")
    assert store.catalog("observations").nrows == 3 and store.run_log[-1]["status"] == "finished"
    # the store answers catalog query --catalog sources, with sky positions
    from xsa_enhance.store.query import query_catalog

    src = query_catalog(store, catalog="sources")
    assert len(src) > 0 and {"input"} < set(src["model"])
    assert np.all(np.isfinite(src["ra"])) and np.all(np.isfinite(src["dec"]))
    assert "--catalog sources" in res.output
