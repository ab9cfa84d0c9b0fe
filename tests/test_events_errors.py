"""Unsuitable or corrupt inputs: clear errors naming the file, and one-line CLI errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.events import EventsConfig, process_event_list, read_event_list, read_fbktsr
from xsa_enhance.events.testing import event_header, write_event_list, write_fbktsr

GTIS = [[0.0, 1000.0]]


def _events(n=5):
    return {
        "TIME": np.linspace(10, 900, n),
        "DETX": np.zeros(n),
        "DETY": np.zeros(n),
        "PI": np.full(n, 1000),
        "PATTERN": np.zeros(n),
        "FLAG": np.zeros(n),
        "RAWY": np.full(n, 100),
        "CCDNR": np.full(n, 4),
    }


def _good(tmp_path, name="ev.FTZ", **kw):
    return write_event_list(tmp_path / name, _events(), ccd_gtis=GTIS, **kw)


def _expect(path, match):
    with pytest.raises(InputFileError, match=match) as info:
        read_event_list(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_good_file_reads(tmp_path):
    el = read_event_list(_good(tmp_path))
    assert len(el) == 5 and el.meta.submode == "PrimeFullWindow"


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("INSTRUME", "EMOS1", "not an EPIC-pn"),
        ("DATAMODE", "TIMING", "not an imaging"),
        ("SUBMODE", "PrimeSmallWindow", "not full frame"),
        ("SUBMODE", "PrimeLargeWindow", "not full frame"),
    ],
)
def test_wrong_instrument_or_mode(tmp_path, key, value, match):
    hdr = event_header()
    hdr[key] = value
    _expect(_good(tmp_path, header=hdr), match)


def test_extended_full_frame_accepted(tmp_path):
    hdr = event_header(submode="PrimeFullWindowExtended")
    assert read_event_list(_good(tmp_path, header=hdr)).meta.submode == "PrimeFullWindowExtended"


def test_missing_column(tmp_path):
    ev = _events()
    del ev["PATTERN"]
    p = write_event_list(tmp_path / "e.fits", ev, ccd_gtis=GTIS)
    _expect(p, "no column.*PATTERN")
    # but a reader asking only for other columns is fine
    assert len(read_event_list(p, columns=["DETX"])) == 5


def test_missing_gtis_and_events(tmp_path):
    _expect(write_event_list(tmp_path / "a.fits", _events(), ccd_gtis=None), "STDGTI")
    _expect(write_event_list(tmp_path / "b.fits", _events(0), ccd_gtis=GTIS), "empty")
    p = tmp_path / "c.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(p)
    _expect(p, "no EVENTS")


def test_bad_gtis(tmp_path):
    _expect(write_event_list(tmp_path / "a.fits", _events(), ccd_gtis=[[100.0, 50.0]]), "STOP .* before START")
    _expect(
        write_event_list(tmp_path / "b.fits", _events(), ccd_gtis=[[500.0, 900.0], [0.0, 100.0]]),
        "out of order",
    )


def test_nan_times(tmp_path):
    ev = _events()
    ev["TIME"][2] = np.nan
    _expect(write_event_list(tmp_path / "a.fits", ev, ccd_gtis=GTIS), "non-finite TIME")


def test_corrupt_files(tmp_path):
    good = _good(tmp_path)
    raw = good.read_bytes()
    trunc = tmp_path / "trunc.FTZ"
    trunc.write_bytes(raw[: len(raw) // 2])
    _expect(trunc, "corrupt|truncated")
    garbage = tmp_path / "garbage.FTZ"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    _expect(garbage, "corrupt")
    text = tmp_path / "text.fits"
    text.write_text("No results\n")
    _expect(text, "not a FITS")
    # a valid gzip stream holding a truncated FITS file
    dec = gzip.decompress(raw)
    half = tmp_path / "half.FTZ"
    half.write_bytes(gzip.compress(dec[: 2880 * 3]))
    with pytest.raises(InputFileError) as info:
        read_event_list(half)
    assert str(half) in str(info.value)
    _expect(tmp_path / "missing.FTZ", "no such file")


def test_bad_fbktsr(tmp_path):
    ev = _good(tmp_path)
    p = tmp_path / "fb.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(p)
    with pytest.raises(InputFileError, match="no RATE"):
        process_event_list(ev, p)
    p2 = write_fbktsr(tmp_path / "fb2.fits", time=[5.0, 5.0], rate=[0.1, 0.1], timedel=10.0)
    with pytest.raises(InputFileError, match="increasing"):
        read_fbktsr(p2)


def test_fbktsr_without_flcutthr_uses_config(tmp_path):
    ev = _good(tmp_path)
    fb = write_fbktsr(
        tmp_path / "fb.fits", time=np.arange(5.0, 1000.0, 10.0),
        rate=np.where(np.arange(5.0, 1000.0, 10.0) < 500, 0.3, 0.5), timedel=10.0, flcutthr=None,
    )  # fmt: skip
    obs = process_event_list(ev, fb, config=EventsConfig(slice_lengths_ks=(), flare_threshold=0.4))
    np.testing.assert_allclose(obs.clean_gtis, [[0.0, 500.0]])
    obs = process_event_list(ev, fb, config=EventsConfig(slice_lengths_ks=(), fbktsr_threshold=0.6))
    np.testing.assert_allclose(obs.clean_gtis, [[0.0, 1000.0]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"band": (2000, 500)},
        {"band": "soft"},
        {"slice_lengths_ks": "some"},
        {"slice_lengths_ks": (10, -5)},
        {"flare_threshold": 0},
        {"grids": ("3x",)},
        {"expression": "PI >"},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        EventsConfig(**kwargs)


def test_config_from_dict():
    cfg = EventsConfig.from_dict({"band": [200, 1000], "slice_lengths_ks": [20, 50], "grids": ["2x"]})
    assert cfg.band == (200, 1000) and cfg.slice_lengths_ks == (20.0, 50.0)
    assert cfg.grids == ("1x", "2x")
    assert EventsConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown option"):
        EventsConfig.from_dict({"bnad": [1, 2]})


# ------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("command", ["image", "slice"])
def test_cli_bad_files_one_line(tmp_path, command):
    bad = tmp_path / "P0000000000PNS003PIEVLI0000.FTZ"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    hdr = event_header(submode="PrimeSmallWindow")
    small = _good(tmp_path, name="small.FTZ", header=hdr)
    runner = CliRunner()
    for path, reason in ((bad, "corrupt"), (small, "not full frame"), (tmp_path / "nope.FTZ", "no such file")):
        res = runner.invoke(main, [command, str(path), "--out", str(tmp_path / "out.fits")])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1, res.output
        assert str(path) in lines[0] and reason in lines[0]
        assert "Traceback" not in res.output


def test_cli_bad_expression_and_band(tmp_path):
    ev = _good(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["image", str(ev), "--expression", "PI >> 3", "--out", str(tmp_path / "o.fits")])
    assert res.exit_code == 2 and "position" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["image", str(ev), "--band", "2000:500", "--out", str(tmp_path / "o.fits")])
    assert res.exit_code == 2 and "Traceback" not in res.output


@pytest.mark.parametrize("content", [b"\x1f\x8b\x08\x00garbage", b"<html>No results</html>", b""])
def test_corrupt_fbktsr_is_a_clear_error(tmp_path, content):
    ev = _good(tmp_path)
    fb = tmp_path / "P0123700101PNS003FBKTSR0000.FTZ"
    fb.write_bytes(content)
    with pytest.raises(InputFileError) as info:
        process_event_list(ev, fb)
    assert info.value.path == str(fb)
    res = CliRunner().invoke(main, ["image", str(ev), "--fbktsr", str(fb), "--out", str(tmp_path / "o.fits")])
    assert res.exit_code == 2 and str(fb) in res.output and "Traceback" not in res.output


def test_fbktsr_of_another_observation(tmp_path):
    ev = _good(tmp_path)  # OBS_ID 0123700101
    fb = write_fbktsr(tmp_path / "fb.fits", time=[5.0, 15.0], rate=[0.1, 0.1], timedel=10.0, obsid="0999999999")
    with pytest.raises(InputFileError, match="0999999999.*0123700101"):
        process_event_list(ev, fb)


def test_config_pickles_for_dask():
    import pickle

    cfg = EventsConfig(expression="PI > 3 && PATTERN == 0", slice_lengths_ks=(20, 50))
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and back.screening == cfg.screening
    assert back.screening.columns == {"PI", "PATTERN"}
