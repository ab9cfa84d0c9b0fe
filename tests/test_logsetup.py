"""Logging set-up of the entry points (:mod:`xsa_enhance.logsetup`)."""

import logging

import pytest

from xsa_enhance.errors import ConfigError
from xsa_enhance.logsetup import configure_logging


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {n: logging.getLogger(n).level for n in ("distributed", "tornado")})
    yield root
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    for n, lvl in saved[2].items():
        logging.getLogger(n).setLevel(lvl)


def test_one_handler_at_the_level_and_dask_kept_quiet(restore_root) -> None:
    configure_logging("info")
    configure_logging("INFO")  # a second call replaces the handler
    assert len(restore_root.handlers) == 1
    assert restore_root.level == logging.INFO
    assert logging.getLogger("distributed").level == logging.WARNING
    configure_logging(logging.DEBUG)
    assert logging.getLogger("tornado").level == logging.DEBUG


def test_unknown_level_is_a_config_error(restore_root) -> None:
    with pytest.raises(ConfigError, match="LOUD"):
        configure_logging("LOUD")


def test_library_modules_do_not_import_the_cli() -> None:
    from pathlib import Path

    import xsa_enhance

    pkg = Path(xsa_enhance.__file__).parent
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                 if p.parent.name != "cli" and ("from xsa_enhance.cli" in p.read_text()
                                                 or "import xsa_enhance.cli" in p.read_text())]
    assert offenders == []
