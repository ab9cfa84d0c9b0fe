"""``xsa-enhance validate``: check pipeline, configuration and metadata files against schemas/."""

from __future__ import annotations

import json
from pathlib import Path

import click

from xsa_enhance.config import available_schemas, validate_file
from xsa_enhance.config.store_check import is_product_store, validate_store
from xsa_enhance.config.validate import ValidationIssue
from xsa_enhance.errors import InputFileError

__all__ = ["validate"]

_SUFFIXES = (".yaml", ".yml", ".json")


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir() and (is_product_store(path) or (path / "zarr.json").exists()):
            out.append(path)
        elif path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES))
        else:
            out.append(path)
    return out


def _deep_issues(path: Path, *, skip_root: bool) -> list[ValidationIssue]:
    """The deep check's findings as issues (file: the damaged group or column)."""
    from xsa_enhance.store.integrity import deep_check

    hint = f"run `xsa-enhance repair {path}`"
    out = []
    for f in deep_check(path):
        if f.kind == "root" and skip_root:
            continue
        out.append(ValidationIssue("$", f"{f.describe()}; {hint}", f"{path}/{f.path}"))
    return out


@click.command("validate", short_help="Check files against the JSON Schemas in schemas/.")
@click.argument(
    "files", nargs=-1, type=click.Path(exists=True, file_okay=True, dir_okay=True, path_type=Path)
)
@click.option(
    "--schema",
    default=None,
    metavar="NAME|PATH",
    help="Schema to check against (default: chosen from each file's kind).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output: one line per problem, or a JSON list.",
)
@click.option("--list-schemas", is_flag=True, help="List the known schemas and exit.")
@click.option("--deep", is_flag=True,
              help="For product stores: also re-read every array and catalog column and "
                   "check them against their recorded checksums (missing or damaged chunks).")
def validate(files: tuple[Path, ...], schema: str | None, fmt: str, list_schemas: bool,
             deep: bool) -> None:
    """Check FILE... (YAML or JSON; a folder means its *.yaml/*.yml/*.json files).

    A product store folder is checked whole: every catalog row against
    schemas/catalog-<name>.schema.json and every product's attributes against
    schemas/product-attributes.schema.json. With --deep, every array and catalog column is
    also read back and compared with its checksum; each damaged product, slice, observation
    or catalog column is reported by key (`xsa-enhance repair STORE` fixes them).

    Every problem is reported with its location (file:line:column and the JSON path).
    Exit status 0 when all files are valid, 1 when any has a problem.
    """
    if list_schemas:
        for name, path in available_schemas().items():
            click.echo(f"{name}\t{path}")
        return
    if not files:
        raise click.UsageError("give at least one FILE (or --list-schemas)")
    checked = _expand(files)
    problems: list[ValidationIssue] = []
    bad_files = 0
    for path in checked:
        try:
            if path.is_dir():
                try:
                    issues = validate_store(path)
                except InputFileError as exc:
                    issues = [ValidationIssue("$", exc.reason, exc.path or str(path))]
                if deep:
                    issues.extend(_deep_issues(path, skip_root=bool(issues)))
            else:
                issues = validate_file(path, schema=schema)
        except InputFileError as exc:
            issues = [ValidationIssue("$", exc.reason, str(path))]
        problems.extend(issues)
        if issues:
            bad_files += 1
        if fmt == "text":
            for issue in issues:
                click.echo(str(issue))
            if not issues:
                click.echo(f"{path}: ok")
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "file": i.file,
                        "line": i.line,
                        "column": i.column,
                        "location": i.location,
                        "message": i.message,
                    }
                    for i in problems
                ],
                indent=2,
            )
        )
    click.echo(
        f"{len(checked)} file(s) checked, {len(problems)} problem(s) in {bad_files} file(s)",
        err=True,
    )
    if problems:
        click.get_current_context().exit(1)
