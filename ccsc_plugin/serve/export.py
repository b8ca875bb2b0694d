"""ONNX export of a re-ID model: image batch (N x 3 x H x W, normalised) -> feature batch (N x D; 512 for ours).

``ccsc-reid export runs/my-run --onnx model.onnx`` exports a checkpoint's model in eval mode with a
dynamic batch axis, stores the preprocessing (input size, mean, std) in the file's metadata, and
checks onnxruntime against PyTorch on a random batch.

With ``test.flip`` on (the source's recipe, or ``--flip``) the exported graph is the flip-averaged model
(:class:`~ccsc_plugin.models.flip.FlipAveraged`: the mean of the features of the image and of its mirror,
both passes inside the graph) rather than a refusal: the file then gives the features ``ccsc-reid test``
scored, with no step left for a deployment to forget. Its metadata says ``flip: true``; ``--no-flip``
exports the plain model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from yacs.config import CfgNode as CN

from ccsc_plugin import pipeline
from ccsc_plugin.checkpoint import atomic_write
from ccsc_plugin.models import FlipAveraged
from ccsc_plugin.pipeline.trained import load_trained

INPUT_NAME, OUTPUT_NAME = "image", "feature"
OPSET = 17
MAX_DIFFERENCE = 1e-4  # onnxruntime and PyTorch features must agree this closely


def is_recipe(source: str | Path) -> bool:
    return Path(source).suffix.lower() in (".yaml", ".yml")


def model_for_export(source: str | Path, cfg_from_recipe: CN | None = None) -> tuple[torch.nn.Module, CN]:
    """The eval-mode model and recipe of a checkpoint / run folder, or of a recipe (its ``model`` section)."""
    if cfg_from_recipe is None:
        trained = load_trained(source)
        return trained.model, trained.cfg
    # The classifier is not part of the exported graph: its size does not matter.
    model = pipeline.build_model(cfg_from_recipe, num_classes=1)
    return model.eval(), cfg_from_recipe


def export_onnx(
    model: torch.nn.Module, out: str | Path, height: int, width: int, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch axis; ``metadata`` goes in the file."""
    model = model.eval().cpu()
    example = torch.randn(2, 3, height, width)

    def write(tmp: str) -> None:
        torch.onnx.export(
            model,
            (example,),
            tmp,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: a plain CNN traces exactly, and it is several times faster
        )
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        onnx.helper.set_model_props(proto, metadata or {})
        onnx.save(proto, tmp)

    return atomic_write(out, write)


def onnx_features(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Run an exported model with onnxruntime on the CPU."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: images.astype(np.float32)})[0]


@torch.no_grad()
def max_difference(model: torch.nn.Module, path: str | Path, height: int, width: int, batch: int = 3) -> float:
    """Largest |PyTorch - onnxruntime| feature difference on a random batch (of another size than traced)."""
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    expected = model.eval().cpu()(images).numpy()
    return float(np.abs(onnx_features(path, images.numpy()) - expected).max())


def export_from(
    source: str | Path, out: str | Path, cfg_from_recipe: CN | None = None, flip: bool | None = None
) -> tuple[Path, float]:
    """``ccsc-reid export``: write ``out`` and return it with the onnxruntime check's max difference.

    ``flip`` None follows the source recipe's ``test.flip``; on, the flip-averaged model is exported.
    """
    model, cfg = model_for_export(source, cfg_from_recipe)
    flip = bool(cfg.test.flip) if flip is None else flip
    if flip:
        model = FlipAveraged(model).eval()
    metadata = {
        "source": str(source),
        "input": f"{INPUT_NAME}: float32 N x 3 x {cfg.data.height} x {cfg.data.width}, RGB in [0, 1] normalised",
        "height": str(cfg.data.height),
        "width": str(cfg.data.width),
        "norm_mean": json.dumps(list(cfg.data.norm_mean)),
        "norm_std": json.dumps(list(cfg.data.norm_std)),
        "model": cfg.model.name,
        "flip": str(flip).lower(),
    }
    path = export_onnx(model, out, cfg.data.height, cfg.data.width, metadata)
    return path, max_difference(model, path, cfg.data.height, cfg.data.width)
