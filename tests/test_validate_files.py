"""Tests of xsa_enhance.config (schema lookup, validate_file) and `xsa-enhance validate`.

The expected problems and their lines are written down by hand from the fixture documents
below, not taken from the code's output.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from xsa_enhance.cli.main import main
from xsa_enhance.config import (
    ValidationIssue,
    available_schemas,
    detect_schema,
    load_schema,
    load_validated,
    schema_dir,
    validate_data,
    validate_file,
)
from xsa_enhance.config.validate import METASCHEMA
from xsa_enhance.errors import ConfigError, InputFileError

REPO = Path(__file__).resolve().parents[1]

DEMO_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.org/schemas/demo.schema.json",
    "title": "demo pipeline",
    "type": "object",
    "required": ["kind", "name", "stages"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "demo-pipeline"},
        "name": {"type": "string"},
        "stages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["model"],
                "additionalProperties": False,
                "properties": {
                    "model": {"enum": ["sr", "dn"]},
                    "exposure_ks": {"$ref": "common.schema.json#/$defs/exposure"},
                },
            },
        },
    },
}
COMMON_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.org/schemas/common.schema.json",
    "$defs": {"exposure": {"type": "integer", "minimum": 10, "multipleOf": 10}},
}
ATTRS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["model", "clamp_mode"],
    "properties": {
        "kind": {"enum": ["product-attributes", "product"]},
        "model": {"type": "string"},
        "clamp_mode": {"enum": ["constant", "quantile"]},
    },
}

BAD_YAML = textwrap.dedent(
    """\
    kind: demo-pipeline
    name: 5
    stages:
      - model: sr
        exposure_ks: 15
      - model: xx
        modle: sr
      - exposure_ks: 20
    colour: red
    """
)
# Hand-written expectations: (line, JSON path, a word the message must contain).
BAD_EXPECTED = [
    (2, "$.name", "string"),
    (5, "$.stages[0].exposure_ks", "multiple"),
    (6, "$.stages[1].model", "'xx'"),
    (7, "$.stages[1].modle", "unexpected"),
    (8, "$.stages[2]", "'model' is a required"),
    (9, "$.colour", "unexpected"),
]


@pytest.fixture()
def schemas(tmp_path, monkeypatch):
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "demo.schema.json").write_text(json.dumps(DEMO_SCHEMA, indent=2))
    (folder / "common.schema.json").write_text(json.dumps(COMMON_SCHEMA, indent=2))
    (folder / "product-attributes.schema.json").write_text(json.dumps(ATTRS_SCHEMA, indent=2))
    monkeypatch.setenv("XSA_ENHANCE_SCHEMAS", str(folder))
    return folder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_schema_lookup_by_name_file_id_and_path(schemas):
    assert schema_dir() == schemas
    assert list(available_schemas()) == ["common", "demo", "product-attributes"]
    assert load_schema("demo")["title"] == "demo pipeline"
    assert load_schema("demo.schema.json")["title"] == "demo pipeline"
    assert load_schema("https://example.org/schemas/demo.schema.json")["title"] == "demo pipeline"
    assert load_schema(schemas / "demo.schema.json")["title"] == "demo pipeline"
    with pytest.raises(ConfigError, match="unknown schema 'nope'.*known: common, demo"):
        load_schema("nope")


def test_every_error_reported_with_line_and_path(schemas, tmp_path):
    f = _write(tmp_path / "work" / "bad.yaml", BAD_YAML)
    issues = validate_file(f)
    got = [(i.line, i.location) for i in issues]
    assert got == [(line, loc) for line, loc, _ in BAD_EXPECTED]
    for issue, (_, _, word) in zip(issues, BAD_EXPECTED):
        assert word in issue.message
        assert issue.file == str(f)
    # the unexpected key is pointed at itself (column 5 of line 7), not its parent mapping
    assert (issues[3].line, issues[3].column) == (7, 5)
    assert str(issues[0]).startswith(f"{f}:2:7: $.name: ")


def test_valid_file_has_no_issues_and_load_validated_returns_it(schemas, tmp_path):
    good = _write(
        tmp_path / "good.yaml",
        "kind: demo-pipeline\nname: nightly\nstages:\n  - {model: sr, exposure_ks: 20}\n",
    )
    assert validate_file(good) == []
    assert load_validated(good)["stages"][0]["exposure_ks"] == 20


def test_load_validated_raises_one_line_config_error(schemas, tmp_path):
    f = _write(tmp_path / "bad.yaml", BAD_YAML)
    with pytest.raises(ConfigError) as info:
        load_validated(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: 6 problem(s): ")
    assert "$.colour" in msg and "$.stages[1].modle" in msg


def test_yaml_syntax_error_and_duplicate_keys_located(schemas, tmp_path):
    broken = _write(tmp_path / "broken.yaml", "kind: demo-pipeline\nstages: [a, b\nname: x\n")
    (issue,) = validate_file(broken)
    assert issue.message.startswith("invalid YAML")
    assert issue.line is not None and issue.line >= 2
    dup = _write(
        tmp_path / "dup.yaml", "kind: demo-pipeline\nname: a\nstages: []\nname: b\n"
    )
    issues = validate_file(dup)
    assert [(i.line, i.location) for i in issues] == [(4, "$.name")]
    assert "duplicate key" in issues[0].message


def test_json_error_positions(schemas, tmp_path):
    bad = _write(tmp_path / "x.json", '{"kind": "demo-pipeline",\n "name": "n",\n "stages": [}\n')
    (issue,) = validate_file(bad)
    assert issue.message.startswith("invalid JSON") and issue.line == 3
    wrong = _write(
        tmp_path / "y.json",
        '{\n  "kind": "demo-pipeline",\n  "name": "n",\n  "stages": [\n    {"model": 3}\n  ]\n}\n',
    )
    issues = validate_file(wrong)
    assert [(i.line, i.location) for i in issues] == [(5, "$.stages[0].model")]


def test_schema_detection_rules(schemas, tmp_path):
    assert detect_schema({"kind": "demo-pipeline"}) == "demo"  # kind const in the schema
    assert detect_schema({"kind": "product"}) == "product-attributes"  # kind enum
    assert detect_schema({"$schema": "demo.schema.json", "x": 1}) == "demo"
    assert detect_schema({"$schema": "https://example.org/schemas/demo.schema.json"}) == "demo"
    assert detect_schema({"$schema": "https://json-schema.org/draft/2020-12/schema"}) == METASCHEMA
    # no marker at all: the only schema it satisfies
    assert detect_schema({"model": "sr", "clamp_mode": "quantile"}) == "product-attributes"
    with pytest.raises(InputFileError, match="cannot tell which schema applies"):
        detect_schema({"something": "else"}, path="z.yaml")
    with pytest.raises(InputFileError, match="names no known schema"):
        detect_schema({"$schema": "other.schema.json"})


def test_explicit_schema_and_metaschema_check(schemas, tmp_path):
    attrs = _write(tmp_path / "attrs.json", json.dumps({"model": 1, "clamp_mode": "median"}))
    issues = validate_file(attrs, schema="product-attributes")
    assert sorted(i.location for i in issues) == ["$.clamp_mode", "$.model"]
    bad_schema = _write(
        tmp_path / "broken.schema.json",
        json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "strnig"}),
    )
    issues = validate_file(bad_schema)
    assert len(issues) == 1 and issues[0].location == "$.type"
    assert validate_data({"type": "object"}, schema=METASCHEMA) == []


def test_missing_file_is_input_file_error(schemas, tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        validate_file(tmp_path / "absent.yaml")


def test_cli_validate_reports_and_exit_codes(schemas, tmp_path):
    bad = _write(tmp_path / "bad.yaml", BAD_YAML)
    good = _write(
        tmp_path / "good.yaml", "kind: demo-pipeline\nname: n\nstages: []\n"
    )
    runner = CliRunner()
    res = runner.invoke(main, ["validate", str(good)])
    assert res.exit_code == 0, res.output
    assert f"{good}: ok" in res.stdout
    res = runner.invoke(main, ["validate", str(good), str(bad)])
    assert res.exit_code == 1
    lines = [l for l in res.stdout.splitlines() if l.startswith(str(bad))]
    assert len(lines) == len(BAD_EXPECTED)
    assert "2 file(s) checked, 6 problem(s) in 1 file(s)" in res.stderr
    res = runner.invoke(main, ["validate", "--format", "json", str(bad)])
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    assert [(r["line"], r["location"]) for r in rows] == [(l, p) for l, p, _ in BAD_EXPECTED]
    # a folder argument checks the YAML/JSON files in it
    res = runner.invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 1 and f"{good}: ok" in res.stdout
    # an unknown schema name is a user error: one line, exit status 2, no traceback
    res = runner.invoke(main, ["validate", "--schema", "nope", str(good)])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown schema 'nope'" in res.stderr
    assert "Traceback" not in res.output
    res = runner.invoke(main, ["validate", "--list-schemas"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("common\t")


def test_issue_str_without_position():
    assert str(ValidationIssue("$.a", "bad")) == "$.a: bad"
    assert str(ValidationIssue("$.a", "bad", "f.yaml", 3)) == "f.yaml:3: $.a: bad"


# ---- the project's own schemas and pipeline files (present once the pipeline stage lands) ----

REPO_SCHEMAS = sorted((REPO / "schemas").glob("*.json"))
REPO_PIPELINES = sorted((REPO / "pipelines").glob("*.y*ml"))


def test_package_finds_repo_schemas_through_package_folder(monkeypatch):
    monkeypatch.delenv("XSA_ENHANCE_SCHEMAS", raising=False)
    import xsa_enhance

    pkg_schemas = Path(xsa_enhance.__file__).parent / "schemas"
    assert pkg_schemas.is_dir()
    assert schema_dir().resolve() == (REPO / "schemas").resolve()


@pytest.mark.parametrize("path", REPO_SCHEMAS, ids=lambda p: p.name)
def test_repo_schemas_are_valid_json_schemas(path, monkeypatch):
    monkeypatch.delenv("XSA_ENHANCE_SCHEMAS", raising=False)
    assert validate_file(path, schema=METASCHEMA) == []


@pytest.mark.parametrize("path", REPO_PIPELINES, ids=lambda p: p.name)
def test_repo_pipelines_validate(path, monkeypatch):
    monkeypatch.delenv("XSA_ENHANCE_SCHEMAS", raising=False)
    assert [str(i) for i in validate_file(path)] == []
