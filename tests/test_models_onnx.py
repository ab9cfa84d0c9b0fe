"""ONNX export and onnxruntime inference match PyTorch within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsa_enhance.errors import InputFileError
from xsa_enhance.models.inference import enhance
from xsa_enhance.models.networks import build_network
from xsa_enhance.models.onnx_backend import OnnxNetwork, export_onnx, load_onnx
from xsa_enhance.models.registry import load_model, save_weights

pytest.importorskip("onnxruntime")


def _model(tmp_path, kind, seed=0, exposure_channel=False):
    torch.manual_seed(seed)
    net = build_network(kind, filters=8, blocks=1, growth=8, exposure_channel=exposure_channel)
    path = tmp_path / f"{kind}{seed}{exposure_channel}.pt"
    save_weights(net, path, name="t", kind=kind, config={"pad_shape": [96, 96]}, card={})
    return load_model(path)


@pytest.mark.parametrize("kind,channels", [("sr", False), ("dn", False), ("dn", True)])
def test_onnx_matches_torch(tmp_path, kind, channels):
    model = _model(tmp_path, kind, exposure_channel=channels)
    path = export_onnx(model, tmp_path / "m.onnx")
    onnx_net = OnnxNetwork(path)
    assert onnx_net.metadata["xsa_weights_sha256"] == model.sha256
    # a batch and an image size other than the traced 64 x 64 (dynamic axes)
    x = torch.rand(2, 2 if channels else 1, 70, 53)
    with torch.inference_mode():
        ref = model.network(x)
    got = onnx_net(x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-4

    # the whole engine through onnxruntime
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, (90, 80)).astype(float)
    counts[40, 40] = 300
    a = enhance(counts, 20_000.0, None, model)
    b = enhance(counts, 20_000.0, None, load_onnx(path, model))
    assert b.attrs["backend"] == "onnxruntime" and a.attrs["backend"] == "torch"
    scale = a.attrs["clamp_value_output"] * model.target_exposure_s
    assert np.abs(a.counts - b.counts).max() / scale < 1e-4


def test_onnx_refuses_other_weights(tmp_path):
    m1 = _model(tmp_path, "dn", seed=1)
    m2 = _model(tmp_path, "dn", seed=2)
    path = export_onnx(m1, tmp_path / "m1.onnx")
    with pytest.raises(InputFileError, match="exported from weights"):
        load_onnx(path, m2)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    with pytest.raises(InputFileError, match="not a usable ONNX model"):
        OnnxNetwork(junk)
