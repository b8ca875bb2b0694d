"""Model names -> models, in torchreid's factory: ``<timm architecture>_ccsc`` and torchreid's own zoo.

One name per architecture, as timm registers one per variant: ``<arch>_ccsc`` is the paper's head
(:class:`~ccsc_plugin.models.ccsc_model.CCSCModel`) on timm's CNN ``arch``, and ``resnet50_ccsc`` is the paper's
model. ``resnet18/34/50/101/152_ccsc`` are registered when ``ccsc_plugin`` is imported; any other timm CNN
(``seresnext50_32x4d_ccsc``, ``resnest50d_ccsc``, ``efficientnet_b0_ccsc``, ...) is registered on first use
(:func:`create_model`, :func:`register_ccsc_model`), after which ``torchreid.models.build_model(name, ...)``
builds it too. Any other name is a torchreid zoo model (``osnet_x0_25``, ``resnet50_fc512``, ...), built in
its ``(logits, features)`` training mode.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable

import timm
from torch import nn

from ccsc_plugin._torchreid import model_factory, torchreid
from ccsc_plugin.models.ccsc_model import DEFAULT_NECK, DEFAULT_NECK_FEAT, PAPER_ARCH, CCSCModel
from ccsc_plugin.models.download import DOWNLOAD_ERRORS, download_timeout
from ccsc_plugin.models.pretrained import PretrainedWeightsUnavailable
from ccsc_plugin.models.timm_backbone import cnn_problem

CCSC_SUFFIX = "_ccsc"
PAPER_MODEL = f"{PAPER_ARCH}{CCSC_SUFFIX}"
EAGER_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # registered at import
ZOO_TRAIN_LOSS = "triplet"  # torchreid's models return (logits, features) in training with this loss
ANY_CNN = f"<timm CNN>{CCSC_SUFFIX} puts the paper's head on any timm CNN, e.g. {PAPER_MODEL} (the paper's), "
ANY_CNN += "resnet18_ccsc, seresnext50_32x4d_ccsc, resnest50d_ccsc, efficientnet_b0_ccsc (timm.list_models())"


def is_ccsc_model(name: str) -> bool:
    """Whether ``name`` is the paper's head on a timm network (``<arch>_ccsc``), not a torchreid zoo model."""
    return name.endswith(CCSC_SUFFIX)


@functools.cache
def ccsc_builder(arch: str) -> Callable[..., CCSCModel]:
    """The torchreid-style factory function of ``<arch>_ccsc`` (one function object per architecture)."""

    def build(
        num_classes: int,
        loss: str = "ccsc",
        pretrained: bool | str = False,
        use_gpu: bool = True,
        neck: str = DEFAULT_NECK,
        neck_feat: str = DEFAULT_NECK_FEAT,
        **kwargs,
    ) -> CCSCModel:
        del use_gpu  # torchreid's factory passes it; the model does not need it
        return CCSCModel(num_classes, loss, pretrained, arch=arch, neck=neck, neck_feat=neck_feat, **kwargs)

    build.__name__ = build.__qualname__ = f"{arch}{CCSC_SUFFIX}"
    build.__doc__ = f"The paper's head on timm's {arch}; ``pretrained`` may be a path to local {arch} weights."
    return build


def register_models() -> None:
    """Add ``<arch>_ccsc`` for the ResNets of ``EAGER_ARCHS`` to torchreid's model factory (idempotent)."""
    for arch in EAGER_ARCHS:
        model_factory().setdefault(f"{arch}{CCSC_SUFFIX}", ccsc_builder(arch))


def model_name_problem(name: str) -> str | None:
    """Why ``name`` (the recipe's ``model.name``) names no model, with the nearest names; None when it names one."""
    if name in model_factory():
        return None
    if is_ccsc_model(name):
        arch = name.removesuffix(CCSC_SUFFIX)
        if not timm.is_model(arch):
            nearest = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.0)
            suggestions = ", ".join(f"{other}{CCSC_SUFFIX}" for other in nearest)
            return f"model.name={name!r}: {arch!r} is not a timm model; nearest: {suggestions}. {ANY_CNN}."
        problem = cnn_problem(arch)
        return None if problem is None else f"model.name={name!r}: {problem}. {ANY_CNN}."
    nearest = difflib.get_close_matches(name, sorted(model_factory()), n=3, cutoff=0.0)
    return (
        f"model.name={name!r} is not a model torchreid knows; nearest: {', '.join(nearest)} "
        f"(all: torchreid.models.show_avai_models(); the paper's: {PAPER_MODEL}; {ANY_CNN})."
    )


def register_ccsc_model(name: str) -> Callable[..., CCSCModel]:
    """Add ``<arch>_ccsc`` to torchreid's factory (idempotent) and return its factory function.

    A name that is not ``<timm CNN>_ccsc`` is a ValueError saying why, with the nearest names.
    """
    if not is_ccsc_model(name):
        raise ValueError(f"{name!r} does not end in {CCSC_SUFFIX}: {ANY_CNN}.")
    if problem := model_name_problem(name):
        raise ValueError(problem)
    return model_factory().setdefault(name, ccsc_builder(name.removesuffix(CCSC_SUFFIX)))


def create_model(
    name: str,
    num_classes: int,
    pretrained: bool | str = False,
    *,
    neck: str = DEFAULT_NECK,
    neck_feat: str = DEFAULT_NECK_FEAT,
) -> nn.Module:
    """The model ``name``, returning ``(logits, features)`` in train mode and features in eval mode.

    ``<arch>_ccsc`` is the paper's head on timm's ``arch`` with ``neck`` (eval feature ``neck_feat``); any other
    name is a torchreid zoo model, built with loss='triplet' (its switch for returning features in training) and
    its own backbone and head (``neck`` must be 'none'; ``neck_feat`` is ignored). An unknown name is a ValueError
    naming the nearest ones; weights that cannot be had raise :class:`PretrainedWeightsUnavailable`.
    """
    if is_ccsc_model(name):
        build = register_ccsc_model(name)
        return build(num_classes=num_classes, loss="ccsc", pretrained=pretrained, neck=neck, neck_feat=neck_feat)
    if problem := model_name_problem(name):
        raise ValueError(problem)
    if neck != DEFAULT_NECK:
        own_head = f"torchreid's {name} has its own head"
        raise ValueError(f"neck={neck!r} applies to the <arch>{CCSC_SUFFIX} models only; {own_head}.")
    if not pretrained:
        return torchreid.models.build_model(name, num_classes, loss=ZOO_TRAIN_LOSS, pretrained=False)
    try:
        with download_timeout():
            return torchreid.models.build_model(name, num_classes, loss=ZOO_TRAIN_LOSS, pretrained=True)
    except DOWNLOAD_ERRORS as error:
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for torchreid's {name} could not be downloaded ({type(error).__name__}: "
            f"{str(error)[:200]}). torchreid fetches them into the torch cache ($TORCH_HOME, default ~/.cache/torch): "
            "run once with network access, or pass model.pretrained=false (random init; OSNet was designed to train "
            "well from it), or set model.allow_random_init=true in the recipe to fall back automatically."
        ) from error
