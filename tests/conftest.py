"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """Folder of real XMM calibration files (``../shared/data/xmm-reference``).

    ``XSA_REFERENCE_DIR`` overrides the location.
    """
    env = os.environ.get("XSA_REFERENCE_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "xmm-reference"


@pytest.fixture(scope="session")
def xmm_reference() -> Path:
    """Path of the real XMM reference files; skips the test with a reason when absent."""
    path = reference_dir()
    if not path.is_dir():
        pytest.skip(f"real XMM reference data not found at {path} (set XSA_REFERENCE_DIR)")
    return path
