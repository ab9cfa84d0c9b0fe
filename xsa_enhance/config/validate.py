"""Validating configuration, pipeline and metadata files against the project's JSON Schemas.

:func:`validate_file` reads a YAML or JSON file, picks the schema from the file's kind (see
:func:`detect_schema`) and reports *every* error, each with its location: the JSON path inside
the document (``$.stages[1].model``) and, where the file has one, the line and column.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xsa_enhance.config.schemas import available_schemas, load_schema, schema_registry
from xsa_enhance.errors import ConfigError, InputFileError

__all__ = [
    "ValidationIssue",
    "validate_data",
    "validate_file",
    "detect_schema",
    "load_validated",
    "read_document",
    "METASCHEMA",
]

logger = logging.getLogger(__name__)

#: Pseudo schema name: the file is itself a JSON Schema, checked against its metaschema.
METASCHEMA = "json-schema"

_MAX_MESSAGE = 300


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a document.

    Parameters
    ----------
    location : str
        Where in the document: a JSON path such as ``$.stages[1].model`` (``$`` is the root).
    message : str
        What is wrong, in words.
    file : str, optional
        The file the document came from.
    line, column : int, optional
        1-based position in the file, when known.
    """

    location: str
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        return f"{where}{self.location}: {self.message}"


# --------------------------------------------------------------------------------------------
# reading


def _json_path(parts: Sequence[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def read_document(path: str | os.PathLike[str]) -> tuple[Any, Any, list[ValidationIssue]]:
    """Read a YAML or JSON file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    data : object
        The parsed document (``None`` when it could not be parsed).
    node : yaml.Node or None
        The YAML node tree (for line numbers), when available.
    issues : list of ValidationIssue
        Syntax errors and duplicate keys.

    Raises
    ------
    InputFileError
        If the file does not exist or cannot be read.
    """
    p = Path(path)
    name = os.fspath(path)
    if p.is_dir():
        raise InputFileError(p, "is a folder, not a YAML or JSON file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputFileError(p, "no such file") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(p, "not a text file (not UTF-8)") from exc
    except OSError as exc:
        raise InputFileError(p, f"cannot read: {exc.strerror or exc}") from exc

    issues: list[ValidationIssue] = []
    node = None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            issues.append(
                ValidationIssue("$", f"invalid JSON: {exc.msg}", name, exc.lineno, exc.colno)
            )
            return None, None, issues
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            node = None
    else:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            context = getattr(exc, "context", None)
            msg = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
            line = mark.line + 1 if mark is not None else None
            col = mark.column + 1 if mark is not None else None
            issues.append(ValidationIssue("$", msg, name, line, col))
            return None, None, issues
    if node is not None:
        issues.extend(_duplicate_keys(node, (), name))
    return data, node, issues


def _duplicate_keys(node: Any, parts: tuple[Any, ...], name: str) -> Iterator[ValidationIssue]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                if key in seen:
                    yield ValidationIssue(
                        _json_path(parts + (key,)),
                        f"duplicate key {key!r}: only the last value would be used",
                        name,
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                    )
                seen.add(key)
            yield from _duplicate_keys(value_node, parts + (key,), name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, parts + (i,), name)


def _find_node(node: Any, parts: Sequence[Any], *, key: bool = False) -> Any:
    """Deepest YAML node along ``parts`` (the key node of the last part when ``key``)."""
    current = node
    for i, part in enumerate(parts):
        if isinstance(current, yaml.MappingNode):
            nxt = None
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    nxt = key_node if (key and i == len(parts) - 1) else value_node
            if nxt is None:
                return current
            current = nxt
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                return current
            current = current.value[part]
        else:
            return current
    return current


# --------------------------------------------------------------------------------------------
# schema choice


def _schema_matches_kind(doc: Mapping[str, Any], kind: str) -> bool:
    prop = (doc.get("properties") or {}).get("kind")
    if not isinstance(prop, Mapping):
        return False
    if prop.get("const") == kind:
        return True
    enum = prop.get("enum")
    return isinstance(enum, list) and kind in enum


def _is_metaschema_uri(value: str) -> bool:
    return "json-schema.org/" in value


def detect_schema(data: Any, *, path: str | os.PathLike[str] | None = None) -> str:
    """Pick the schema that applies to a document.

    In this order: the document's ``$schema`` (a project schema's name, file name or ``$id``;
    a json-schema.org metaschema URI means the file *is* a JSON Schema and is checked against
    its metaschema); the document's ``kind`` (the schema of that name, or whose ``kind``
    property has that ``const``/``enum``); a file under a ``pipelines/`` folder is a
    ``pipeline``; ``*.schema.json`` files are JSON Schemas; otherwise the single project schema
    the document satisfies.

    Parameters
    ----------
    data : object
        The parsed document.
    path : str or os.PathLike, optional
        Where it came from (for the folder/name rules and messages).

    Returns
    -------
    str
        A schema name from :func:`~xsa_enhance.config.available_schemas`, or
        :data:`METASCHEMA`.

    Raises
    ------
    InputFileError
        If no rule applies; the message lists the known schemas.
    """
    label = os.fspath(path) if path is not None else "<document>"
    try:
        schemas = available_schemas()
    except ConfigError:
        schemas = {}
    docs: dict[str, dict[str, Any]] = {}
    for name, file in schemas.items():
        try:
            docs[name] = load_schema(file)
        except InputFileError as exc:
            logger.warning("ignoring unreadable schema %s: %s", file, exc.reason)

    if isinstance(data, Mapping):
        declared = data.get("$schema")
        if isinstance(declared, str):
            if _is_metaschema_uri(declared):
                return METASCHEMA
            base = declared.split("#", 1)[0]
            for name, doc in docs.items():
                ids = {name, schemas[name].name, str(doc.get("$id", ""))}
                if base in ids or base.rstrip("/").rsplit("/", 1)[-1] in ids:
                    return name
            raise InputFileError(
                label, f"$schema {declared!r} names no known schema (known: {', '.join(docs)})"
            )
        kind = data.get("kind")
        if isinstance(kind, str):
            if kind in docs:
                return kind
            for name, doc in docs.items():
                if _schema_matches_kind(doc, kind):
                    return name
    if path is not None:
        p = Path(path)
        if p.name.endswith(".schema.json"):
            return METASCHEMA
        if p.parent.name == "pipelines" and "pipeline" in docs:
            return "pipeline"
    matching = [
        name
        for name, doc in docs.items()
        if _constrains_root(doc) and not _schema_problems(data, doc)
    ]
    if len(matching) == 1:
        return matching[0]
    known = ", ".join(docs) or "none found"
    hint = f"it satisfies several ({', '.join(matching)})" if matching else "it satisfies none"
    raise InputFileError(
        label,
        f"cannot tell which schema applies ({hint}); name one with --schema (known: {known})",
    )


_ANNOTATIONS = {"$schema", "$id", "$defs", "definitions", "title", "description", "$comment"}


def _constrains_root(doc: Mapping[str, Any]) -> bool:
    """False for library schemas that only hold ``$defs`` for others to reference."""
    return any(key not in _ANNOTATIONS for key in doc)


def _schema_problems(data: Any, schema: Mapping[str, Any]) -> bool:
    try:
        validator = _validator(schema)
        return next(iter(validator.iter_errors(data)), None) is not None
    except Exception:  # noqa: BLE001 - a broken schema simply does not match
        return True


# --------------------------------------------------------------------------------------------
# validation


def _validator(schema: Mapping[str, Any]) -> Any:
    from jsonschema import validators

    cls = validators.validator_for(schema)
    return cls(schema, registry=schema_registry(), format_checker=cls.FORMAT_CHECKER)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _extra_keys(error: Any) -> list[str]:
    instance = error.instance
    schema = error.schema
    if not isinstance(instance, Mapping) or not isinstance(schema, Mapping):
        return []
    props = schema.get("properties") or {}
    patterns = list((schema.get("patternProperties") or {}).keys())
    extras = []
    for key in instance:
        if key in props or any(re.search(p, key) for p in patterns):
            continue
        extras.append(key)
    return extras


def _issues_from_error(error: Any) -> Iterator[tuple[tuple[Any, ...], str, bool]]:
    """Yield ``(path, message, points_at_key)`` for one jsonschema error."""
    path = tuple(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        extras = _extra_keys(error) if error.validator == "additionalProperties" else []
        if extras:
            allowed = sorted((error.schema.get("properties") or {}).keys())
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            for key in extras:
                yield path + (key,), f"unexpected key {key!r}{hint}", True
            return
    if error.validator in ("oneOf", "anyOf") and error.context:
        from jsonschema.exceptions import best_match

        best = best_match(error.context)
        sub_path = path + tuple(best.relative_path)
        yield sub_path, _short(best.message), False
        return
    yield path, _short(error.message), False


def validate_data(
    data: Any,
    *,
    schema: str | os.PathLike[str] | Mapping[str, Any],
    source: str | os.PathLike[str] | None = None,
    node: Any = None,
) -> list[ValidationIssue]:
    """Validate a parsed document and return every problem.

    Parameters
    ----------
    data : object
        The document (mapping, list, scalars).
    schema : str, os.PathLike or mapping
        A schema name/path for :func:`~xsa_enhance.config.load_schema`, the schema itself, or
        :data:`METASCHEMA` to check that ``data`` is a valid JSON Schema.
    source : str or os.PathLike, optional
        File name to put in the issues.
    node : yaml.Node, optional
        The document's YAML node tree, for line and column numbers.

    Returns
    -------
    list of ValidationIssue
        Empty when the document is valid; sorted by position.
    """
    from jsonschema import validators

    name = os.fspath(source) if source is not None else None
    if isinstance(schema, Mapping):
        schema_doc = dict(schema)
    elif os.fspath(schema) == METASCHEMA:
        if not isinstance(data, Mapping):
            return [ValidationIssue("$", "a JSON Schema must be a mapping", name, 1, 1)]
        cls = validators.validator_for(data)
        schema_doc = cls.META_SCHEMA
    else:
        schema_doc = load_schema(schema)
    try:
        validator = _validator(schema_doc)
        errors = list(validator.iter_errors(data))
    except Exception as exc:  # noqa: BLE001 - a broken schema is reported, not raised
        from jsonschema.exceptions import SchemaError, _RefResolutionError
        from referencing.exceptions import Unresolvable

        if isinstance(exc, (SchemaError, Unresolvable, _RefResolutionError)):
            return [ValidationIssue("$", f"the schema itself is unusable: {_short(str(exc))}", name)]
        raise
    issues = []
    for error in errors:
        for path, message, at_key in _issues_from_error(error):
            line = col = None
            if node is not None:
                found = _find_node(node, path, key=at_key)
                if found is not None:
                    line, col = found.start_mark.line + 1, found.start_mark.column + 1
            issues.append(ValidationIssue(_json_path(path), message, name, line, col))
    issues.sort(key=lambda i: (i.line or 0, i.column or 0, i.location, i.message))
    return issues


def validate_file(
    path: str | os.PathLike[str], *, schema: str | os.PathLike[str] | None = None
) -> list[ValidationIssue]:
    """Validate a YAML or JSON file and return every problem with its location.

    Parameters
    ----------
    path : str or os.PathLike
        The file (``.yaml``, ``.yml``, ``.json``).
    schema : str or os.PathLike, optional
        Schema name or path; by default chosen from the file's kind (:func:`detect_schema`).

    Returns
    -------
    list of ValidationIssue
        Syntax errors, duplicate keys and schema violations; empty when the file is valid.

    Raises
    ------
    InputFileError
        If the file cannot be read, or no schema applies and none was given.
    ConfigError
        If the named schema does not exist.
    """
    data, node, issues = read_document(path)
    if data is None and issues:
        return issues
    if schema is None:
        schema = detect_schema(data, path=path)
    logger.debug("validating %s against %s", path, schema)
    issues.extend(validate_data(data, schema=schema, source=path, node=node))
    issues.sort(key=lambda i: (i.line or 0, i.column or 0, i.location, i.message))
    return issues


def load_validated(
    path: str | os.PathLike[str], *, schema: str | os.PathLike[str] | None = None
) -> Any:
    """Read a YAML/JSON configuration file, validate it, and return its content.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    schema : str or os.PathLike, optional
        Schema name or path; by default chosen from the file's kind.

    Returns
    -------
    object
        The parsed document.

    Raises
    ------
    ConfigError
        If it has any problem; the one-line message names the file and lists every issue.
    InputFileError
        If it cannot be read or its kind cannot be told.
    """
    issues = validate_file(path, schema=schema)
    if issues:
        listed = "; ".join(str(i) for i in issues)
        raise ConfigError(f"{os.fspath(path)}: {len(issues)} problem(s): {listed}")
    data, _, _ = read_document(path)
    return data
