"""Response maps of a re-ID model: Grad-CAM with a similarity target, and the paper's Fig. 4 intensity map.

Both return one ``H x W`` map in [0, 1] per input image, at the input's resolution, ready for
:func:`overlay`. Grad-CAM (pytorch-grad-cam) explains *why two images match*: its target is the
cosine similarity between an image's embedding and a reference embedding (the other image of the
pair). The Fig. 4 map shows *where the network looks at all*: the intensity (channel-wise L2 norm)
of the last feature map before global average pooling. Both use the model's ``target_layer``: the last stage of
the ``<arch>_ccsc`` models' timm network (``layer4`` for ResNets), torchreid's ResNets' ``layer4``, OSNet's ``conv5``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

MAP_KINDS = ("gradcam", "intensity")
# Where each model family keeps its last feature map: the _ccsc models (any timm CNN), torchreid's ResNets, OSNet.
TARGET_LAYERS = ("last_stage", "layer4", "conv5")


class SimilarityTarget:
    """Grad-CAM target: cosine similarity between one sample's embedding and a reference embedding."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference.detach().flatten()

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(embedding.flatten(), self.reference.to(embedding.device), dim=0)


def target_layer(model: nn.Module) -> nn.Module:
    """The module whose output is the model's last feature map, before global pooling (see ``TARGET_LAYERS``)."""
    for name in TARGET_LAYERS:
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    raise ValueError(
        f"{type(model).__name__} has none of {', '.join(TARGET_LAYERS)}: no last feature map to compute "
        "Grad-CAM or the Fig. 4 map on. Give the model a `last_stage` property returning that module."
    )


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
    """The paper's Fig. 4 map: channel-wise L2 norm of the last feature map, upsampled, scaled to [0, 1].

    The feature map is the ``target_layer``'s output, read by a hook during a plain forward pass, so every
    model family gives it the same way (torchreid's ResNets take no ``return_featuremaps``).
    """
    model.eval()
    captured: list[torch.Tensor] = []
    handle = target_layer(model).register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    with torch.no_grad():
        intensity = captured[-1].pow(2).sum(dim=1, keepdim=True).sqrt()
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
