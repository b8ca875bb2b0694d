"""Test-time flip (``test.flip``, fast-reid's ``TEST.FLIP``): an image's feature is the mean of its and its mirror's.

A person seen from the left is the same person seen from the right, so averaging the features of an image and of
its horizontal mirror gives a steadier descriptor (papers report it as "+ flip"). It costs a second forward pass.
Every place that computes test features goes through :func:`flip_averaged` (the engine's evaluation, ``extract``,
:class:`~ccsc_plugin.serve.inference.FeatureExtractor`, the demo's features), and ONNX export wraps the model in
:class:`FlipAveraged`, so a feature means the same thing everywhere. The mean is of the raw features, before any
``test.normalize_feature`` normalisation (as fast-reid).
"""

from __future__ import annotations

import torch
from torch import nn

FLIP_KEY = "test.flip"  # the recipe key that turns it on


def mirror(images: torch.Tensor) -> torch.Tensor:
    """The horizontal mirror of an image batch (N x C x H x W): the width axis reversed."""
    return images.flip(-1)


def flip_averaged(model: nn.Module, images: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """``model(images)`` as float32, or with ``flip`` the mean of it and ``model(mirror(images))``."""
    features = model(images).float()
    if flip:
        features = (features + model(mirror(images)).float()) / 2
    return features


class FlipAveraged(nn.Module):
    """``model`` whose output is the flip-averaged feature: what ONNX export writes when ``test.flip`` is on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return flip_averaged(self.model, images)
