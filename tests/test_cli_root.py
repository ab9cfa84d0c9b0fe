"""The root command: version, help and logging options."""

from click.testing import CliRunner

from xsa_enhance import __version__
from xsa_enhance.cli import main


def test_version_prints_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_bad_log_level_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["--log-level", "LOUD"])
    assert result.exit_code == 2
    assert "LOUD" in result.output
