"""The package's one observation-id validator and the places that must use it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsa_enhance.errors import ConfigError, ObservationError
from xsa_enhance.obsid import is_obsid, validate_obsid

GOOD = ["0123700101", "0000000000", "9999999999", " 0884250101", "0884250101\t"]
BAD = ["", "012370010", "01237001011", "../../../tmp/x", "a/b", "/abs", "..", "0123456789/../x",
       "0123456789\n", "012345678\u0661",  # ARABIC-INDIC DIGIT ONE
       "\uff10123456789",  # FULLWIDTH DIGIT ZERO
       "0123456789; rm -rf /", "01234 6789", "0x12345678", "+123456789"]


@pytest.mark.parametrize("obsid", GOOD)
def test_ten_ascii_digits_are_accepted(obsid):
    assert validate_obsid(obsid) == obsid.strip()


@pytest.mark.parametrize("obsid", BAD + [None, 123700101, 1234567890, b"0123700101"])
def test_anything_else_is_refused_with_the_id_quoted(obsid):
    with pytest.raises(ObservationError) as info:
        validate_obsid(obsid, source="TAP reply")
    assert info.value.obsid == repr(obsid)[:40]
    assert info.value.reason.startswith("not an XMM-Newton observation id (10 digits)")
    assert "TAP reply" in info.value.reason
    assert "\n" not in str(info.value)
    assert not is_obsid(obsid)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=14))
def test_agrees_with_an_independent_definition(text):
    # independent: exactly ten characters from the ASCII digits, after stripping blanks/tabs
    core = text.strip(" \t")
    expected = len(core) == 10 and all(ch in "0123456789" for ch in core)
    try:
        assert validate_obsid(text) == core
        ok = True
    except ObservationError:
        ok = False
    assert ok == expected
    assert is_obsid(text) == (expected and core == text)


def test_the_modules_share_the_validator():
    from xsa_enhance.archive import config as archive_config
    from xsa_enhance.simulate import observation

    assert archive_config.validate_obsid is validate_obsid
    with pytest.raises(ObservationError):
        archive_config.validate_obsid("0123456789\n")
    # the simulator keeps its ConfigError (its ids go into file names as given, no stripping)
    assert observation.validate_obsid("0123700101") == "0123700101"
    for bad in ("0123456789\n", " 0123700101", "\uff10123456789", "a/b"):
        with pytest.raises(ConfigError, match=re.escape(repr(bad))):
            observation.validate_obsid(bad)
    src = __import__("inspect").getsource
    for mod in (archive_config, observation):
        assert "_OBSID_RE" not in src(mod)


@pytest.mark.parametrize("bad", ["a/b", "..", "/abs", "0123456789/../x", " 0123700101"])
def test_store_paths_refuse_bad_ids(bad, tmp_path):
    from xsa_enhance.store.zarr_store import ProductStore

    for call in (lambda: ProductStore.observation_path(bad),
                 lambda: ProductStore.input_path(bad, "S003_020ks_001"),
                 lambda: ProductStore.product_path(bad, "S003_020ks_001", "m", "constant")):
        with pytest.raises(ObservationError):
            call()
    with pytest.raises(ObservationError):
        ProductStore.input_path("0123700101", "../x")
    assert ProductStore.observation_path("0123700101") == "obs/0123700101"


def test_observation_task_refuses_before_building_any_path(tmp_path):
    from xsa_enhance.archive.config import ArchiveConfig
    from xsa_enhance.pipeline.tasks import observation_task

    work = tmp_path / "work"
    out = observation_task("../x", store_url=str(tmp_path / "s.zarr"), archive=ArchiveConfig(),
                           events={}, work_dir=str(work))
    assert out.status == "failed" and out.stage == "harvest"
    assert out.reason.startswith("not an XMM-Newton observation id")
    assert not work.exists() and not (tmp_path / "x").exists() and not (tmp_path / "s.zarr").exists()


def test_events_failure_reason_names_the_product_and_obsid_not_the_scratch_path(tmp_path, monkeypatch):
    """The task's temporary folder is deleted when it returns: the reason must not point there."""
    from types import SimpleNamespace

    from xsa_enhance.pipeline import tasks
    from xsa_enhance.archive.config import ArchiveConfig

    seen = {}

    def fake_harvest(obsid, out_dir, **kwargs):
        path = tmp_path.joinpath(out_dir).joinpath(f"P{obsid}PNS003PIEVLI0000.FTZ")
        path.write_bytes(b"\x1f\x8b\x08\x00garbage, not a gzip stream")
        seen["path"] = str(path)
        return SimpleNamespace(products={"PIEVLI": path}, status="downloaded")

    monkeypatch.setattr(tasks, "harvest_stage", fake_harvest)
    work = tmp_path / "work"
    out = tasks.observation_task("0123700101", store_url=str(tmp_path / "s.zarr"),
                                 archive=ArchiveConfig(), events={}, work_dir=str(work))
    assert out.status == "failed" and out.stage == "events", out
    assert out.reason.startswith("P0123700101PNS003PIEVLI0000.FTZ (observation 0123700101): "), out
    scratch = seen["path"].rsplit("/", 1)[0]
    assert scratch not in out.reason and str(work) not in out.reason and "/" not in out.reason.split(":")[0]
    assert "\n" not in out.reason
    assert not list(work.glob("xsa-*"))  # the scratch folder is gone
