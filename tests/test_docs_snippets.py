"""The commands and Python snippets of docs/ run on the demo store, so they cannot drift.

Every fenced block preceded by ``<!-- doc-test: demo-store -->`` in a page of ``docs/`` is
executed here, in a folder holding ``demo-output/store.zarr`` as ``xsa-enhance demo`` writes it
(four simulated observations: three ok -- one without products --, one failing; tiny networks
registered as ``xmm-superres`` / ``xmm-denoise`` for both clamp modes stand in for the shipped
weights, so the products are made in seconds):

* ``bash`` blocks: every ``xsa-enhance`` line runs through the CLI (exit status 0, and a query
  answers rows); ``cd DIR`` changes folder; every FITS file a ``ds9`` line names must exist;
* ``python`` blocks: the blocks of one page run in order in one namespace.
"""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest
from _tiny import tiny_weights
from click.testing import CliRunner

from xsa_enhance.cli.main import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
MARK = "<!-- doc-test: demo-store -->"
FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of every marked fenced block of a page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            m = FENCE.match(lines[j]) if j < len(lines) else None
            assert m, f"{page.name}:{i + 1}: {MARK} is not followed by a fenced block"
            k = j + 1
            while not lines[k].startswith("```"):
                k += 1
            out.append((m.group(1), "\n".join(lines[j + 1:k]) + "\n", j + 2))
            i = k
        i += 1
    return out


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if MARK in p.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo_dir(request, tmp_path_factory):
    """A folder with ``demo-output/`` written by ``xsa-enhance demo`` (tiny networks)."""
    from xsa_enhance.models.registry import load_model, register_weights

    mp = pytest.MonkeyPatch()
    reg = tmp_path_factory.mktemp("doc-registry")
    weights = tmp_path_factory.mktemp("doc-weights")
    mp.setenv("XSA_ENHANCE_WEIGHTS_DIR", str(reg))
    for seed, (name, kind, clamp) in enumerate([
            ("xmm-superres", "sr", "constant"), ("xmm-superres", "sr", "quantile:0.9999"),
            ("xmm-denoise", "dn", "constant"), ("xmm-denoise", "dn", "quantile:0.9999")],
            start=1):
        path = tiny_weights(weights, kind, seed)
        register_weights(path, name=name, kind=kind,
                         config={**load_model(path).config, "clamp": clamp})
    work = tmp_path_factory.mktemp("doc-demo")
    out = work / "demo-output"
    out.mkdir()
    # the simulated archive is reused between sessions (pytest cache folder)
    cache = Path(request.config.cache.mkdir("xsa-doc-demo-archive-v1"))
    (out / "archive").symlink_to(cache, target_is_directory=True)
    mp.chdir(work)
    try:
        res = CliRunner().invoke(main, ["demo", "--out", "demo-output", "--in-process",
                                        "--observations", "4"])
        assert res.exit_code == 0, res.output[-3000:]
    finally:
        mp.chdir(request.config.rootpath)
    yield work
    mp.undo()


def test_the_user_pages_have_tested_snippets():
    pages = {p.name: _blocks(p) for p in _pages()}
    assert {"user-guide.md", "store.md"} <= set(pages)
    langs = [lang for blocks in pages.values() for lang, _, _ in blocks]
    assert langs.count("bash") >= 3 and langs.count("python") >= 4


def _run_bash(code: str, where: str, cwd: Path, monkeypatch) -> int:
    monkeypatch.chdir(cwd)
    ran = 0
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words[0] == "cd":
            monkeypatch.chdir(Path.cwd() / words[1])
        elif words[0] == "ds9":
            files = [w for w in words[1:] if w.endswith(".fits")]
            assert len(files) >= 2, (where, line)
            for pattern in files:
                assert glob.glob(pattern), f"{where}: ds9 names {pattern}, which does not exist"
        elif words[0] == "xsa-enhance":
            res = CliRunner().invoke(main, words[1:])
            assert res.exit_code == 0, f"{where}: {line}\n{res.output[-2000:]}"
            assert "(no rows)" not in res.output, f"{where}: {line} answers no rows"
            ran += 1
        else:
            raise AssertionError(f"{where}: no rule to test the line {line!r}")
    return ran


@pytest.mark.parametrize("page", [p.name for p in _pages()])
def test_page_snippets_run_on_the_demo_store(page, demo_dir, monkeypatch):
    namespace: dict[str, object] = {"__name__": f"doc_{page}"}
    for lang, code, lineno in _blocks(DOCS / page):
        where = f"{page}:{lineno}"
        if lang == "bash":
            assert _run_bash(code, where, demo_dir, monkeypatch) > 0, where
        elif lang == "python":
            monkeypatch.chdir(demo_dir)
            exec(compile(code, where, "exec"), namespace)  # noqa: S102 - our own docs
        else:
            raise AssertionError(f"{where}: marked block in {lang!r}, not bash or python")
