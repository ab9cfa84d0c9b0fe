"""Named, versioned network weights: saving, the registry, and safe loading.

Weight files (:mod:`xsa_enhance.models.weights_file`: :func:`save_weights` writes them) hold
only plain data and tensors and are read with ``torch.load(weights_only=True)``; a file that
needs anything else (e.g. a malicious pickle that would run code) is refused with
:class:`InputFileError`.

The registry is ``registry.json`` in a weights directory (by default the ``xsa_enhance/weights``
folder shipped inside the package; the environment variable ``XSA_ENHANCE_WEIGHTS_DIR`` or the
``registry_dir`` keyword select another one)::

    {"format_version": 1, "models": [{"name": "xmm-superres", "version": 1, "kind": "sr",
      "file": "xmm-superres-v1.pt", "sha256": "...", "config": {...}, "card": {...}}, ...]}

A model is addressed as ``NAME-vN`` (one version), ``NAME`` (an alias: the newest version
trained for the requested clamp mode family; e.g. the aliases ``xmm-superres`` and
``xmm-denoise``) or by the path of a weight file. The sha256 of a
registered file is checked before it is unpickled; for a file given by path, the sidecar
``FILE.sha256`` written by :func:`save_weights` is checked when present.

Config keys used by the inference engine (defaults in brackets): ``filters`` [32],
``blocks`` [4], ``growth`` [32], ``exposure_channel`` [False], ``input_exposure_s`` [20000],
``target_exposure_s`` [SR 100000, DN 50000], ``stretch`` ["sqrt"], ``clamp`` ["constant"],
``pad_shape`` [[416, 416]], ``output_clamp_ratio`` [the paper's ``1 / factor**2``: SR 0.25, DN 1;
see :func:`xsa_enhance.models.normalise.output_clamp_ratio`].

Clamp families
--------------
Weights are trained for one clamp mode (config ``clamp``: ``constant``, ``quantile:q`` or
``none``); its *family* is the mode without its parameter (:func:`clamp_family`). An alias
resolves to the newest version of the family of the clamp it will run with
(:func:`resolve_model`, ``clamp=None`` meaning the default family ``constant``); an explicit
version or a weight file run with a clamp of another family is refused by :func:`load_model`
unless ``allow_clamp_mismatch=True`` (such weights invent sources outside their mode).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from xsa_enhance.atomicio import write_text_atomic
from xsa_enhance.errors import ConfigError, InputFileError, XsaError
from xsa_enhance.models.networks import build_network
from xsa_enhance.models.weights_file import (
    DEFAULT_CONFIG,
    WEIGHTS_FORMAT,
    file_sha256,
    full_config,
    plain_json,
    read_weights_file,
    save_weights,
)

if TYPE_CHECKING:
    from xsa_enhance.models.normalise import ClampSpec

__all__ = [
    "WEIGHTS_FORMAT",
    "DEFAULT_CONFIG",
    "LoadedModel",
    "ModelEntry",
    "clamp_family",
    "clamp_mismatch_message",
    "default_registry_dir",
    "file_sha256",
    "save_weights",
    "register_weights",
    "list_models",
    "resolve_model",
    "is_model_path",
    "load_model",
]

logger = logging.getLogger(__name__)

_REGISTRY_FILE = "registry.json"
_REGISTRY_FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_VERSIONED_RE = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")



def clamp_family(spec: "str | ClampSpec") -> str:
    """The clamp mode family of a clamp specification.

    Parameters
    ----------
    spec : str or ClampSpec
        ``constant``, ``constant:V``, ``quantile:q``, ``none`` (or a parsed ClampSpec).

    Returns
    -------
    str
        ``"constant"``, ``"quantile"`` or ``"none"``.

    Raises
    ------
    ConfigError
        An invalid specification.
    """
    from xsa_enhance.models.normalise import ClampSpec

    return ClampSpec.parse(spec).mode


def _config_family(config: dict[str, Any]) -> str:
    return clamp_family(config.get("clamp") or "constant")


def clamp_mismatch_message(name: str, trained: str, requested: str, *,
                           alias: str | None = None,
                           flag: str = "--allow-clamp-mismatch") -> str:
    """The one-line refusal of weights run with a clamp of another family.

    Parameters
    ----------
    name : str
        The weights (``xmm-superres-v5`` or a file name).
    trained, requested : str
        The trained and the requested clamp families.
    alias : str, optional
        The alias that would resolve matched weights (registered weights).
    flag : str
        How the user allows the mismatch (CLI flag or pipeline key).
    """
    how = (f"use the alias {alias} to get matched weights" if alias
           else "use weights trained for that mode")
    return (f"{name} was trained for clamp mode {trained!r}, not {requested!r}; "
            f"{how}, or {flag}")


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry.

    Parameters
    ----------
    name : str
        Base name (``xmm-superres``).
    version : int
        Version number; ``id`` is ``f"{name}-v{version}"``.
    kind : str
        ``"sr"`` or ``"dn"``.
    file : str
        Weight file name, relative to the registry directory.
    sha256 : str
        Hex digest of the file.
    config, card : dict
        Network/inference configuration and model card.
    """

    name: str
    version: int
    kind: str
    file: str
    sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``NAME-vVERSION``."""
        return f"{self.name}-v{self.version}"

    @property
    def clamp_family(self) -> str:
        """Clamp mode family the weights were trained for (config ``clamp``, default
        ``constant``)."""
        return _config_family(self.config)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "version": self.version, "kind": self.kind,
                "file": self.file, "sha256": self.sha256, "config": self.config,
                "card": self.card}


@dataclass
class LoadedModel:
    """A network ready for inference, with its provenance.

    Parameters
    ----------
    name : str
        Registry id (``xmm-superres-v1``) or the file name for unregistered weights.
    kind : str
        ``"sr"`` or ``"dn"``.
    sha256 : str
        Digest of the weight file.
    network : torch.nn.Module
        The network, in eval mode.
    config, card : dict
        Full configuration (defaults filled in) and model card.
    factor : int
        Output grid factor (2 for SR, 1 for DN).
    input_exposure_s, target_exposure_s : float
        Exposure the model expects and the exposure its output represents.
    stretch, clamp : str
        Default stretch and clamp.
    path : pathlib.Path, optional
        Weight file.
    """

    name: str
    kind: str
    sha256: str
    network: nn.Module
    config: dict[str, Any]
    card: dict[str, Any]
    factor: int
    input_exposure_s: float
    target_exposure_s: float
    stretch: str
    clamp: str
    path: Path | None = None

    @property
    def clamp_family(self) -> str:
        """Clamp mode family the weights were trained for (``constant``, ``quantile``,
        ``none``)."""
        return clamp_family(self.clamp or "constant")

    @property
    def receptive_radius(self) -> int:
        """Receptive-field radius of the network in input pixels."""
        from xsa_enhance.models.networks import receptive_radius

        return receptive_radius(int(self.config["blocks"]))

    @property
    def exposure_channel(self) -> bool:
        """Whether the network takes the exposure channel."""
        return bool(self.config.get("exposure_channel", False))

    @property
    def output_clamp_ratio(self) -> float:
        """Clamp value of the network output over that of its input (config key, or 1/factor²)."""
        from xsa_enhance.models.normalise import output_clamp_ratio

        return output_clamp_ratio(self.factor, self.config.get("output_clamp_ratio"))

    @property
    def pad_shape(self) -> tuple[int, int]:
        """Shape the 1x frame is padded to."""
        ps = self.config.get("pad_shape") or [416, 416]
        return int(ps[0]), int(ps[1])


def default_registry_dir() -> Path:
    """The weights directory: ``$XSA_ENHANCE_WEIGHTS_DIR`` or the package's ``weights``."""
    env = os.environ.get("XSA_ENHANCE_WEIGHTS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "weights"


def _read_registry(directory: Path) -> list[ModelEntry]:
    reg = directory / _REGISTRY_FILE
    if not reg.exists():
        return []
    try:
        data = json.loads(reg.read_text())
        return [ModelEntry(**m) for m in data.get("models", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputFileError(reg, f"corrupt weights registry: {exc}") from exc


def _write_registry(directory: Path, entries: list[ModelEntry]) -> None:
    doc = {"format_version": _REGISTRY_FORMAT_VERSION,
           "models": [e.as_dict() for e in entries]}
    write_text_atomic(directory / _REGISTRY_FILE, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def list_models(*, registry_dir: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """Registered weights, sorted by name and version.

    Parameters
    ----------
    registry_dir : path-like, optional
        Weights directory (default :func:`default_registry_dir`).

    Returns
    -------
    list of ModelEntry
    """
    directory = Path(registry_dir) if registry_dir is not None else default_registry_dir()
    return sorted(_read_registry(directory), key=lambda e: (e.name, e.version))


def register_weights(
    path: str | os.PathLike[str],
    *,
    name: str,
    kind: str,
    config: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
    registry_dir: str | os.PathLike[str] | None = None,
) -> ModelEntry:
    """Copy a weight file into the registry as a new version.

    Parameters
    ----------
    path : path-like
        A file written by :func:`save_weights`.
    name : str
        ``NAME`` (next free version) or ``NAME-vN`` (that version; must be new).
    kind : {"sr", "dn"}
        Must match the file.
    config, card : dict, optional
        Override the config / card stored in the file (default: those in the file).
    registry_dir : path-like, optional
        Weights directory (default :func:`default_registry_dir`).

    Returns
    -------
    ModelEntry
        The new entry (``entry.id`` is the name to load it by).
    """
    src = Path(path)
    payload = read_weights_file(src)
    if payload["kind"] != kind:
        raise InputFileError(src, f"holds {payload['kind']!r} weights, not {kind!r}")
    m = _VERSIONED_RE.match(name)
    base, version = (m["base"], int(m["version"])) if m else (name, None)
    if not _NAME_RE.match(base):
        raise ConfigError(f"invalid model name {name!r}: use lower-case letters, digits, -_.")
    directory = Path(registry_dir) if registry_dir is not None else default_registry_dir()
    directory.mkdir(parents=True, exist_ok=True)
    entries = _read_registry(directory)
    used = [e.version for e in entries if e.name == base]
    if version is None:
        version = max(used, default=0) + 1
    elif version in used:
        raise ConfigError(f"{base}-v{version} is already registered in {directory}")
    fname = f"{base}-v{version}.pt"
    shutil.copyfile(src, directory / fname)
    digest = file_sha256(directory / fname)
    full = full_config(kind, config if config is not None else payload["config"])
    entry = ModelEntry(
        name=base, version=version, kind=kind, file=fname, sha256=digest,
        config=plain_json(full, "config"),
        card=plain_json(card if card is not None else payload.get("card", {}), "card"),
    )
    _write_registry(directory, entries + [entry])
    logger.info("registered %s (%s, sha256 %s) in %s", entry.id, kind, digest, directory)
    return entry


def resolve_model(
    name: str,
    *,
    clamp: "str | ClampSpec | None" = None,
    registry_dir: str | os.PathLike[str] | None = None,
) -> ModelEntry:
    """Find the registry entry for ``NAME-vN``, or for the alias ``NAME`` and a clamp mode.

    Parameters
    ----------
    name : str
        ``NAME-vN`` (that entry, whatever ``clamp`` says: :func:`load_model` checks it) or
        ``NAME`` (the newest version trained for the clamp family of ``clamp``).
    clamp : str or ClampSpec, optional
        The clamp the weights will run with (default: the family ``constant``, the default
        mode).
    registry_dir : path-like, optional
        Weights directory (default :func:`default_registry_dir`).

    Returns
    -------
    ModelEntry

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known names), or no version of ``NAME`` trained
        for the family of ``clamp`` (the message names the families that have weights).
    """
    entries = list_models(registry_dir=registry_dir)
    for e in entries:
        if e.id == name:
            return e
    versions = [e for e in entries if e.name == name]
    if versions:
        family = clamp_family(clamp if clamp is not None else "constant")
        matched = [e for e in versions if e.clamp_family == family]
        if matched:
            return max(matched, key=lambda e: e.version)
        trained = sorted({e.clamp_family for e in versions})
        raise ConfigError(f"no {name} weights trained for clamp mode {family!r}; "
                          f"trained modes: {', '.join(trained)}")
    known = sorted({e.id for e in entries} | {e.name for e in entries})
    listing = ", ".join(known) if known else "none registered yet"
    raise ConfigError(f"unknown model {name!r}; known models: {listing} (or give a .pt path)")


def is_model_path(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether :func:`load_model` takes ``name_or_path`` as a file (not a registry name)."""
    text = os.fspath(name_or_path)
    as_path = Path(text)
    return as_path.suffix in (".pt", ".pth") or as_path.is_file() or os.sep in text


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    clamp: "str | ClampSpec | None" = None,
    allow_clamp_mismatch: bool = False,
    device: str | torch.device | None = None,
    sha256: str | None = None,
    registry_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load registered weights (by name) or a weight file (by path).

    Parameters
    ----------
    name_or_path : str or path-like
        ``NAME-vN``, ``NAME`` (an alias, e.g. ``xmm-superres``: the newest version trained
        for the clamp family of ``clamp``), or a ``.pt`` path.
    clamp : str or ClampSpec, optional
        The clamp the model will run with. For an alias it selects the weights (default: the
        ``constant`` family); for an explicit version or a path it is checked against the
        mode the weights were trained for.
    allow_clamp_mismatch : bool
        Load an explicit version or a file even when ``clamp`` is of another family.
    device : str or torch.device, optional
        Where to put the network (default CPU).
    sha256 : str, optional
        Expected digest of a file given by path (default: its ``.sha256`` sidecar if any).
    registry_dir : path-like, optional
        Weights directory (default :func:`default_registry_dir`).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ConfigError
        Unknown model name, an alias without weights for the clamp family, or weights of
        another clamp family (one line, unless ``allow_clamp_mismatch``).
    InputFileError
        Missing file, sha256 mismatch, unsafe or malformed file.
    """
    text = os.fspath(name_or_path)
    as_path = Path(text)
    entry: ModelEntry | None = None
    requested = clamp_family(clamp) if clamp is not None else None
    if is_model_path(text):
        path = as_path
        expected = sha256
        sidecar = path.with_name(path.name + ".sha256")
        if expected is None and sidecar.is_file():
            expected = sidecar.read_text().split()[0] if sidecar.read_text().split() else None
        display = path.name
    else:
        entry = resolve_model(text, clamp=clamp, registry_dir=registry_dir)
        if (requested is not None and entry.clamp_family != requested
                and not allow_clamp_mismatch):
            raise ConfigError(clamp_mismatch_message(entry.id, entry.clamp_family, requested,
                                                     alias=entry.name))
        directory = Path(registry_dir) if registry_dir is not None else default_registry_dir()
        path = directory / entry.file
        expected = entry.sha256
        display = entry.id
    if not path.is_file():
        raise InputFileError(path, "weight file not found")
    digest = file_sha256(path)
    if expected is not None and digest.lower() != expected.lower():
        raise InputFileError(
            path, f"sha256 mismatch: expected {expected}, file has {digest} "
                  "(corrupt or replaced weights; refusing to load)"
        )
    if expected is None:
        logger.warning("loading unregistered weights %s without a checksum (sha256 %s)",
                       path, digest)
    payload = read_weights_file(path)
    kind = payload["kind"]
    config = full_config(kind, entry.config if entry else payload.get("config", {}))
    card = entry.card if entry else payload.get("card", {})
    if entry is None and requested is not None and not allow_clamp_mismatch:
        trained = _config_family(config)
        if trained != requested:
            raise ConfigError(clamp_mismatch_message(display, trained, requested))
    try:
        net = build_network(
            kind, filters=int(config["filters"]), blocks=int(config["blocks"]),
            growth=int(config["growth"]), exposure_channel=bool(config["exposure_channel"]),
        )
        net.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(path, f"weights do not fit the {kind} network in its config: "
                                   f"{str(exc).splitlines()[0]}") from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if device is not None:
        net.to(torch.device(device))
    if config.get("output_clamp_ratio") is not None:
        from xsa_enhance.models.normalise import output_clamp_ratio

        try:
            output_clamp_ratio(int(net.factor), config["output_clamp_ratio"])
        except ConfigError as exc:
            raise InputFileError(path, str(exc)) from exc
    try:
        return LoadedModel(
            name=display, kind=kind, sha256=digest, network=net, config=config, card=card,
            factor=int(net.factor), input_exposure_s=float(config["input_exposure_s"]),
            target_exposure_s=float(config["target_exposure_s"]),
            stretch=str(config["stretch"]), clamp=str(config["clamp"]), path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:  # pragma: no cover - defaults fill keys
        raise XsaError(f"{path}: incomplete model config: {exc}") from exc
