"""The atomic-write helper: a finished write replaces the target, a failed one leaves it."""

from __future__ import annotations

import pytest

from xsa_enhance.atomicio import atomic_path, write_bytes_atomic, write_text_atomic


def test_clean_write_replaces_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_failed_write_keeps_old_content_and_removes_temporary(tmp_path):
    target = tmp_path / "a.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_temporary_is_hidden_beside_target_with_suffix(tmp_path):
    target = tmp_path / "q.png"
    with atomic_path(target, suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".q.png.") and tmp.suffix == ".png"
        assert not target.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"


def test_written_file_has_the_usual_permissions_not_private(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "registry.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "registry.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o644
