"""The weight file format: saving a network with its config and card, and reading it safely.

Weight files are ``torch.save`` dictionaries holding only plain data and tensors::

    {"format": "xsa-enhance-weights", "format_version": 1, "kind": "sr"|"dn",
     "name": ..., "config": {...}, "card": {...}, "state_dict": {...}}

so that they load with ``torch.load(weights_only=True)``; a file that needs anything else
(e.g. a malicious pickle that would run code) is refused with :class:`InputFileError`
(:func:`read_weights_file`). :func:`save_weights` writes one atomically, with a sidecar
``FILE.sha256``. The config keys and their defaults per kind are :data:`DEFAULT_CONFIG`
(described in :mod:`xsa_enhance.models.registry`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xsa_enhance.atomicio import atomic_path, write_text_atomic
from xsa_enhance.errors import ConfigError, InputFileError

__all__ = [
    "WEIGHTS_FORMAT",
    "WEIGHTS_FORMAT_VERSION",
    "DEFAULT_CONFIG",
    "full_config",
    "plain_json",
    "file_sha256",
    "save_weights",
    "read_weights_file",
]

logger = logging.getLogger(__name__)

#: Format marker of a weight file.
WEIGHTS_FORMAT = "xsa-enhance-weights"
#: Version of the weight file layout.
WEIGHTS_FORMAT_VERSION = 1

#: Defaults of the inference-related config keys, per kind.
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "sr": {"filters": 32, "blocks": 4, "growth": 32, "exposure_channel": False,
           "input_exposure_s": 20_000.0, "target_exposure_s": 100_000.0,
           "stretch": "sqrt", "clamp": "constant", "pad_shape": [416, 416]},
    "dn": {"filters": 32, "blocks": 4, "growth": 32, "exposure_channel": False,
           "input_exposure_s": 20_000.0, "target_exposure_s": 50_000.0,
           "stretch": "sqrt", "clamp": "constant", "pad_shape": [416, 416]},
}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise InputFileError(path, f"cannot read weight file: {exc.strerror or exc}") from exc
    return h.hexdigest()


def full_config(kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """A model config with the defaults of its kind filled in (:data:`DEFAULT_CONFIG`).

    Parameters
    ----------
    kind : {"sr", "dn"}
        Model kind (stored as the key ``kind``).
    config : dict or None
        Given keys; they override the defaults.

    Returns
    -------
    dict

    Raises
    ------
    ConfigError
        An unknown kind.
    """
    if kind not in DEFAULT_CONFIG:
        raise ConfigError(f"unknown model kind {kind!r}; expected 'sr' or 'dn'")
    full = dict(DEFAULT_CONFIG[kind])
    full.update(config or {})
    full["kind"] = kind
    return full


def plain_json(obj: Any, what: str) -> Any:
    """A deep copy of ``obj`` made of plain JSON types (a JSON round trip).

    Parameters
    ----------
    obj : Any
        A config or model card.
    what : str
        Its name, for the error message.

    Returns
    -------
    Any

    Raises
    ------
    ConfigError
        ``obj`` is not JSON-serialisable.
    """
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-serialisable: {exc}") from exc


def save_weights(
    network: nn.Module,
    path: str | os.PathLike[str],
    *,
    name: str,
    kind: str,
    config: dict[str, Any],
    card: dict[str, Any],
) -> str:
    """Save a network's weights with its configuration and model card.

    Parameters
    ----------
    network : torch.nn.Module
        A network from :func:`~xsa_enhance.models.networks.build_network`.
    path : path-like
        Output ``.pt`` file; a sidecar ``PATH.sha256`` is written next to it.
    name : str
        Model name (stored in the file).
    kind : {"sr", "dn"}
        Must match the network.
    config : dict
        Inference configuration (see the module docs); the network's architecture
        parameters are added and must agree with any given here.
    card : dict
        Model card (JSON-serialisable): training data, metrics, caveats...

    Returns
    -------
    str
        sha256 hex digest of the written file.
    """
    arch = dict(getattr(network, "config", {}))
    if arch.get("kind") not in (None, kind):
        raise ConfigError(f"network kind {arch.get('kind')!r} does not match kind={kind!r}")
    full = full_config(kind, config)
    for key, val in arch.items():
        if key in (config or {}) and config[key] != val:
            raise ConfigError(f"config {key}={config[key]!r} contradicts the network ({val!r})")
        full[key] = val
    payload = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "name": str(name),
        "kind": kind,
        "config": plain_json(full, "config"),
        "card": plain_json(card or {}, "card"),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    digest = file_sha256(path)
    write_text_atomic(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    logger.info("saved %s weights %r to %s (sha256 %s)", kind, name, path, digest)
    return digest


def read_weights_file(path: Path) -> dict[str, Any]:
    """Read a weight file without running any code it may hold.

    Parameters
    ----------
    path : pathlib.Path
        A file written by :func:`save_weights`.

    Returns
    -------
    dict
        The payload (``format``, ``kind``, ``name``, ``config``, ``card``, ``state_dict``).

    Raises
    ------
    InputFileError
        Missing file, a pickle with Python objects other than plain weights, an unreadable
        file, no format marker, no kind or state_dict.
    """
    if not path.is_file():
        raise InputFileError(path, "weight file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # name the offending global (e.g. "posix.system") but not torch's hint to retry
        # with weights_only=False, which is exactly what must not be done with such a file
        detail = next((ln.strip() for ln in str(exc).splitlines()
                       if "Unsupported global" in ln or "Unsupported operand" in ln), "")
        raise InputFileError(
            path,
            "refused to load: the file contains Python objects other than plain weights "
            "(possibly malicious); only files written by save_weights are accepted"
            + (f" [{detail[:120]}]" if detail else ""),
        ) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise InputFileError(path, f"not a readable torch weight file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise InputFileError(path, "not an xsa-enhance weight file (missing format marker)")
    if payload.get("kind") not in DEFAULT_CONFIG or "state_dict" not in payload:
        raise InputFileError(path, "weight file lacks its kind or state_dict")
    return payload
