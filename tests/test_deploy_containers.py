"""Container recipes (no container engine here): their content is checked against the repo.

Every COPY/%files source must exist in the repository and survive the .dockerignore, the
package must be installed with the pinned constraints, the shell steps must parse, and the
entry point must be the xsa-enhance command. The package-data decision the images rely on
(schemas shipped inside the wheel) is checked by building a wheel from a copy of the tree.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "deploy" / "containers"
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]


def _pin(name: str) -> str:
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} not pinned")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _ignored(rel: str, patterns: list[str]) -> bool:
    for pat in patterns:
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or rel.split("/")[0] == pat:
            return True
        if pat.startswith("**/") and fnmatch.fnmatch(Path(rel).name, pat[3:]):
            return True
    return False


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile(name):
    path = CONTAINERS / name
    ins = _instructions(path)
    args = {k: v for k, v in (a.split("=", 1) for w, a in ins if w == "ARG" and "=" in a)}
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 1
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], froms[0])
    assert re.fullmatch(r"python:3\.11-slim-\w+", base), base

    ignore = [
        l.strip()
        for l in (CONTAINERS / f"{name}.dockerignore").read_text().splitlines()
        if l.strip() and not l.startswith("#")
    ]
    assert _ignored(".venv/bin/python", ignore) and _ignored(".git/HEAD", ignore)
    copied = []
    for word, a in ins:
        if word == "COPY":
            *sources, dest = a.split()
            for src in sources:
                assert (REPO / src).exists(), f"{name}: COPY source {src} not in the repo"
                assert not _ignored(src, ignore), f"{name}: {src} excluded by the dockerignore"
                copied.append(src)
    for needed in ("xsa_enhance", "schemas", "setup.cfg", "requirements/constraints.txt", "deploy"):
        assert needed in copied, f"{name} does not copy {needed}"

    runs = [a for w, a in ins if w == "RUN"]
    for run in runs:
        subprocess.run(["bash", "-n"], input=run, text=True, check=True)
    installs = [r for r in runs if re.search(r"pip install -c requirements/constraints\.txt \.(\s|$)", r)]
    assert len(installs) == 1, "the package is installed once, with the pinned constraints"
    assert "xsa-enhance --version" in installs[0]

    cpu_index = any("download.pytorch.org/whl/cpu" in r for r in runs)
    assert cpu_index == (name == "Dockerfile")
    if name == "Dockerfile":
        (torch_run,) = [r for r in runs if "whl/cpu" in r]
        assert f'"torch=={_pin("torch")}"' in torch_run
        assert f'"torchvision=={_pin("torchvision")}"' in torch_run
    else:
        env = " ".join(a for w, a in ins if w == "ENV")
        assert "NVIDIA_VISIBLE_DEVICES=all" in env and "compute" in env
        assert any(re.search(r"pip install -c requirements/constraints\.txt torch", r) for r in runs)
        assert "nvidia-cuda-runtime" in (REPO / "requirements" / "constraints.txt").read_text()

    env = " ".join(a for w, a in ins if w == "ENV")
    assert "XSA_ENHANCE_DEPLOY_DIR=/opt/xsa-enhance/deploy" in env
    workdirs = [a for w, a in ins if w == "WORKDIR"]
    assert "/opt/xsa-enhance" in workdirs  # where COPY deploy lands
    (entry,) = [a for w, a in ins if w == "ENTRYPOINT"]
    assert json.loads(entry) == ["xsa-enhance"]
    users = [a for w, a in ins if w == "USER"]
    assert users and users[-1] not in ("root", "0")


def _def_sections(text: str) -> tuple[dict[str, str], dict[str, str]]:
    header, sections, current = {}, {}, None
    for line in text.splitlines():
        if line.startswith("#") and current is None:
            continue
        m = re.match(r"^%(\w+)\s*$", line)
        if m:
            current = m.group(1)
            sections[current] = ""
        elif current is None and ":" in line:
            k, v = line.split(":", 1)
            header[k.strip()] = v.strip()
        elif current is not None:
            sections[current] += line + "\n"
    return header, sections


def test_apptainer_definition():
    header, sec = _def_sections((CONTAINERS / "xsa-enhance.def").read_text())
    assert header["Bootstrap"] == "docker"
    assert re.fullmatch(r"python:3\.11-slim-\w+", header["From"])
    for needed in ("files", "post", "environment", "runscript", "test", "help", "labels"):
        assert needed in sec, needed
    sources = [l.split()[0] for l in sec["files"].splitlines() if l.strip()]
    for src in sources:
        assert (REPO / src).exists(), f"%files source {src} not in the repo"
    assert {"xsa_enhance", "schemas", "deploy", "requirements/constraints.txt"} <= set(sources)
    for name in ("post", "runscript", "test", "environment"):
        subprocess.run(["bash", "-n"], input=sec[name], text=True, check=True)
    assert re.search(r"pip install -c requirements/constraints\.txt \.$", sec["post"], re.M)
    assert re.search(r'^\s*exec xsa-enhance "\$@"\s*$', sec["runscript"], re.M)
    assert "XSA_ENHANCE_DEPLOY_DIR=/opt/xsa-enhance/deploy" in sec["environment"]


def _need_local_wheel_build() -> None:
    """Skip unless this environment can build a wheel offline (no build isolation)."""
    from importlib import metadata, util

    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        pytest.skip("setuptools is not installed in this environment")
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) < (70, 1) and util.find_spec("wheel") is None:
        pytest.skip(f"setuptools {version} needs the 'wheel' package to build wheels offline")


def test_wheel_ships_the_schemas(tmp_path):
    """`pip install .` (what the images run) puts schemas/*.json inside the package."""
    _need_local_wheel_build()
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "weights")
    shutil.copytree(REPO / "xsa_enhance", src / "xsa_enhance", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "schemas", src / "schemas")
    assert (src / "xsa_enhance" / "schemas").is_symlink()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel"), str(src)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"xsa_enhance/schemas/{p.name}" for p in (REPO / "schemas").glob("*.json")}
    assert expected and expected <= names
    assert "xsa_enhance/config/validate.py" in names
