"""ONNX export of the networks and an onnxruntime backend for the inference engine.

:func:`export_onnx` writes the network with dynamic batch, height and width (opset 17, the
TorchScript-based exporter, which needs no extra packages). :func:`load_onnx` returns a copy of
a :class:`~xsa_enhance.models.registry.LoadedModel` whose ``network`` runs the ONNX file in
onnxruntime (CPU), so :func:`~xsa_enhance.models.inference.enhance` works unchanged; results
match PyTorch to about 1e-6 in the normalised output (tested to 1e-4).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xsa_enhance.errors import InputFileError
from xsa_enhance.models.registry import LoadedModel

__all__ = ["OnnxNetwork", "export_onnx", "load_onnx"]

logger = logging.getLogger(__name__)


def export_onnx(
    model: LoadedModel | nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = 17,
    sample_size: int = 64,
) -> Path:
    """Export a network to ONNX with dynamic batch and image size.

    Parameters
    ----------
    model : LoadedModel or torch.nn.Module
        The model (its network is exported on CPU, in eval mode).
    path : path-like
        Output ``.onnx`` file.
    opset : int
        ONNX opset.
    sample_size : int
        Side of the dummy input used for tracing.

    Returns
    -------
    pathlib.Path
        The written file. Metadata ``xsa_kind``, ``xsa_factor``, ``xsa_weights_sha256`` and
        ``xsa_name`` are stored in the model's ``metadata_props``.
    """
    net = model.network if isinstance(model, LoadedModel) else model
    was_training = net.training
    device = next(iter(net.parameters())).device if any(True for _ in net.parameters()) \
        else torch.device("cpu")
    net = net.to("cpu").eval()
    in_ch = int(getattr(net, "in_channels", 1))
    dummy = torch.zeros(1, in_ch, sample_size, sample_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (dummy,), str(path), dynamo=False, opset_version=opset,
            input_names=["image"], output_names=["enhanced"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "enhanced": {0: "batch", 2: "out_height", 3: "out_width"}},
        )
    net.to(device).train(was_training)
    import onnx

    proto = onnx.load(str(path))
    meta = {
        "xsa_kind": str(getattr(net, "kind", "")),
        "xsa_factor": str(getattr(net, "factor", 1)),
        "xsa_in_channels": str(in_ch),
    }
    if isinstance(model, LoadedModel):
        meta.update({"xsa_name": model.name, "xsa_weights_sha256": model.sha256})
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))
    logger.info("exported ONNX model to %s", path)
    return path


class OnnxNetwork(nn.Module):
    """A module that runs an ONNX file in onnxruntime (CPU), torch tensors in and out.

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file.
    threads : int, optional
        Intra-op threads for onnxruntime (default: its own choice).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputFileError(path, f"not a usable ONNX model: {exc}") from exc
        self.path = Path(path)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.kind = meta.get("xsa_kind", "")
        self.factor = int(meta.get("xsa_factor", "1"))
        self.in_channels = int(meta.get("xsa_in_channels", "1"))
        self.metadata = dict(meta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the ONNX graph on ``x`` (float32 ``(N, C, H, W)``)."""
        arr = x.detach().float().cpu().numpy()
        (out,) = self.session.run(None, {"image": np.ascontiguousarray(arr)})
        return torch.from_numpy(out)


def load_onnx(
    path: str | os.PathLike[str], model: LoadedModel, *, threads: int | None = None
) -> LoadedModel:
    """A copy of ``model`` whose network runs ``path`` (exported from it) in onnxruntime.

    Parameters
    ----------
    path : path-like
        ONNX file written by :func:`export_onnx`.
    model : LoadedModel
        The PyTorch model it was exported from (provides config, exposures, card).
    threads : int, optional
        onnxruntime intra-op threads.

    Returns
    -------
    LoadedModel
    """
    net = OnnxNetwork(path, threads=threads)
    sha = net.metadata.get("xsa_weights_sha256")
    if sha is not None and sha != model.sha256:
        raise InputFileError(path, f"exported from weights {sha}, not {model.sha256}")
    if net.kind and net.kind != model.kind:
        raise InputFileError(path, f"holds a {net.kind!r} network, not {model.kind!r}")
    return dataclasses.replace(model, network=net)
