"""The paper's re-ID model on a timm CNN: last stride 1, GAP, 1x1 conv -> 512 + BN + ReLU, classifier.

Built by name (``<timm architecture>_ccsc``, :mod:`ccsc_plugin.models.factory`): ``resnet50_ccsc`` is the paper's
(ResNet-50). The backbone is timm's feature extractor of that network (:mod:`.timm_backbone`) with last stride 1
where its family allows it (:mod:`.last_stride`), and ImageNet weights from the hub or a file (:mod:`.pretrained`).
``neck='bnneck'`` adds BoT's BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
Re-identification") between the 512-d feature and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from ccsc_plugin.models.last_stride import set_last_stride_one
from ccsc_plugin.models.pretrained import create_backbone
from ccsc_plugin.models.timm_backbone import feature_channels, last_stage

PAPER_ARCH = "resnet50"  # the paper's backbone: resnet50_ccsc
FEATURE_DIM = 512
# The model's ``loss`` argument (torchreid's convention): softmax -> logits in train mode; the others -> (logits, f).
LOSSES = ("softmax", "ccsc", "triplet")
NECKS = ("none", "bnneck")  # model.neck: the paper's head (f -> classifier) | BoT's f -> BatchNorm1d -> classifier
NECK_FEATS = ("after", "before")  # test.neck_feat: with a BNNeck, eval returns the BN feature (BoT's) | f
DEFAULT_NECK, DEFAULT_NECK_FEAT = "none", "after"


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


class CCSCModel(nn.Module):
    """Re-ID model of the CCSC paper on timm's CNN ``arch`` (ResNet-50 in the paper).

    Eval mode returns the 512-d feature ``f`` (the test feature). Train mode returns logits for
    ``loss='softmax'`` and ``(logits, f)`` for ``'ccsc'`` and ``'triplet'``, as torchreid's engines expect;
    any other ``loss`` is a ValueError. With ``neck='bnneck'`` the logits come from ``bnneck(f)`` through a
    classifier without bias (BoT's head), the metric losses still get ``f``, and eval mode returns
    ``bnneck(f)`` (``neck_feat='after'``) or ``f`` (``'before'``); ``neck='none'`` ignores ``neck_feat``.
    ``return_featuremaps=True`` returns the last stage's feature map (B x C x H/16 x W/16 with last stride 1;
    C = 2048 for ResNet-50) for torchreid's activation-map tools.
    """

    def __init__(
        self,
        num_classes: int,
        loss: str = "ccsc",
        pretrained: bool | str = False,
        feature_dim: int = FEATURE_DIM,
        arch: str = PAPER_ARCH,
        neck: str = DEFAULT_NECK,
        neck_feat: str = DEFAULT_NECK_FEAT,
    ) -> None:
        super().__init__()
        options = (("loss", loss, LOSSES), ("neck", neck, NECKS), ("neck_feat", neck_feat, NECK_FEATS))
        for name, value, choices in options:
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
        self.loss = loss
        self.arch = arch
        self.feature_dim = feature_dim
        self.neck, self.neck_feat = neck, neck_feat
        self.backbone = create_backbone(arch, pretrained)
        set_last_stride_one(self.backbone)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.reduction = nn.Sequential(
            nn.Conv2d(feature_channels(self.backbone), feature_dim, kernel_size=1, bias=False),
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
        """The backbone's last stage, whose output is the feature map: the Grad-CAM target layer."""
        return last_stage(self.backbone)

    def forward(self, x: torch.Tensor, return_featuremaps: bool = False):
        featuremap = self.backbone(x)[-1]
        if return_featuremaps:
            return featuremap
        f = self.reduction(self.global_pool(featuremap)).flatten(1)
        if not self.training:
            return f if self.bnneck is None or self.neck_feat == "before" else self.bnneck(f)
        logits = self.classifier(f if self.bnneck is None else self.bnneck(f))
        if self.loss == "softmax":
            return logits
        return logits, f
