"""Serving trained models: feature extraction, gallery ranking, FAISS index, Grad-CAM maps, the demo's
backend and ONNX export. Reads checkpoints; never trains.

The public names below are imported on first use (PEP 562 ``__getattr__``): Grad-CAM (pytorch-grad-cam) and
ONNX (onnx, onnxruntime) take seconds to import (2.8 s and 1.3 s measured), which ``FeatureExtractor`` alone
does not need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {  # public name -> its module in this package
    "DEFAULT_WEIGHTS": "demo_backend",
    "DemoBackend": "demo_backend",
    "ModelAnswer": "demo_backend",
    "Query": "demo_backend",
    "UploadFiles": "demo_backend",
    "MAX_DIFFERENCE": "export",
    "export_from": "export",
    "export_onnx": "export",
    "is_recipe": "export",
    "max_difference": "export",
    "onnx_features": "export",
    "ExtractError": "extract",
    "extract": "extract",
    "DemoInputError": "gallery",
    "load_query_gallery": "gallery",
    "GalleryIndex": "index",
    "FeatureExtractor": "inference",
    "Retriever": "retrieval",
    "rank_gallery": "retrieval",
    "decode_upload": "uploads",
    "MAP_KINDS": "visualisation",
    "gradcam_maps": "visualisation",
    "intensity_maps": "visualisation",
    "overlay": "visualisation",
    "target_layer": "visualisation",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
