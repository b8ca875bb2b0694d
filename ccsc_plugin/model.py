"""The paper's model: timm ResNet-50 with last stride 1, GAP, 1x1 conv 2048->512 + BN + ReLU, classifier.

Registered in torchreid's model factory as ``resnet50_ccsc``, so
``torchreid.models.build_model('resnet50_ccsc', num_classes=N, loss='ccsc', pretrained=False)`` works.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from torch import nn

from ._torchreid import model_factory
from .checkpoint import CheckpointError, load_model_state

MODEL_NAME = "resnet50_ccsc"
FEATURE_DIM = 512


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but neither a local file nor the hub could provide them."""


def _create_backbone(pretrained: bool | str) -> nn.Module:
    """timm ResNet-50 without pooling or classifier; ``pretrained`` is False, True (hub) or a file."""
    kwargs: dict = {"num_classes": 0, "global_pool": ""}
    if isinstance(pretrained, (str, os.PathLike)) and str(pretrained):
        return _backbone_from_file(Path(pretrained).expanduser(), **kwargs)
    if pretrained:
        try:
            return timm.create_model("resnet50", pretrained=True, **kwargs)
        except Exception as error:  # offline hub, missing cache, proxy...: all mean "no weights"
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for timm 'resnet50' could not be fetched from the hub ({type(error).__name__}). "
                "Pass model.pretrained_path=/path/to/resnet50.pth (timm or torchvision weights), or "
                "model.pretrained=False (random init; set model.allow_random_init=True in a recipe to fall back "
                "automatically)."
            ) from error
    return timm.create_model("resnet50", pretrained=False, **kwargs)


def _backbone_from_file(path: Path, **kwargs) -> nn.Module:
    """timm ResNet-50 with every weight from a local timm / torchvision ImageNet file (its ``fc`` dropped).

    timm's own file loading turns lenient once the classifier is removed, so another network's weights
    would load nothing without a word: the keys are checked here, as for any checkpoint.
    """
    origin = f"model.pretrained_path {path}"
    fix = (
        "Pass model.pretrained_path=<a timm or torchvision resnet50 ImageNet .pth/.safetensors file>, '' for the "
        "hub, or model.pretrained=False for random init; to start from a ccsc-reid run, set model.load_weights=RUN."
    )
    if not path.is_file():
        raise PretrainedWeightsUnavailable(f"{origin} does not exist. {fix}")
    backbone = timm.create_model("resnet50", pretrained=False, **kwargs)
    try:
        weights = timm.models.load_state_dict(str(path))  # .pth or .safetensors; 'module.' prefixes removed
    except Exception as error:  # not a weights file: torch's and safetensors' errors vary
        raise PretrainedWeightsUnavailable(
            f"{origin} is not a weights file ({type(error).__name__}: {str(error)[:200]}). {fix}"
        ) from error
    backbone_weights = {key: value for key, value in weights.items() if not key.startswith("fc.")}  # ImageNet's head
    try:
        load_model_state(backbone, {"state_dict": backbone_weights}, origin, fix=fix)
    except CheckpointError as error:
        raise PretrainedWeightsUnavailable(str(error)) from error
    return backbone


def set_last_stride_one(backbone: nn.Module) -> None:
    """Make ResNet's layer4 keep its input resolution (stride 2 -> 1), as in the paper (Sec. 3.1)."""
    block = backbone.layer4[0]
    block.conv2.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


class ResNet50CCSC(nn.Module):
    """ResNet-50 re-ID model of the CCSC paper.

    Eval mode returns the 512-d feature ``f`` (the test feature). Train mode returns logits for
    ``loss='softmax'`` and ``(logits, f)`` for any other loss (``'ccsc'``, ``'triplet'``...), as
    torchreid's engines expect. ``return_featuremaps=True`` returns the last stage's feature map
    (B x 2048 x H/16 x W/16) for torchreid's activation-map tools.
    """

    def __init__(
        self, num_classes: int, loss: str = "ccsc", pretrained: bool | str = False, feature_dim: int = FEATURE_DIM
    ) -> None:
        super().__init__()
        self.loss = loss
        self.feature_dim = feature_dim
        self.backbone = _create_backbone(pretrained)
        set_last_stride_one(self.backbone)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.reduction = nn.Sequential(
            nn.Conv2d(self.backbone.num_features, feature_dim, kernel_size=1, bias=False),
            nn.BatchNorm2d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(feature_dim, num_classes)
        self._init_new_layers()

    def _init_new_layers(self) -> None:
        nn.init.kaiming_normal_(self.reduction[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.reduction[1].weight)
        nn.init.zeros_(self.reduction[1].bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    @property
    def last_stage(self) -> nn.Module:
        """The last ResNet stage: the Grad-CAM target layer."""
        return self.backbone.layer4

    def forward(self, x: torch.Tensor, return_featuremaps: bool = False):
        featuremap = self.backbone.forward_features(x)
        if return_featuremaps:
            return featuremap
        f = self.reduction(self.global_pool(featuremap)).flatten(1)
        if not self.training:
            return f
        logits = self.classifier(f)
        if self.loss == "softmax":
            return logits
        return logits, f


def resnet50_ccsc(
    num_classes: int, loss: str = "ccsc", pretrained: bool | str = False, use_gpu: bool = True, **kwargs
) -> ResNet50CCSC:
    """torchreid-style factory; ``pretrained`` may be a path to local ImageNet weights."""
    del use_gpu  # torchreid's factory passes it; the model does not need it
    return ResNet50CCSC(num_classes=num_classes, loss=loss, pretrained=pretrained, **kwargs)


def register_models() -> None:
    """Add the plugin's models to torchreid's model factory (idempotent)."""
    model_factory().setdefault(MODEL_NAME, resnet50_ccsc)
