"""Weights: save/load, registry versions and aliases, sha256 checks, unsafe pickles refused."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest
import torch

from xsa_enhance.errors import ConfigError, InputFileError
from xsa_enhance.models.networks import build_network
from xsa_enhance.models.registry import (
    default_registry_dir,
    list_models,
    load_model,
    register_weights,
    save_weights,
)


def _save(tmp_path, kind="sr", seed=0, name="w"):
    torch.manual_seed(seed)
    net = build_network(kind, filters=8, blocks=1, growth=8)
    path = tmp_path / f"{name}.pt"
    sha = save_weights(net, path, name=name, kind=kind, config={"stretch": "sqrt"},
                       card={"summary": f"test {kind} {seed}", "training": "none"})
    return net, path, sha


def test_save_and_load_by_path(tmp_path):
    net, path, sha = _save(tmp_path, "dn")
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    m = load_model(path)
    assert (m.kind, m.factor, m.sha256) == ("dn", 1, sha)
    assert (m.input_exposure_s, m.target_exposure_s) == (20_000.0, 50_000.0)
    assert (m.stretch, m.clamp) == ("sqrt", "constant")
    assert m.card["training"] == "none"
    assert not m.network.training
    for (k, a), (_, b) in zip(net.state_dict().items(), m.network.state_dict().items()):
        assert torch.equal(a, b), k
    sr = load_model(_save(tmp_path, "sr", name="s")[1])
    assert (sr.factor, sr.target_exposure_s) == (2, 100_000.0)


def test_save_rejects_wrong_kind(tmp_path):
    net = build_network("sr", filters=4, blocks=0, growth=4)
    with pytest.raises(ConfigError, match="does not match"):
        save_weights(net, tmp_path / "x.pt", name="x", kind="dn", config={}, card={})


def test_registry_versions_aliases_and_listing(tmp_path):
    reg = tmp_path / "reg"
    _, p1, sha1 = _save(tmp_path, "sr", seed=1, name="a")
    _, p2, sha2 = _save(tmp_path, "sr", seed=2, name="b")
    _, p3, sha3 = _save(tmp_path, "dn", seed=3, name="c")
    e1 = register_weights(p1, name="xmm-superres-v1", kind="sr", registry_dir=reg)
    e2 = register_weights(p2, name="xmm-superres", kind="sr", registry_dir=reg)
    e3 = register_weights(p3, name="xmm-denoise", kind="dn", registry_dir=reg)
    assert (e1.id, e2.id, e3.id) == ("xmm-superres-v1", "xmm-superres-v2", "xmm-denoise-v1")
    assert [e.id for e in list_models(registry_dir=reg)] == [
        "xmm-denoise-v1", "xmm-superres-v1", "xmm-superres-v2"]
    doc = json.loads((reg / "registry.json").read_text())
    assert {m["sha256"] for m in doc["models"]} == {sha1, sha2, sha3}
    assert load_model("xmm-superres", registry_dir=reg).sha256 == sha2  # alias -> latest
    assert load_model("xmm-superres-v1", registry_dir=reg).sha256 == sha1
    dn = load_model("xmm-denoise", registry_dir=reg)
    assert (dn.name, dn.kind) == ("xmm-denoise-v1", "dn")
    with pytest.raises(ConfigError, match="already registered"):
        register_weights(p1, name="xmm-superres-v2", kind="sr", registry_dir=reg)
    with pytest.raises(InputFileError, match="not 'dn'"):
        register_weights(p1, name="other", kind="dn", registry_dir=reg)


def test_unknown_name_lists_known(tmp_path):
    reg = tmp_path / "reg"
    _, p, _ = _save(tmp_path, "dn")
    register_weights(p, name="xmm-denoise", kind="dn", registry_dir=reg)
    with pytest.raises(ConfigError, match=r"unknown model 'xmm-superres'.*xmm-denoise-v1"):
        load_model("xmm-superres", registry_dir=reg)
    with pytest.raises(ConfigError, match="none registered"):
        load_model("xmm-superres", registry_dir=tmp_path / "empty")


def test_sha256_mismatch_is_refused(tmp_path):
    reg = tmp_path / "reg"
    _, p, _ = _save(tmp_path, "sr")
    entry = register_weights(p, name="xmm-superres", kind="sr", registry_dir=reg)
    stored = reg / entry.file
    data = bytearray(stored.read_bytes())
    data[-40] ^= 0xFF  # flip one byte inside the tensor data
    stored.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="sha256 mismatch"):
        load_model("xmm-superres", registry_dir=reg)
    # a file given by path is checked against its sidecar, or an explicit digest
    with pytest.raises(InputFileError, match="sha256 mismatch"):
        load_model(p, sha256="0" * 64)
    (p.with_name(p.name + ".sha256")).write_text("ab" * 32 + "  w.pt\n")
    with pytest.raises(InputFileError, match="sha256 mismatch"):
        load_model(p)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    # a torch.save archive whose pickle would run a shell command when unpickled
    torch.save({"format": "xsa-enhance-weights", "kind": "sr", "state_dict": {},
                "payload": _Evil(marker)}, evil)
    with pytest.raises(InputFileError, match="refused to load") as info:
        load_model(evil)
    assert str(evil) in str(info.value)
    assert not marker.exists()
    with pytest.raises(InputFileError, match="refused to load"):
        register_weights(evil, name="evil", kind="sr", registry_dir=tmp_path / "reg")
    # a plain pickle (not a torch archive) is refused too, without running
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(InputFileError):
        load_model(plain)
    assert not marker.exists()


def test_not_a_weight_file(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(InputFileError, match="not an xsa-enhance weight file"):
        load_model(bad)
    with pytest.raises(InputFileError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_shipped_registry_is_consistent():
    """Every weight shipped in the package exists, matches its sha256 and loads."""
    reg_dir = default_registry_dir()
    doc = json.loads((reg_dir / "registry.json").read_text())
    assert isinstance(doc["models"], list)
    for entry in list_models(registry_dir=reg_dir):
        path = reg_dir / entry.file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256, entry.id
        m = load_model(entry.id, registry_dir=reg_dir)
        assert m.kind == entry.kind and m.card


# -- clamp families: aliases resolve by clamp mode, explicit mismatches are refused ----------


@pytest.fixture
def clamp_registry(tmp_path):
    """sr v1 constant, v2 quantile, v3 constant, v4 quantile:0.99; dn v1 constant only."""
    reg = tmp_path / "reg"
    shas = {}
    for version, clamp in ((1, "constant"), (2, "quantile:0.9999"), (3, "constant"),
                           (4, "quantile:0.99")):
        _, p, sha = _save(tmp_path, "sr", seed=version, name=f"s{version}")
        config = {**load_model(p).config, "clamp": clamp}
        register_weights(p, name="xmm-superres", kind="sr", registry_dir=reg, config=config)
        shas[version] = sha
    _, p, shas["dn"] = _save(tmp_path, "dn", seed=9, name="d")
    register_weights(p, name="xmm-denoise", kind="dn", registry_dir=reg)
    return reg, shas


def test_clamp_family():
    from xsa_enhance.models.normalise import ClampSpec
    from xsa_enhance.models.registry import clamp_family

    assert clamp_family("constant") == clamp_family("constant:0.003") == "constant"
    assert clamp_family("quantile:0.999") == clamp_family(ClampSpec.parse("quantile")) == "quantile"
    assert clamp_family("none") == "none"
    with pytest.raises(ConfigError, match="invalid clamp"):
        clamp_family("quantile:7")


def test_alias_and_clamp_resolve_the_newest_matched_version(clamp_registry):
    from xsa_enhance.models.registry import resolve_model

    reg, shas = clamp_registry
    entries = {e.id: e for e in list_models(registry_dir=reg)}
    assert [entries[f"xmm-superres-v{v}"].clamp_family for v in (1, 2, 3, 4)] == [
        "constant", "quantile", "constant", "quantile"]
    assert resolve_model("xmm-superres", registry_dir=reg).id == "xmm-superres-v3"
    assert resolve_model("xmm-superres", clamp="constant:0.003", registry_dir=reg).id == \
        "xmm-superres-v3"
    assert resolve_model("xmm-superres", clamp="quantile:0.999", registry_dir=reg).id == \
        "xmm-superres-v4"
    # an explicit version is that entry, whatever the clamp (load_model checks it)
    assert resolve_model("xmm-superres-v2", clamp="none", registry_dir=reg).id == \
        "xmm-superres-v2"
    m = load_model("xmm-superres", clamp="quantile:0.9999", registry_dir=reg)
    assert (m.name, m.sha256, m.clamp, m.clamp_family) == (
        "xmm-superres-v4", shas[4], "quantile:0.99", "quantile")
    assert load_model("xmm-superres", registry_dir=reg).sha256 == shas[3]
    assert load_model("xmm-superres", clamp="constant", registry_dir=reg).clamp_family == \
        "constant"


def test_alias_without_weights_for_the_mode_is_one_line(clamp_registry):
    reg, _ = clamp_registry
    with pytest.raises(ConfigError) as info:
        load_model("xmm-superres", clamp="none", registry_dir=reg)
    msg = str(info.value)
    assert msg == ("no xmm-superres weights trained for clamp mode 'none'; trained modes: "
                   "constant, quantile")
    with pytest.raises(ConfigError, match="xmm-denoise.*'quantile'; trained modes: constant$"):
        load_model("xmm-denoise", clamp="quantile:0.9999", registry_dir=reg)


def test_explicit_version_with_another_mode_is_refused_unless_allowed(clamp_registry):
    import numpy as np

    from xsa_enhance.models.inference import ImageError, enhance

    reg, shas = clamp_registry
    with pytest.raises(ConfigError) as info:
        load_model("xmm-superres-v3", clamp="quantile:0.9999", registry_dir=reg)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == ("xmm-superres-v3 was trained for clamp mode 'constant', not 'quantile'; use "
                   "the alias xmm-superres to get matched weights, or --allow-clamp-mismatch")
    with pytest.raises(ConfigError, match="trained for clamp mode 'quantile', not 'constant'"):
        load_model("xmm-superres-v2", clamp="constant", registry_dir=reg)
    # same family, another parameter: fine
    assert load_model("xmm-superres-v2", clamp="quantile:0.99", registry_dir=reg).sha256 == \
        shas[2]
    m = load_model("xmm-superres-v3", clamp="quantile:0.9999", allow_clamp_mismatch=True,
                   registry_dir=reg)
    assert m.sha256 == shas[3]

    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (40, 48)).astype(float)
    counts[20, 20] += 300
    # inference refuses the mismatch too, unless allowed, and records it
    with pytest.raises(ImageError) as info:
        enhance(counts, 20_000.0, None, m, clamp="quantile:0.9999")
    assert "\n" not in str(info.value) and "xmm-superres-v3" in str(info.value)
    out = enhance(counts, 20_000.0, None, m, clamp="quantile:0.9999", allow_clamp_mismatch=True)
    assert out.attrs["trained_clamp"] == "constant" and out.attrs["clamp_mismatch"] is True
    assert out.attrs["clamp_mode"] == "quantile"
    ok = enhance(counts, 20_000.0, None, m)  # default: the model's own clamp
    assert (ok.attrs["clamp_mode"], ok.attrs["trained_clamp"], ok.attrs["clamp_mismatch"]) == (
        "constant", "constant", False)
    q = load_model("xmm-superres", clamp="quantile:0.9999", registry_dir=reg)
    matched = enhance(counts, 20_000.0, None, q, clamp="quantile:0.9999")
    assert (matched.attrs["trained_clamp"], matched.attrs["clamp_mismatch"]) == (
        "quantile:0.99", False)


def test_weight_file_with_another_mode_is_refused_unless_allowed(tmp_path):
    _, p, sha = _save(tmp_path, "dn")  # trained (config) for the constant clamp
    assert load_model(p, clamp="constant:0.004").sha256 == sha
    with pytest.raises(ConfigError, match=r"^w\.pt was trained for clamp mode 'constant', "
                                          r"not 'none'; .*--allow-clamp-mismatch$"):
        load_model(p, clamp="none")
    assert load_model(p, clamp="none", allow_clamp_mismatch=True).clamp_family == "constant"
