"""Logging set-up of the entry points (:mod:`xsa_enhance.logsetup`)."""

import ast
import logging
from pathlib import Path

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


def _imports_outside_main_guard(tree: ast.Module) -> list[str]:
    """Modules imported anywhere but in an ``if __name__ == "__main__":`` block."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue  # a program entry point may call the CLI command it is
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and sub.module:
                out.append(sub.module)
            elif isinstance(sub, ast.Import):
                out.extend(a.name for a in sub.names)
    return out


def test_library_modules_do_not_import_the_cli() -> None:
    import xsa_enhance

    pkg = Path(xsa_enhance.__file__).parent
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if p.parent.name != "cli"
                 and any(m == "xsa_enhance.cli" or m.startswith("xsa_enhance.cli.")
                         for m in _imports_outside_main_guard(ast.parse(p.read_text())))]
    assert offenders == []
