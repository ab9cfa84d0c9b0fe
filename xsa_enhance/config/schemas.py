"""Finding and loading the project's JSON Schemas.

Where the schemas are found, first match wins:

1. the folder named by the environment variable ``XSA_ENHANCE_SCHEMAS``;
2. ``xsa_enhance/schemas`` inside the installed package (package data; in a source checkout
   this is a symbolic link to the top-level ``schemas/`` folder);
3. the top-level ``schemas/`` folder of the source checkout the package was imported from.

A schema's *name* is its file name without ``.schema.json`` / ``.json``
(``schemas/pipeline.schema.json`` is ``pipeline``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from xsa_enhance.errors import ConfigError, InputFileError

__all__ = ["schema_dir", "available_schemas", "load_schema", "schema_name", "schema_registry"]

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENV_VAR = "XSA_ENHANCE_SCHEMAS"


def _candidates() -> list[Path]:
    out = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append(Path(env))
    out.append(_PACKAGE_DIR / "schemas")
    out.append(_PACKAGE_DIR.parent / "schemas")
    return out


def schema_dir() -> Path:
    """Return the folder the JSON Schemas are read from.

    Returns
    -------
    pathlib.Path
        The first existing folder among ``$XSA_ENHANCE_SCHEMAS``, the package's ``schemas``
        data folder and the source checkout's top-level ``schemas/``.

    Raises
    ------
    ConfigError
        If none of them exists.
    """
    env = os.environ.get(ENV_VAR)
    if env and not Path(env).is_dir():
        raise ConfigError(f"{ENV_VAR}={env}: not a folder")
    for cand in _candidates():
        if cand.is_dir():
            return cand
    tried = ", ".join(str(c) for c in _candidates())
    raise ConfigError(f"no JSON Schema folder found (tried {tried})")


def schema_name(path: str | os.PathLike[str]) -> str:
    """Return the short name of a schema file (``pipeline.schema.json`` -> ``pipeline``).

    Parameters
    ----------
    path : str or os.PathLike
        The schema file.
    """
    name = Path(path).name
    for suffix in (".schema.json", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def available_schemas(*, directory: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Map every schema's short name to its file.

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Folder to list instead of :func:`schema_dir`.

    Returns
    -------
    dict of str to pathlib.Path
        Sorted by name.
    """
    folder = Path(directory) if directory is not None else schema_dir()
    files = sorted(p for p in folder.glob("*.json") if p.is_file())
    return {schema_name(p): p for p in files}


_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _read_json(path: Path) -> dict[str, Any]:
    """Read a schema file (cached on path, size and modification time; a copy is returned)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InputFileError(path, f"cannot read schema: {exc.strerror or exc}") from exc
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        _CACHE[key] = _parse_json(path)
    return copy.deepcopy(_CACHE[key])


def _parse_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(path, f"cannot read schema: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            path, f"schema is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise InputFileError(path, "a JSON Schema must be a JSON object")
    return data


def load_schema(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load one JSON Schema.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A short name (``"pipeline"``), a file name in the schema folder
        (``"pipeline.schema.json"``), a schema ``$id``, or the path of a schema file.

    Returns
    -------
    dict
        The schema document.

    Raises
    ------
    ConfigError
        If no schema of that name exists; the message lists the known names.
    InputFileError
        If the schema file is unreadable or not JSON.
    """
    key = os.fspath(name_or_path)
    direct = Path(key)
    if direct.suffix == ".json" and direct.is_file():
        return _read_json(direct)
    schemas = available_schemas()
    if key in schemas:
        return _read_json(schemas[key])
    by_file = {p.name: p for p in schemas.values()}
    if key in by_file:
        return _read_json(by_file[key])
    for path in schemas.values():
        doc = _read_json(path)
        sid = doc.get("$id")
        if isinstance(sid, str) and (sid == key or sid.rstrip("/").rsplit("/", 1)[-1] == key):
            return doc
    known = ", ".join(schemas) or "none"
    raise ConfigError(f"unknown schema {key!r} (known: {known}; folder {schema_dir()})")


def schema_registry() -> Any:
    """Return a :class:`referencing.Registry` holding every schema under its ``$id`` and file name.

    ``$ref`` between the project's schemas (``"catalog-common.schema.json#/$defs/obsid"``) then
    resolves offline.
    """
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry()
    try:
        schemas = available_schemas()
    except ConfigError:
        return registry
    for path in schemas.values():
        try:
            doc = _read_json(path)
        except InputFileError as exc:
            logger.warning("skipping unreadable schema %s: %s", path, exc.reason)
            continue
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        uris = {path.name, path.resolve().as_uri()}
        if isinstance(doc.get("$id"), str):
            uris.add(doc["$id"])
        for uri in uris:
            registry = registry.with_resource(uri, resource)
    return registry
