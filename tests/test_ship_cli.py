"""``xsa-enhance ship-models``: the shipped models' recipe as a click command.

Only the cheap paths run here (help, option checks, the ``card`` stage on an empty work
directory): the other stages simulate training sets and train models for tens of minutes.
"""

import json
import subprocess
import sys

from click.testing import CliRunner

from xsa_enhance.cli import main
from xsa_enhance.training.ship import STAGES, ShipOptions


def test_help_lists_the_options_and_defaults() -> None:
    result = CliRunner().invoke(main, ["ship-models", "--help"])
    assert result.exit_code == 0, result.output
    for opt in ("--out", "--stages", "--kinds", "--n", "--data-seed", "--test-n", "--test-seed",
                "--minutes", "--seed", "--preset", "--resume", "--eval-images", "--eval-seed",
                "--registry-dir", "--version", "--points", "--target-noise", "--anneal-minutes",
                "--anneal-lr", "--init-from"):
        assert opt in result.output
    assert ",".join(STAGES) in result.output.replace("\n", "").replace(" ", "")


def test_unknown_stage_is_a_usage_error(tmp_path) -> None:
    out = tmp_path / "work"
    result = CliRunner().invoke(main, ["ship-models", "--out", str(out), "--stages", "data,bake"])
    assert result.exit_code == 2
    assert "bake" in result.output
    assert not out.exists()


def test_out_is_required() -> None:
    result = CliRunner().invoke(main, ["ship-models"])
    assert result.exit_code == 2
    assert "--out" in result.output


def test_card_stage_on_an_empty_work_directory(tmp_path) -> None:
    out = tmp_path / "work"
    result = CliRunner().invoke(main, ["ship-models", "--out", str(out), "--stages", "card",
                                       "--version", "v9"])
    assert result.exit_code == 0, result.output
    assert (out / "model_card_tables.md").read_text() == "\n"  # nothing evaluated yet
    summary = json.loads((out / "ship_summary.json").read_text())
    expected = {"out": str(out), **vars(ShipOptions(stages="card", version="v9"))}
    assert summary == {"args": expected}


def test_bad_version_is_a_one_line_error(tmp_path) -> None:
    result = CliRunner().invoke(main, ["ship-models", "--out", str(tmp_path / "w"),
                                       "--stages", "card", "--version", "2"])
    assert result.exit_code == 2
    assert "v2" in result.output


def test_python_m_entry_point_is_the_same_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "xsa_enhance.training.ship", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python -m xsa_enhance.training.ship" in proc.stdout
    assert "--anneal-lr" in proc.stdout
