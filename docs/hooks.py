"""MkDocs hooks: the schema page from ``schemas/``, and a nav that lists existing pages only."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.xsa_enhance")

_HERE = Path(__file__).resolve().parent


def _gen_module():
    spec = importlib.util.spec_from_file_location("xsa_docs_gen_schemas", _HERE / "gen_schemas.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _prune(items, docs_dir: Path):
    out = []
    for item in items:
        if isinstance(item, dict):
            (title, value), = item.items()
            if isinstance(value, list):
                kept = _prune(value, docs_dir)
                if kept:
                    out.append({title: kept})
            elif isinstance(value, str) and not (docs_dir / value).is_file():
                log.info("nav: leaving out %r, %s does not exist (yet)", title, value)
            else:
                out.append(item)
        elif isinstance(item, str) and not (docs_dir / item).is_file():
            log.info("nav: leaving out %s, it does not exist (yet)", item)
        else:
            out.append(item)
    return out


def on_config(config, **kwargs):
    """Drop nav entries whose page is not in docs/ yet."""
    if config.get("nav"):
        config["nav"] = _prune(config["nav"], Path(config["docs_dir"]))
    return config


def on_page_read_source(page, config, **kwargs):
    """Serve docs/schemas.md freshly rendered from schemas/."""
    if page.file.src_uri == "schemas.md":
        return _gen_module().render_page()
    return None
