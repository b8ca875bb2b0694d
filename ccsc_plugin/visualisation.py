"""Response maps of a re-ID model: Grad-CAM with a similarity target, and the paper's Fig. 4 intensity map.

Both return one ``H x W`` map in [0, 1] per input image, at the input's resolution, ready for
:func:`overlay`. Grad-CAM (pytorch-grad-cam) explains *why two images match*: its target is the
cosine similarity between an image's embedding and a reference embedding (the other image of the
pair). The Fig. 4 map shows *where the network looks at all*: the intensity (channel-wise L2 norm)
of the last feature map before global average pooling.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

MAP_KINDS = ("gradcam", "intensity")


class SimilarityTarget:
    """Grad-CAM target: cosine similarity between one sample's embedding and a reference embedding."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference.detach().flatten()

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(embedding.flatten(), self.reference.to(embedding.device), dim=0)


def target_layer(model: nn.Module) -> nn.Module:
    """The last ResNet stage (``model.last_stage``, else torchreid's ``layer4``)."""
    layer = getattr(model, "last_stage", None)
    if layer is None:
        layer = getattr(model, "layer4", None)
    if layer is None:
        raise ValueError(f"{type(model).__name__} has no last_stage or layer4 to compute Grad-CAM on.")
    return layer


def gradcam_maps(model: nn.Module, images: torch.Tensor, references: torch.Tensor, fast: bool = True) -> np.ndarray:
    """Grad-CAM of each image (B x 3 x H x W) for its similarity to the matching row of ``references`` (B x D).

    The model must return its embedding in eval mode (torchreid's convention). Returns B x H x W in [0, 1].
    Grad-CAM needs the gradient at the last stage's *output* only, so with ``fast`` autograd stops there
    (the output is made a leaf) instead of back-propagating through the whole backbone: the same maps for
    about the cost of one forward pass.
    """
    if images.size(0) != references.size(0):
        raise ValueError(f"{images.size(0)} images but {references.size(0)} reference embeddings.")
    model.eval()
    layer = target_layer(model)
    targets = [SimilarityTarget(reference) for reference in references]
    # Registered before GradCAM's own hooks, so they see (and record gradients at) the leaf.
    handle = layer.register_forward_hook(_as_leaf) if fast else None
    try:
        with GradCAM(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=images, targets=targets)
    finally:
        if handle is not None:
            handle.remove()


def _as_leaf(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.detach().requires_grad_(True)


def intensity_maps(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The paper's Fig. 4 map: channel-wise L2 norm of the last feature map, upsampled, scaled to [0, 1]."""
    model.eval()
    with torch.no_grad():
        featuremaps = model(images, return_featuremaps=True)
        intensity = featuremaps.pow(2).sum(dim=1, keepdim=True).sqrt()
        intensity = F.interpolate(intensity, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        flat = intensity.flatten(1)
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
        scaled = (intensity - low[:, None, None]) / (high - low).clamp_min(1e-12)[:, None, None]
    return scaled.cpu().numpy().astype(np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] map (resized to the image) over an RGB uint8 image as a jet heat map (uint8 out)."""
    if heatmap.shape != image.shape[:2]:
        resized = F.interpolate(
            torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None],
            size=image.shape[:2],
            mode="bilinear",
            align_corners=False,
        )
        heatmap = resized[0, 0].numpy()
    return show_cam_on_image(image.astype(np.float32) / 255.0, heatmap, use_rgb=True, image_weight=image_weight)
