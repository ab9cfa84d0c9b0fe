"""The documentation site: strict build, generated schema page, and docs that match the code.

* `mkdocs build --strict` succeeds (warnings are errors) and the strict mode does catch a
  broken link (so the gate is real);
* the schema page lists every key of every schema in schemas/ (walked independently here);
* every `xsa-enhance ...` command line in the pages owned by the operations stage names a
  command and options that exist in the CLI, every `make` target exists in the Makefile,
  every deploy/ path they mention exists, and every `from xsa_enhance... import ...` works.
"""

from __future__ import annotations

import importlib
import json
import re
from html import escape
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from xsa_enhance.cli.main import main as cli

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
OWN_PAGES = ["index.md", "quickstart.md", "user-guide.md", "hpc.md", "limitations.md"]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # not -q: with --quiet, mkdocs 1.6 stops counting warnings and --strict passes anything
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = _build(REPO / "mkdocs.yml", out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def test_site_builds_strict_with_all_pages(site):
    for page in OWN_PAGES:
        name = page.removesuffix(".md")
        html = site / ("index.html" if name == "index" else f"{name}/index.html")
        assert html.is_file(), page
    # every page in docs/ was rendered (pages of other stages included)
    for md in DOCS.glob("*.md"):
        name = md.stem
        assert (site / ("index.html" if name == "index" else f"{name}/index.html")).is_file()
    assert not (site / "gen_schemas.py").exists() and not (site / "hooks.py").exists()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# t\n\nSee [missing](nowhere.md).\n")
    cfg = tmp_path / "mkdocs.yml"
    cfg.write_text("site_name: t\ndocs_dir: docs\n")
    proc = _build(cfg, tmp_path / "site")
    assert proc.returncode != 0
    assert "nowhere.md" in proc.stdout + proc.stderr


def _keys(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for name, sub in (schema.get("properties") or {}).items():
        out.append(prefix + name)
        if isinstance(sub, dict):
            if sub.get("properties"):
                out += _keys(sub, prefix + name + ".")
            elif isinstance(sub.get("items"), dict) and sub["items"].get("properties"):
                out += _keys(sub["items"], prefix + name + "[].")
    for defs in ("$defs", "definitions"):
        for sub in (schema.get(defs) or {}).values():
            if isinstance(sub, dict) and sub.get("properties"):
                out += _keys(sub)
    return out


def test_schema_page_covers_every_schema_key(site):
    html = (site / "schemas" / "index.html").read_text()
    schemas = sorted((REPO / "schemas").glob("*.json"))
    assert schemas, "schemas/ is empty"
    for path in schemas:
        doc = json.loads(path.read_text())
        assert path.name in html
        if doc.get("title"):
            assert doc["title"].replace("&", "&amp;") in html
        for key in _keys(doc):
            assert f"<code>{key}</code>" in html, f"{path.name}: {key} missing from schemas page"
        # descriptions come out literally (no <tag> swallowed, no _emphasis_)
        text = " ".join(html.split())
        for desc in _descriptions(doc):
            if "`" in desc:
                continue
            want = escape(" ".join(desc.split()).rstrip("."), quote=False)
            assert want in text, f"{path.name}: description {desc!r} mangled on the schemas page"


def _descriptions(schema: dict) -> list[str]:
    out = []
    for sub in (schema.get("properties") or {}).values():
        if isinstance(sub, dict):
            if isinstance(sub.get("description"), str):
                out.append(sub["description"])
            out += _descriptions(sub)
            if isinstance(sub.get("items"), dict):
                out += _descriptions(sub["items"])
    return out


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def _command_lines(block: str) -> list[str]:
    """The xsa-enhance invocations in a code block (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        tokens = line.split()
        for i, tok in enumerate(tokens):
            if tok == "xsa-enhance" or tok.endswith("/xsa-enhance"):
                if i == 0 or tokens[i - 1] in ("&&", "|", ";", "sudo", "exec", "then"):
                    lines.append(" ".join(["xsa-enhance"] + tokens[i + 1 :]))
    return lines


def _check_command(line: str) -> None:
    tokens = shlex.split(line.replace("...", ""))
    assert tokens[0] == "xsa-enhance"
    cmd: click.Command = cli
    opts = {o for p in cli.params for o in p.opts + p.secondary_opts}
    path = ["xsa-enhance"]
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("|", ">", "&&", ";", "&", ">>", "2>&1"):
            break
        if tok.startswith("-"):
            name = tok.split("=", 1)[0]
            assert name in opts, f"{' '.join(path)}: no option {name} (in: {line})"
            param = next(p for p in (cmd.params + (cli.params if cmd is cli else [])) if name in p.opts + p.secondary_opts)
            if isinstance(param, click.Option) and not param.is_flag and not param.count and "=" not in tok:
                i += param.nargs
        elif isinstance(cmd, click.Group):
            sub = cmd.get_command(click.Context(cmd), tok)
            assert sub is not None, f"{' '.join(path)}: no command {tok!r} (in: {line})"
            cmd = sub
            path.append(tok)
            opts = {o for p in cmd.params for o in p.opts + p.secondary_opts} | {"-h", "--help"}
        i += 1
    assert cmd is not cli or {"--version", "--help", "-h"} & set(tokens), f"no command in: {line}"


def _own_text() -> str:
    return "\n".join((DOCS / p).read_text() for p in OWN_PAGES if (DOCS / p).exists())


def test_documented_commands_exist():
    lines = [l for b in _code_blocks(_own_text()) for l in _command_lines(b)]
    assert len(lines) >= 10
    problems = []
    for line in lines:
        try:
            _check_command(line)
        except AssertionError as exc:
            problems.append(str(exc).splitlines()[0])
    assert problems == []


def test_documented_make_targets_and_deploy_paths_exist():
    text = _own_text()
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    code = "\n".join(_code_blocks(text))
    for target in set(re.findall(r"^\s*make ([\w-]+)", code, re.M)):
        assert target in targets, f"make {target} is documented but not in the Makefile"
    for rel in set(re.findall(r"\b((?:deploy|pipelines|schemas)/[\w./-]+\w)", text)):
        if "*" in rel:
            continue
        assert (REPO / rel).exists(), f"{rel} is documented but does not exist"


def test_documented_python_imports_work():
    text = _own_text()
    imports = re.findall(r"^from (xsa_enhance[\w.]*) import ([\w, ]+)$", text, re.M)
    assert imports
    for module, names in imports:
        mod = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(mod, name.strip()), f"{module}.{name.strip()}"


def test_gen_schemas_script_writes_the_page(tmp_path):
    out = tmp_path / "schemas.md"
    subprocess.run([sys.executable, str(DOCS / "gen_schemas.py"), str(out)], check=True)
    text = out.read_text()
    assert text.startswith("# Catalog and product schemas")
    for path in sorted((REPO / "schemas").glob("*.json")):
        assert f"schemas/{path.name}" in text
