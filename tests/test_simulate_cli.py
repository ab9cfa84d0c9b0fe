"""The ``xsa-enhance simulate`` commands."""

import json

from astropy.io import fits
from click.testing import CliRunner

from xsa_enhance.cli.main import main


def test_simulate_observation_command(tmp_path) -> None:
    r = CliRunner().invoke(main, ["simulate", "observation", "--obsid", "0000000001",
                                  "--exposure", "3", "--seed", "1", "--out", str(tmp_path),
                                  "--no-flares", "--extended", "none", "--ra", "10",
                                  "--dec", "-5", "--pa", "30"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["flares"] == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["P0000000001PNS003FBKTSR0000.FTZ", "P0000000001PNS003PIEVLI0000.FTZ"]
    with fits.open(tmp_path / names[1]) as h:
        assert h["EVENTS"].header["RA_PNT"] == 10.0
        assert len(h["EVENTS"].data) == info["n_events"]


def test_simulate_observation_modes(tmp_path) -> None:
    r = CliRunner().invoke(main, ["simulate", "observation", "--obsid", "0000000002",
                                  "--exposure", "1", "--out", str(tmp_path), "--mode",
                                  "FastTiming", "--no-fbktsr", "--extended", "none"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["P0000000002PNS003PIEVLI0000.FTZ"]


def test_bad_obsid_is_one_line_error(tmp_path) -> None:
    r = CliRunner().invoke(main, ["simulate", "observation", "--obsid", "../x",
                                  "--exposure", "1", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert "10 digits" in r.output
    assert not any(tmp_path.iterdir())


def test_training_set_and_quicklook_commands(tmp_path) -> None:
    store = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, ["simulate", "training-set", "--kind", "sr", "--n", "1",
                                  "--seed", "2", "--out", str(store)])
    assert r.exit_code == 0, r.output
    from xsa_enhance.simulate.training import open_training_set

    assert open_training_set(store).kind == "sr"
    r = CliRunner().invoke(main, ["simulate", "training-set", "--kind", "sr", "--n", "1",
                                  "--out", str(store)])
    assert r.exit_code == 2 and "exists" in r.output
    png = tmp_path / "q.png"
    r = CliRunner().invoke(main, ["simulate", "quicklook", "--kind", "dn", "--seed", "1",
                                  "--out", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = CliRunner().invoke(main, ["simulate", "quicklook", "--out", str(tmp_path / "q.jpg")])
    assert r.exit_code == 2 and "PNG" in r.output
