"""Last stride 1 (the paper's Sec. 3.1): the last stage keeps its input's resolution, so the feature map is 1/16
of the input rather than 1/32 (24 x 8 for a 384 x 128 crop), with the same weights.

One rule for every timm family, applied to the last stage (the module timm's ``feature_info`` names last): each
stride-2 convolution or pooling whose window is centred, so that it keeps the size at stride 1 (kernel 1; kernel 3
with padding 1; TF "same" padding), gets stride 1, and each pooling whose window is its stride (the 2x2 average
pool on the shortcut of ResNet-D and ResNeSt) only downsamples and becomes an identity. The change is tried on a
copy of the stage first and made only if the copy then keeps its input's resolution; a stage with another kind of
strided layer, or none, is left as timm built it. So ResNet, ResNeXt, SE-ResNet(Xt), ResNet-D, ResNeSt, RegNet,
ResNetV2, ... get last stride 1, while families whose last stage does not downsample (EfficientNet, MobileNet:
their last stride-2 is in an earlier stage) or downsamples otherwise (ConvNeXt's 2x2 patchify convolution,
DenseNet's transition before its last block) keep timm's strides: a 1/32 map, ImageNet weights used as trained.
"""

from __future__ import annotations

import copy

import torch
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame
from torch import nn
from torch.nn.modules.utils import _pair

from ccsc_plugin.models.timm_backbone import last_stage

STRIDED_LAYERS = (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)
SAME_PADDING = (Conv2dSame, AvgPool2dSame, MaxPool2dSame)  # TF "same" padding, computed for each input
PROBE_SIZE = (128, 64)  # the blank batch (height, width) that finds the last stage's input


def _only_downsamples(layer: nn.Module) -> bool:
    """A pooling whose window is its stride, without padding: at stride 1 it would shrink the map, so it goes."""
    pooling = isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d))
    return pooling and _pair(layer.kernel_size) == _pair(layer.stride) and _pair(layer.padding) == (0, 0)


def _keeps_size_at_stride_one(layer: nn.Module) -> bool:
    if isinstance(layer, SAME_PADDING):
        return True
    kernels, paddings, dilations = (_pair(getattr(layer, key, 1)) for key in ("kernel_size", "padding", "dilation"))
    return all(d * (k - 1) == 2 * p for k, p, d in zip(kernels, paddings, dilations, strict=True))


def unstride(stage: nn.Module) -> bool:
    """Give ``stage``'s strided layers stride 1 by the module's rule; False (``stage`` unchanged) if nothing strides
    there or a strided layer would change the map's size at stride 1."""
    strided = [
        (name, layer)
        for name, layer in stage.named_modules()
        if isinstance(layer, STRIDED_LAYERS) and _pair(layer.stride) != (1, 1)
    ]
    if not strided or not all(_only_downsamples(layer) or _keeps_size_at_stride_one(layer) for _, layer in strided):
        return False
    for name, layer in strided:
        if _only_downsamples(layer):
            stage.set_submodule(name, nn.Identity())
        else:
            layer.stride = (1, 1) if isinstance(layer, nn.Conv2d) else 1
    return True


@torch.no_grad()
def set_last_stride_one(backbone: nn.Module) -> bool:
    """Make the last stage of a timm feature extractor keep its input's resolution, if the rule fits; whether it did.

    The stage's input is read from a blank batch; a copy of the stage is changed and run on it first, so a stage
    the rule does not fit is never changed. The extractor's train / eval mode is left as it was.
    """
    stage = last_stage(backbone)
    inputs: list[tuple] = []
    handle = stage.register_forward_pre_hook(lambda module, args: inputs.append(args))
    training = backbone.training
    try:
        parameter = next(backbone.parameters())
        backbone.eval()(torch.zeros(1, 3, *PROBE_SIZE, device=parameter.device, dtype=parameter.dtype))
        stage_input = inputs[0][0] if inputs and len(inputs[0]) == 1 else None
        trial = copy.deepcopy(stage)
        if not isinstance(stage_input, torch.Tensor) or not unstride(trial):
            return False  # a multi-branch stage (HRNet), or nothing the rule can change
        output = trial(stage_input)
    except (RuntimeError, ValueError, AssertionError):  # the blank batch does not fit the network, or the changed
        return False  # stage's branches no longer meet: timm's own checks raise all three
    finally:
        handle.remove()
        backbone.train(training)
    return isinstance(output, torch.Tensor) and output.shape[-2:] == stage_input.shape[-2:] and unstride(stage)
