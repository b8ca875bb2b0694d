"""A timm CNN as the feature-map extractor of the ``<arch>_ccsc`` models: which timm models qualify, and where the
last feature map comes from.

The extractor is timm's feature API, ``timm.create_model(arch, features_only=True, out_indices=(-1,))``: the
network up to its last feature stage, without pooling, head or classifier (every weight feeds the map, as DDP
needs), under timm's own weight names (for ResNets those of the whole network: ``layer4.0.conv2.weight``, ...).
A timm model qualifies when that extractor is a CNN's: channels-first (NCHW) throughout, with its last stage a
module of its own (:func:`last_stage`: the Grad-CAM target and where the last stride is changed). CNNs and
convolutional hybrids do (ResNet, ResNeXt, SE-ResNet, ResNeSt, RegNet, EfficientNet, MobileNet, ConvNeXt,
DenseNet, ...); token models do not (ViT, DeiT, BEiT: timm's getter extractor; Swin, MambaOut: channels-last).
"""

from __future__ import annotations

import contextlib
import functools

import timm
import torch
from torch import nn

FEATURE_API = {"features_only": True, "out_indices": (-1,)}  # timm's extractor of the last feature stage
ACCEPTED = "the paper's head needs a timm CNN (ResNet, ResNeXt, SE-ResNet, ResNeSt, RegNet, EfficientNet, ConvNeXt...)"


def last_stage(backbone: nn.Module) -> nn.Module:
    """The module of a timm feature extractor whose output is its last feature map (Grad-CAM's target layer).

    timm's ``feature_info`` names it as in the whole network (``layer4``, ``stages.3``, ``blocks.6``); extractors
    that flatten the network's first level hold ``stages.3`` as ``stages_3``.
    """
    name = backbone.feature_info.module_name()[-1]
    for candidate in (name, name.replace(".", "_", 1)):
        with contextlib.suppress(AttributeError):
            return backbone.get_submodule(candidate)
    raise ValueError(f"{type(backbone).__name__} holds no module {name!r}, which its feature_info names last.")


def feature_channels(backbone: nn.Module) -> int:
    """The number of channels of a timm feature extractor's last feature map."""
    return int(backbone.feature_info.channels()[-1])


def extractor_problem(arch: str, backbone: nn.Module) -> str | None:
    """Why timm's feature extractor ``backbone`` of ``arch`` is not a CNN's, or None when it is."""
    layout = getattr(getattr(backbone, "output_fmt", None), "value", "NCHW")
    if layout != "NCHW":
        return f"timm's {arch} is not a CNN: it works on channels-last tokens ({layout})"
    try:
        last_stage(backbone)
    except ValueError:
        return f"timm's {arch} is not a CNN: its feature extractor ({type(backbone).__name__}) reads tokens"
    return None


@functools.cache
def cnn_problem(arch: str) -> str | None:
    """Why timm's ``arch`` cannot carry the paper's head (unknown, no feature extractor, not a CNN), or None.

    Built on the meta device: names and shapes only, nothing allocated or computed.
    """
    if not timm.is_model(arch):
        return f"{arch!r} is not a timm model"
    try:
        with torch.device("meta"):
            backbone = timm.create_model(arch, pretrained=False, **FEATURE_API)
    except Exception as error:  # timm raises RuntimeError, or others, for families without features_only
        return f"timm builds no feature extractor for {arch} (features_only: {type(error).__name__}: {error})"
    return extractor_problem(arch, backbone)
