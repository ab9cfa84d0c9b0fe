"""XMM-SuperRes and XMM-DeNoise: networks, normalisation, flux restoration, inference.

Public API::

    from xsa_enhance.models import build_network, load_model, enhance
    model = load_model("xmm-superres")          # or "xmm-denoise", "NAME-vN", a .pt path
    out = enhance(counts, exposure_s, mask, model, clamp="constant")

See ``docs/inference.md``.
"""

from xsa_enhance.models.inference import (
    CAVEATS,
    EnhancedImage,
    ImageError,
    enhance,
    enhance_batch,
    pad_frame,
    plan_tiles,
)
from xsa_enhance.models.networks import build_network, identity_network, receptive_radius
from xsa_enhance.models.normalise import (
    ClampSpec,
    NormInfo,
    clamp_value,
    denormalise,
    normalise,
    stretch_forward,
    stretch_inverse,
)
from xsa_enhance.models.registry import (
    LoadedModel,
    ModelEntry,
    list_models,
    load_model,
    register_weights,
    save_weights,
)
from xsa_enhance.models.restore import restore_flux

__all__ = [
    "CAVEATS",
    "ClampSpec",
    "EnhancedImage",
    "ImageError",
    "LoadedModel",
    "ModelEntry",
    "NormInfo",
    "build_network",
    "clamp_value",
    "denormalise",
    "enhance",
    "enhance_batch",
    "export_onnx",
    "identity_network",
    "list_models",
    "load_model",
    "load_onnx",
    "normalise",
    "pad_frame",
    "plan_tiles",
    "receptive_radius",
    "register_weights",
    "restore_flux",
    "save_weights",
    "stretch_forward",
    "stretch_inverse",
]


def __getattr__(name: str):
    # ONNX support imports onnx/onnxruntime lazily
    if name in ("export_onnx", "load_onnx"):
        from xsa_enhance.models import onnx_backend

        return getattr(onnx_backend, name)
    raise AttributeError(name)
