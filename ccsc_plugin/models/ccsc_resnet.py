"""The paper's model on a timm ResNet (last stride 1, GAP, 1x1 conv -> 512 + BN + ReLU, classifier), and zoo models.

Registered in torchreid's model factory as ``resnet50_ccsc``, so
``torchreid.models.build_model('resnet50_ccsc', num_classes=N, loss='ccsc', pretrained=False)`` works; its
``backbone`` argument (the recipe key ``model.backbone``) puts the same head on another ResNet of ``BACKBONES``,
and its ``neck`` argument (``model.neck``) adds BoT's BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline
for Deep Person Re-identification") between the 512-d feature and the classifier.
:func:`create_model` builds what a recipe names: ``resnet50_ccsc`` on its backbone, or any model of torchreid's
zoo (``osnet_x0_25``, ``resnet50_fc512``, ...) in its ``(logits, features)`` training mode.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
from pathlib import Path

import timm
import torch
from timm.models.resnet import Bottleneck
from torch import nn

from ccsc_plugin._torchreid import model_factory, torchreid
from ccsc_plugin.checkpoint import CheckpointError, load_model_state

MODEL_NAME = "resnet50_ccsc"
FEATURE_DIM = 512
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # timm ResNets for resnet50_ccsc
DEFAULT_BACKBONE = "resnet50"  # the paper's
NECKS = ("none", "bnneck")  # model.neck: the paper's head (f -> classifier) | BoT's f -> BatchNorm1d -> classifier
NECK_FEATS = ("after", "before")  # test.neck_feat: with a BNNeck, eval returns the BN feature (BoT's) | f
DEFAULT_NECK, DEFAULT_NECK_FEAT = "none", "after"
ZOO_TRAIN_LOSS = "triplet"  # torchreid's models return (logits, features) in training with this loss
DOWNLOAD_TIMEOUT_S = 60  # a download that stalls this long fails instead of hanging the run
# What torchreid's weight download raises when the weights cannot be had: no network, an unreadable cached file.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but neither a local file nor the hub could provide them."""


def _create_backbone(pretrained: bool | str, backbone: str = DEFAULT_BACKBONE) -> nn.Module:
    """timm ResNet ``backbone`` without pooling or classifier; ``pretrained`` is False, True (hub) or a file."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}.")
    kwargs: dict = {"num_classes": 0, "global_pool": ""}
    if isinstance(pretrained, (str, os.PathLike)) and str(pretrained):
        return _backbone_from_file(Path(pretrained).expanduser(), backbone, **kwargs)
    if pretrained:
        try:
            return timm.create_model(backbone, pretrained=True, **kwargs)
        except Exception as error:  # offline hub, missing cache, proxy...: all mean "no weights"
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for timm '{backbone}' could not be fetched from the hub ({type(error).__name__}). "
                f"Pass model.pretrained_path=/path/to/{backbone}.pth (timm or torchvision weights), or "
                "model.pretrained=False (random init; set model.allow_random_init=True in a recipe to fall back "
                "automatically)."
            ) from error
    return timm.create_model(backbone, pretrained=False, **kwargs)


def _backbone_from_file(path: Path, backbone: str, **kwargs) -> nn.Module:
    """timm ResNet ``backbone`` with every weight from a local timm / torchvision ImageNet file (its ``fc`` dropped).

    timm's own file loading turns lenient once the classifier is removed, so another network's weights
    would load nothing without a word: the keys are checked here, as for any checkpoint.
    """
    origin = f"model.pretrained_path {path}"
    fix = (
        f"Pass model.pretrained_path=<a timm or torchvision {backbone} ImageNet .pth/.safetensors file> (or set "
        "model.backbone to the network the file holds), '' for the hub, or model.pretrained=False for random init; "
        "to start from a ccsc-reid run, set model.load_weights=RUN."
    )
    if not path.is_file():
        raise PretrainedWeightsUnavailable(f"{origin} does not exist. {fix}")
    model = timm.create_model(backbone, pretrained=False, **kwargs)
    try:
        weights = timm.models.load_state_dict(str(path))  # .pth or .safetensors; 'module.' prefixes removed
    except Exception as error:  # not a weights file: torch's and safetensors' errors vary
        raise PretrainedWeightsUnavailable(
            f"{origin} is not a weights file ({type(error).__name__}: {str(error)[:200]}). {fix}"
        ) from error
    backbone_weights = {key: value for key, value in weights.items() if not key.startswith("fc.")}  # ImageNet's head
    try:
        load_model_state(model, {"state_dict": backbone_weights}, origin, fix=fix)
    except CheckpointError as error:
        raise PretrainedWeightsUnavailable(str(error)) from error
    return model


def set_last_stride_one(backbone: nn.Module) -> None:
    """Make ResNet's layer4 keep its input resolution (stride 2 -> 1), as in the paper (Sec. 3.1).

    A Bottleneck (ResNet-50 and deeper) strides in its 3x3 ``conv2``, a BasicBlock (ResNet-18/34) in ``conv1``.
    """
    block = backbone.layer4[0]
    strided = block.conv2 if isinstance(block, Bottleneck) else block.conv1
    strided.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


class BNNeck(nn.BatchNorm1d):
    """BoT's BNNeck: a BatchNorm1d whose shift is fixed at 0, so the classifier sees a zero-centred feature.

    BoT freezes the BN bias with ``requires_grad_(False)``; torchreid's training loop re-enables the gradient
    of every parameter each epoch (``open_all_layers``), so here the bias is a buffer of zeros instead: the
    same ``bias`` key in the state dict, and nothing (optimiser, weight decay, layer opening) can move it.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        del self.bias
        self.register_buffer("bias", torch.zeros(num_features))


class ResNet50CCSC(nn.Module):
    """Re-ID model of the CCSC paper on a timm ResNet (``backbone``: ResNet-50 in the paper).

    Eval mode returns the 512-d feature ``f`` (the test feature). Train mode returns logits for
    ``loss='softmax'`` and ``(logits, f)`` for any other loss (``'ccsc'``, ``'triplet'``...), as
    torchreid's engines expect. With ``neck='bnneck'`` the logits come from ``bnneck(f)`` through a
    classifier without bias (BoT's head), the metric losses still get ``f``, and eval mode returns
    ``bnneck(f)`` (``neck_feat='after'``) or ``f`` (``'before'``); ``neck='none'`` ignores ``neck_feat``.
    ``return_featuremaps=True`` returns the last stage's feature map (B x C x H/16 x W/16; C = 2048 for
    ResNet-50) for torchreid's activation-map tools.
    """

    def __init__(
        self,
        num_classes: int,
        loss: str = "ccsc",
        pretrained: bool | str = False,
        feature_dim: int = FEATURE_DIM,
        backbone: str = DEFAULT_BACKBONE,
        neck: str = DEFAULT_NECK,
        neck_feat: str = DEFAULT_NECK_FEAT,
    ) -> None:
        super().__init__()
        for name, value, choices in (("neck", neck, NECKS), ("neck_feat", neck_feat, NECK_FEATS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
        self.loss = loss
        self.feature_dim = feature_dim
        self.neck, self.neck_feat = neck, neck_feat
        self.backbone = _create_backbone(pretrained, backbone)
        set_last_stride_one(self.backbone)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.reduction = nn.Sequential(
            nn.Conv2d(self.backbone.num_features, feature_dim, kernel_size=1, bias=False),
            nn.BatchNorm2d(feature_dim),
            nn.ReLU(inplace=True),
        )
        # neck='none' has no bnneck attribute at all: the paper head's state-dict keys, as before the option.
        self.bnneck = BNNeck(feature_dim) if neck == "bnneck" else None
        self.classifier = nn.Linear(feature_dim, num_classes, bias=self.bnneck is None)
        self._init_new_layers()

    def _init_new_layers(self) -> None:
        nn.init.kaiming_normal_(self.reduction[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.reduction[1].weight)
        nn.init.zeros_(self.reduction[1].bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        if self.classifier.bias is not None:
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
            return f if self.bnneck is None or self.neck_feat == "before" else self.bnneck(f)
        logits = self.classifier(f if self.bnneck is None else self.bnneck(f))
        if self.loss == "softmax":
            return logits
        return logits, f


def resnet50_ccsc(
    num_classes: int,
    loss: str = "ccsc",
    pretrained: bool | str = False,
    use_gpu: bool = True,
    backbone: str = DEFAULT_BACKBONE,
    neck: str = DEFAULT_NECK,
    neck_feat: str = DEFAULT_NECK_FEAT,
    **kwargs,
) -> ResNet50CCSC:
    """torchreid-style factory; ``pretrained`` may be a path to local ImageNet weights of ``backbone``."""
    del use_gpu  # torchreid's factory passes it; the model does not need it
    return ResNet50CCSC(num_classes, loss, pretrained, backbone=backbone, neck=neck, neck_feat=neck_feat, **kwargs)


def register_models() -> None:
    """Add the plugin's models to torchreid's model factory (idempotent)."""
    model_factory().setdefault(MODEL_NAME, resnet50_ccsc)


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool | str = False,
    backbone: str = DEFAULT_BACKBONE,
    *,
    neck: str = DEFAULT_NECK,
    neck_feat: str = DEFAULT_NECK_FEAT,
) -> nn.Module:
    """The model ``name`` of torchreid's factory, returning ``(logits, features)`` in train mode, features in eval.

    ``resnet50_ccsc`` is built on ``backbone`` (any of ``BACKBONES``) with ``neck`` (``NECKS``; eval feature
    ``neck_feat``); any other name is a torchreid zoo model, built with loss='triplet' (its switch for returning
    features in training) and its own backbone and head (``neck`` must be 'none'; ``neck_feat`` is ignored).
    Weights that cannot be had raise :class:`PretrainedWeightsUnavailable`.
    """
    if name == MODEL_NAME:
        head = {"backbone": backbone, "neck": neck, "neck_feat": neck_feat}
        return model_factory()[name](num_classes=num_classes, loss="ccsc", pretrained=pretrained, **head)
    if neck != DEFAULT_NECK:
        raise ValueError(f"neck={neck!r} applies to {MODEL_NAME} only; torchreid's {name} has its own head.")
    if not pretrained:
        return torchreid.models.build_model(name, num_classes, loss=ZOO_TRAIN_LOSS, pretrained=False)
    try:
        with _download_timeout(DOWNLOAD_TIMEOUT_S):
            return torchreid.models.build_model(name, num_classes, loss=ZOO_TRAIN_LOSS, pretrained=True)
    except _DOWNLOAD_ERRORS as error:
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for torchreid's {name} could not be downloaded ({type(error).__name__}: "
            f"{str(error)[:200]}). torchreid fetches them into the torch cache ($TORCH_HOME, default ~/.cache/torch): "
            "run once with network access, or pass model.pretrained=false (random init; OSNet was designed to train "
            "well from it), or set model.allow_random_init=true in the recipe to fall back automatically."
        ) from error


@contextlib.contextmanager
def _download_timeout(seconds: float):
    """Sockets opened meanwhile give up after ``seconds`` of silence (torchreid's downloads set no timeout)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@torch.no_grad()
def feature_dim(model: nn.Module, height: int, width: int) -> int:
    """The size of ``model``'s eval-mode feature: its ``feature_dim``, else measured on a blank batch at that size.

    The model's train / eval mode is left as it was.
    """
    dim = getattr(model, "feature_dim", None)
    if isinstance(dim, int):
        return dim
    training = model.training
    device = next(model.parameters()).device
    try:
        return int(model.eval()(torch.zeros(2, 3, height, width, device=device)).shape[1])
    finally:
        model.train(training)
