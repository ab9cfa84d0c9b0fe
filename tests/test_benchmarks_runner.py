"""The benchmark runner collects every module's figures into JSON and markdown."""

from __future__ import annotations

import json
import sys
import types

from benchmarks import run as bench_run


def test_runner_writes_figures_and_reports_failures(tmp_path, monkeypatch) -> None:
    good = types.ModuleType("benchmarks.bench_fake_good")
    good.run = lambda quick=False: {"rate": 12.5, "quick": quick, "pipeline_like": {"a": 1}}
    bad = types.ModuleType("benchmarks.bench_fake_bad")

    def _boom(quick: bool = False) -> dict:
        raise RuntimeError("broken benchmark")

    bad.run = _boom
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake_good", good)
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake_bad", bad)
    monkeypatch.setattr(bench_run, "discover", lambda: ["fake_bad", "fake_good"])

    status = bench_run.main(["--quick", "--out", str(tmp_path)])

    assert status == 1  # one benchmark failed
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["benchmarks"]["fake_good"] == {"rate": 12.5, "quick": True, "pipeline_like": {"a": 1}}
    assert "broken benchmark" in data["failed"]["fake_bad"]
    table = (tmp_path / "latest.md").read_text()
    assert "| rate | 12.5 |" in table
    assert "| pipeline_like.a | 1 |" in table


def test_scaling_curve_png(tmp_path) -> None:
    results = {"benchmarks": {"pipeline": {"scaling": {"1": 0.5, "2": 0.9}}}}
    assert bench_run.plot_scaling(results, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
