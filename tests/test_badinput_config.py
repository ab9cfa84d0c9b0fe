"""Malformed pipeline configs, malformed ADQL sent to the local archive, unusable images.

- Pipeline YAML: every malformed file gives :class:`~xsa_enhance.errors.ConfigError` (or
  ``InputFileError`` for an unreadable file) naming the file, where in it, and why; the CLI
  ``run --pipeline`` prints it as one ``error:`` line with exit status 2 and starts nothing.
- ADQL: malformed queries, SQL-injection attempts and random text POSTed to the local
  archive's TAP ``sync`` endpoint are answered with a ``400`` error VOTable (never a ``500``,
  never a hang), the database is unchanged and the server keeps answering.
- Images for ``xsa-enhance enhance``: zero/negative/NaN exposure, 3-D or empty HDUs, huge
  declared sizes, tiny or oversized images, NaN/Inf pixels: a one-line error or a finite
  result of the right shape, never a traceback (NaN/Inf pixels were an xfail regression
  until ``8546115``).
"""

from __future__ import annotations

import copy
import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_reliability_support import make_tiny_models
from xsa_enhance.cli.main import main
from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.pipeline import load_pipeline
from xsa_enhance.standin import LocalArchive
from xsa_enhance.standin.products import minimal_products

BASE = {"kind": "pipeline", "name": "bad", "store": "STORE",
        "archive": {"tap_url": "http://127.0.0.1:9/tap", "aio_url": "http://127.0.0.1:9/aio?"}}


def _set(path: str, value):
    def mod(doc):
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return mod


#: name -> (document modifier or raw text, fragments the message must contain)
CONFIGS = {
    "yaml-syntax": ("kind: pipeline\nname: [unclosed\n", ["invalid YAML", ":3:"]),
    "not-a-mapping": ("- a\n- b\n", ["not of type 'object'"]),
    "empty-file": ("", ["None is not of type 'object'"]),
    "binary-file": (b"\x00\xff\xfe garbage \x89PNG", ["not a text file"]),
    "unknown-key": (_set("stroe", "x"), ["$.stroe", "unexpected key"]),
    "retries-not-int": (_set("archive.retries", "three"), ["$.archive.retries", "integer"]),
    "retries-negative": (_set("archive.retries", -1), ["$.archive.retries", "minimum"]),
    "timeout-zero": (_set("archive.timeout_s", 0), ["$.archive.timeout_s", "minimum"]),
    "unknown-executor": (_set("executor.kind", "quantum"), ["$.executor.kind", "quantum"]),
    "obsid-short": (_set("selection.obsids", ["12345"]), ["$.selection.obsids[0]", "12345"]),
    "obsid-path": (_set("selection.obsids", ["../../etc/passwd"]), ["$.selection.obsids[0]"]),
    "obsid-sql": (_set("selection.obsids", ["0123456789' OR '1'='1"]), ["$.selection.obsids[0]"]),
    "clamp": (_set("enhance.clamps", ["quantile:7"]), ["$.enhance.clamps[0]"]),
    "slice-negative": (_set("enhance.slice_lengths_ks", [-20]), ["$.enhance.slice_lengths_ks[0]"]),
}
#: Malformed in ways the messages once explained badly (were xfails; the reasons say what was wrong).
UNCLEAR = {
    "bad-expression": (_set("events.expression", "PI > && RAWY"), ["position 5"],
                       "pipeline/config.py PipelineConfig.from_dict: errors of the events "
                       "section (EventsConfig.from_dict) do not name the pipeline file"),
    "band-reversed": (_set("events.band", [2000, 500]), ["band"],
                      "pipeline/config.py PipelineConfig.from_dict: errors of the events "
                      "section do not name the pipeline file"),
    "tap-url-scheme": (_set("archive.tap_url", "ftp://x"), ["tap_url"],
                       "pipeline schema/config: archive.tap_url is not checked on load; the "
                       "run fails later with a message that does not name the file"),
    "cone-dec-100": (_set("selection.cone", [10.0, 100.0, 0.5]), ["$.selection.cone"],
                     "schemas/pipeline.schema.json: an out-of-range cone is reported as "
                     "\"is not of type 'null'\" (last oneOf branch), not why it is wrong"),
    "since-not-a-date": (_set("selection.since", "yesterday-ish"), ["$.selection.since"],
                         "schemas/pipeline.schema.json: a bad 'since' is reported as \"is not "
                         "of type 'null'\", not as a bad date"),
}


def _write(tmp_path: Path, name: str, spec) -> Path:
    path = tmp_path / f"{name}.yaml"
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    elif isinstance(spec, str):
        path.write_text(spec)
    else:
        doc = copy.deepcopy(BASE)
        doc["store"] = str(tmp_path / "store.zarr")
        spec(doc)
        path.write_text(yaml.safe_dump(doc))
    return path


def _check(tmp_path: Path, name: str, spec, fragments) -> None:
    path = _write(tmp_path, name, spec)
    with pytest.raises((ConfigError, InputFileError)) as info:
        load_pipeline(path)
    message = str(info.value)
    assert str(path) in message, message
    for frag in fragments:
        assert frag in message, (frag, message)
    # a reason that only names the last alternative of a schema 'oneOf' explains nothing
    assert "is not of type 'null'" not in message, message
    res = CliRunner().invoke(main, ["run", "--pipeline", str(path), "--in-process"])
    assert res.exit_code == 2, (res.exit_code, res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0], res.output
    assert not (tmp_path / "store.zarr").exists(), "nothing may start on a bad config"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_malformed_pipeline_file(name, tmp_path):
    spec, fragments = CONFIGS[name]
    _check(tmp_path, name, spec, fragments)


@pytest.mark.parametrize("name", list(UNCLEAR))
def test_malformed_pipeline_file_messages_to_improve(name, tmp_path):
    spec, fragments, _ = UNCLEAR[name]
    _check(tmp_path, name, spec, fragments)


# -- ADQL -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    with LocalArchive(tmp_path_factory.mktemp("adql"), n_observations=3, seed=71,
                      producer=minimal_products) as la:
        yield la


def _post(archive, query: str, timeout: float = 20.0) -> tuple[int, str]:
    data = urllib.parse.urlencode({"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "votable",
                                   "QUERY": query}).encode()
    req = urllib.request.Request(archive.tap_url + "/sync", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def _db_digest(archive) -> str:
    return hashlib.sha256((archive.root / "xsa.sqlite").read_bytes()).hexdigest()


MALFORMED_ADQL = [
    "SELECT * FROM xsa.v_exposure WHERE observation_id = 'unterminated",
    "SELECT * FROM xsa.v_exposure; DROP TABLE v_exposure",
    "SELECT * FROM xsa.v_exposure WHERE 1=1; DELETE FROM v_exposure",
    "SELECT name FROM sqlite_master",
    "ATTACH DATABASE '/tmp/evil.sqlite' AS evil",
    "PRAGMA writable_schema = 1",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT * FROM xsa.v_exposure WHERE observation_id = '' OR 1=1 --'",
    "SELECT TOP -5 * FROM xsa.v_exposure",
    "SELECT TOP 99999999999999999999 * FROM xsa.v_exposure",
    "SELECT",
    "",
    "   ",
    "SELECT * FROM xsa.v_exposure WHERE " + "(" * 500 + "1=1" + ")" * 500,
    "SELECT " + ", ".join(["observation_id"] * 300) + " FROM xsa.v_exposure",
    "SELECT * FROM xsa.v_exposure WHERE ra > 1e999",
    "SELECT * FROM xsa.v_exposure WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 'a', 'b', 'c')) = 1",
    "SELECT \x00 FROM xsa.v_exposure",
    "SELECT * FROM xsa.v_exposure WHERE observation_id = '\u2603'",
]


def test_malformed_adql_is_refused_cleanly(archive):
    before = _db_digest(archive)
    statuses = []
    for query in MALFORMED_ADQL:
        status, body = _post(archive, query)
        statuses.append((query[:60], status))
        assert status in (200, 400), (query[:80], status, body[:200])
        if status == 400:
            assert 'QUERY_STATUS" value="ERROR"' in body
    # only the harmless ones run: a unicode literal, 300 columns, the (empty) local sqlite_master
    assert sum(s == 400 for _, s in statuses) >= len(MALFORMED_ADQL) - 3, statuses
    assert _db_digest(archive) == before
    assert not Path("/tmp/evil.sqlite").exists()
    status, body = _post(archive, "SELECT observation_id FROM xsa.v_public_observations")
    assert status == 200 and archive.observations[0].obsid in body


_ADQL_WORDS = st.sampled_from([
    "SELECT", "TOP", "3", "*", "FROM", "xsa.v_exposure", "xsa.v_public_observations", "WHERE",
    "observation_id", "ra", "dec", "=", "<", ">", "AND", "OR", "NOT", "(", ")", ",", "'0901'",
    "CONTAINS", "POINT", "CIRCLE", "'ICRS'", "1", "ORDER", "BY", "DESC", "DISTINCT", "AS", "t",
    "JOIN", "ON", "IN", "LIKE", "'%1'", "IS", "NULL", "COUNT", "GROUP", ";", "--", "'", "\"",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.lists(_ADQL_WORDS, max_size=18).map(" ".join), st.text(max_size=80)))
def test_fuzzed_adql_never_breaks_the_server(archive, query):
    status, body = _post(archive, query)
    assert status in (200, 400), (query, status, body[:200])
    if status == 400:
        assert 'QUERY_STATUS" value="ERROR"' in body


# -- images for `xsa-enhance enhance` ----------------------------------------------------------


@pytest.fixture(scope="module")
def dn_model(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("weights"))[1]


def _image(path: Path, data, **cards) -> Path:
    hdu = fits.PrimaryHDU(data)
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(path, overwrite=True)
    return path


def _huge_declared(path: Path) -> Path:
    h = fits.Header()
    h["SIMPLE"], h["BITPIX"], h["NAXIS"] = True, 16, 2
    h["NAXIS1"], h["NAXIS2"], h["EXPOSURE"] = 100_000, 100_000, 2.0e4
    path.write_bytes(h.tostring().encode() + b"\0" * 2880 * 4)
    return path


ONES = np.ones((411, 403), dtype=np.int32)
IMAGE_ERRORS = {
    "zero-exposure": (lambda p: _image(p, ONES, EXPOSURE=0.0), "EXPOSURE must be positive"),
    "negative-exposure": (lambda p: _image(p, ONES, EXPOSURE=-5.0), "EXPOSURE must be positive"),
    "nan-exposure": (lambda p: _image(p, ONES, EXPOSURE="NaN"), "EXPOSURE"),
    "no-exposure": (lambda p: _image(p, ONES), "no usable EXPOSURE"),
    "cube": (lambda p: _image(p, np.ones((2, 411, 403), np.int32), EXPOSURE=2e4), "2-D"),
    "no-data": (lambda p: _image(p, None, EXPOSURE=2e4), "2-D"),
    "huge-declared": (_huge_declared, "not a readable FITS image"),
    "text-file": (lambda p: (p.write_text("No results\n"), p)[1], ""),
}


def _enhance(tmp_path, image: Path, model: str):
    return CliRunner().invoke(main, ["enhance", str(image), "--model", model,
                                     "--out", str(tmp_path / "out.fits"), "--overwrite"])


@pytest.mark.parametrize("name", list(IMAGE_ERRORS))
def test_unusable_images_are_one_line_errors(name, tmp_path, dn_model):
    make, fragment = IMAGE_ERRORS[name]
    image = make(tmp_path / f"{name}.fits")
    res = _enhance(tmp_path, image, dn_model)
    assert res.exit_code == 2, (res.exit_code, res.exception, res.output[-300:])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(image) in lines[0]
    assert fragment in lines[0]
    assert not (tmp_path / "out.fits").exists()


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 1500)])
def test_tiny_and_odd_images_give_a_finite_result_of_the_right_shape(shape, tmp_path, dn_model):
    image = _image(tmp_path / "img.fits", np.ones(shape, np.int32), EXPOSURE=2.0e4)
    res = _enhance(tmp_path, image, dn_model)
    assert res.exit_code == 0, (res.exception, res.output[-300:])
    with fits.open(tmp_path / "out.fits") as hdul:
        out = hdul[0].data
    assert out.shape == shape and np.isfinite(out).all()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused(value, tmp_path, dn_model):
    data = np.ones((411, 403), dtype=np.float32)
    data[100, 100] = value
    image = _image(tmp_path / "img.fits", data, EXPOSURE=2.0e4)
    res = _enhance(tmp_path, image, dn_model)
    assert res.exit_code == 2 and str(image) in res.output and "error:" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "out.fits").exists()
