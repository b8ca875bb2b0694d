"""The backbone of an ``<arch>_ccsc`` model with its ImageNet weights: none, timm's hub, or a local file.

A local file is checked key by key against timm's whole network before timm loads it: timm's own loading of a
feature extractor is lenient (it drops whatever does not fit, for EfficientNet or ConvNeXt), so the weights of
another network would otherwise load nothing without a word.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from torch import nn

from ccsc_plugin.checkpoint import CheckpointError, fitting_weights
from ccsc_plugin.models.timm_backbone import ACCEPTED, FEATURE_API, extractor_problem


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but neither a local file nor the hub could provide them."""


def create_backbone(arch: str, pretrained: bool | str | os.PathLike = False) -> nn.Module:
    """timm's feature extractor of the CNN ``arch`` (``FEATURE_API``); ``pretrained`` is False, True (the hub) or a
    weights file. Another kind of network is a ValueError (names are checked before any download by
    :func:`~ccsc_plugin.models.timm_backbone.cnn_problem`, in the factory and the recipe check)."""
    if not timm.is_model(arch):
        raise ValueError(f"{arch!r} is not a timm model: {ACCEPTED}.")
    backbone = _with_weights(arch, pretrained)
    if problem := extractor_problem(arch, backbone):
        raise ValueError(f"{problem}: {ACCEPTED}.")
    return backbone


def _with_weights(arch: str, pretrained: bool | str | os.PathLike) -> nn.Module:
    if isinstance(pretrained, (str, os.PathLike)) and str(pretrained):
        path = Path(pretrained).expanduser()
        check_weights_file(arch, path)
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **FEATURE_API)
    if not pretrained:
        return timm.create_model(arch, pretrained=False, **FEATURE_API)
    try:
        return timm.create_model(arch, pretrained=True, **FEATURE_API)
    except Exception as error:  # offline hub, missing cache, proxy...: all mean "no weights"
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for timm '{arch}' could not be fetched from the hub ({type(error).__name__}). "
            f"Pass model.pretrained_path=/path/to/{arch}.pth (timm or torchvision weights), or "
            "model.pretrained=False (random init; set model.allow_random_init=True in a recipe to fall back "
            "automatically)."
        ) from error


def check_weights_file(arch: str, path: Path) -> None:
    """Raise :class:`PretrainedWeightsUnavailable` unless ``path`` holds every weight of timm's ``arch`` (a timm or
    torchvision ImageNet file; its classifier is ignored), each of the right shape, and nothing else."""
    origin = f"model.pretrained_path {path}"
    fix = (
        f"Pass model.pretrained_path=<a timm or torchvision {arch} ImageNet .pth/.safetensors file> (or set "
        "model.name to <the network the file holds>_ccsc), '' for the hub, or model.pretrained=False for random "
        "init; to start from a ccsc-reid run, set model.load_weights=RUN."
    )
    if not path.is_file():
        raise PretrainedWeightsUnavailable(f"{origin} does not exist. {fix}")
    try:
        weights = timm.models.load_state_dict(str(path))  # .pth or .safetensors; 'module.' prefixes removed
    except Exception as error:  # not a weights file: torch's and safetensors' errors vary
        raise PretrainedWeightsUnavailable(
            f"{origin} is not a weights file ({type(error).__name__}: {str(error)[:200]}). {fix}"
        ) from error
    with torch.device("meta"):  # the names and shapes of the whole network, without allocating it
        network = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
    classifier = network.pretrained_cfg.get("classifier") or ()
    heads = tuple(f"{name}." for name in ((classifier,) if isinstance(classifier, str) else classifier))
    backbone_weights = {key: value for key, value in weights.items() if not key.startswith(heads)}
    try:
        fitting_weights(network, {"state_dict": backbone_weights}, origin, fix=fix)
    except CheckpointError as error:
        raise PretrainedWeightsUnavailable(str(error)) from error
