"""The loss terms as one table: each term's recipe section, builder, input, state update and method-name part.

fast-reid's ``modeling/meta_arch/baseline.py`` builds every loss term from the config in one place; here that place
is :data:`LOSS_TERMS`. The recipe defaults (``config.defaults``), the recipe checks (``config.validation``), the
engine's terms and their checkpointed state (``engine``) and the method name (``pipeline.build.method_name``) all
read it, so a new loss is its module and one :func:`register_loss_term` call (see the README's "Adding a loss").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode as CN

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.losses.ccsc import CCSCLoss
from ccsc_plugin.losses.center import CenterLoss
from ccsc_plugin.losses.triplet import BatchHardTripletLoss

INPUTS = ("logits", "features")  # the classifier's logits | the metric feature (before a BNNeck: tests/test_bnneck.py)
WEIGHT_BOUNDS = (0, math.inf)  # every term's weight; 0 switches the term off


@dataclass(frozen=True)
class LossContext:
    """What a builder may need beyond its recipe section.

    ``feature_dim`` measures the model's feature size when called (a forward pass): only builders that need it call it.
    """

    num_classes: int
    feature_dim: Callable[[], int]
    use_gpu: bool


@dataclass(frozen=True)
class LossTerm:
    """One row of the table.

    Args:
        name: the log key ``loss_<name>`` and, for a module with state (buffers such as the centres), the
            checkpoint key of that state.
        section: the recipe section ``loss.<section>``.
        defaults: the section's keys with their defaults; ``weight`` among them (> 0 trains the term).
        build: ``(section, context) -> nn.Module``, called with the section as a yacs node (attribute access).
        input: ``"logits"`` or ``"features"``: what the module's first argument is; the second is the pids.
        camids: the module takes the batch's camera ids as a third argument.
        gathered: under ``loss.gather_features`` (DDP) the module sees every rank's features, pids and camids.
        update: ``(module, features, pids)`` after each optimiser step, with every rank's detached features and pids
            (so that every rank applies the same update), e.g. the centre loss's centre update.
        ranges: the valid closed interval ``(low, high)`` of each numeric key other than ``weight``.
        method_part: ``section -> str``, its part of the method name; None: the section's name.
    """

    name: str
    section: str
    defaults: Mapping[str, Any]
    build: Callable[[Any, LossContext], nn.Module]
    input: str = "features"
    camids: bool = False
    gathered: bool = False
    update: Callable[[nn.Module, torch.Tensor, torch.Tensor], None] | None = None
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    method_part: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.input not in INPUTS:
            problems.append(f"input must be one of {', '.join(INPUTS)}, got {self.input!r}")
        if self.gathered and self.input != "features":
            problems.append("gathered applies to input='features' only (the features are what ranks all-gather)")
        if "weight" not in self.defaults:
            problems.append("defaults must hold 'weight' (0: off by default)")
        if unknown := sorted(set(self.ranges) - set(self.defaults)):
            problems.append(f"ranges name keys its defaults lack: {', '.join(unknown)}")
        if problems:
            raise ValueError(f"LossTerm {self.name!r}: " + "; ".join(problems) + ".")

    def arguments(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The module's arguments from ``batch`` (``logits``, ``features``, ``pids``, ``camids``)."""
        return (batch[self.input], batch["pids"], *([batch["camids"]] if self.camids else []))

    def part_of_method(self, section: Any) -> str:
        """Its part of the method name, e.g. ``ccsc-noconstraint``."""
        return self.section if self.method_part is None else self.method_part(section)


@dataclass
class ActiveTerm:
    """A term with weight > 0, built: its table row, its module and its weight in the total loss."""

    term: LossTerm
    module: nn.Module
    weight: float


LOSS_TERMS: dict[str, LossTerm] = {}  # name -> term, in the order of the method name and the log


def register_loss_term(term: LossTerm) -> LossTerm:
    """Add ``term`` to :data:`LOSS_TERMS`: its section joins the recipes' ``loss`` defaults and checks."""
    for other in LOSS_TERMS.values():
        if term.name == other.name or term.section == other.section:
            raise ValueError(
                f"LossTerm {term.name!r} (section loss.{term.section}) clashes with the registered {other.name!r} "
                f"(section loss.{other.section}): give the new term its own name and section."
            )
    LOSS_TERMS[term.name] = term
    return term


def loss_sections(given: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, CN]:
    """Every term's section: its defaults, with ``given``'s keys over them (``{"triplet": {"weight": 1.0}}``).

    A section or key no term has is an error naming it and what there is.
    """
    sections = {term.section: CN(dict(term.defaults)) for term in LOSS_TERMS.values()}
    for name, values in (given or {}).items():
        if name not in sections:
            raise KeyError(
                f"loss.{name} is not a loss term's section; the sections are {', '.join(sections)} "
                "(loss.gather_features is the engine's gather_features argument)."
            )
        if not isinstance(values, Mapping):
            raise TypeError(f"loss.{name} is a section ({', '.join(sections[name])}), got {values!r}.")
        for key, value in values.items():
            if key not in sections[name]:
                raise KeyError(f"loss.{name}.{key} is not a key of loss.{name}: {', '.join(sections[name])}.")
            sections[name][key] = value
    return sections


def active_terms(sections: Mapping[str, Any]) -> list[LossTerm]:
    """The terms whose section in ``sections`` (the recipe's ``loss``) has weight > 0, in table order."""
    return [term for term in LOSS_TERMS.values() if sections[term.section].weight > 0]


def nothing_trains(sections: Mapping[str, Any]) -> str | None:
    """Why ``sections`` (the recipe's ``loss``) train nothing (every weight is 0), or None."""
    if active_terms(sections):
        return None
    weights = ", ".join(f"loss.{term.section}.weight" for term in LOSS_TERMS.values())
    return f"Every loss weight is 0 ({weights}): nothing would train. Set one of them > 0."


def build_active_terms(sections: Mapping[str, Any], context: LossContext) -> dict[str, ActiveTerm]:
    """Each term with weight > 0, built from its section; a term with weight 0 is not built (nor computed)."""
    if problem := nothing_trains(sections):
        raise ValueError(problem)
    return {
        term.name: ActiveTerm(term, term.build(sections[term.section], context), sections[term.section].weight)
        for term in active_terms(sections)
    }


def term_states(terms: Mapping[str, ActiveTerm]) -> dict[str, dict[str, torch.Tensor]]:
    """The state of each term whose module has some (the centre loss's centres), under the term's name."""
    states = {name: active.module.state_dict() for name, active in terms.items()}
    return {name: state for name, state in states.items() if state}


def load_term_states(terms: Mapping[str, ActiveTerm], checkpoint: Mapping[str, Any]) -> None:
    """Restore each term's state that ``checkpoint`` holds under the term's name (see :func:`term_states`)."""
    for name, active in terms.items():
        if name in checkpoint and active.module.state_dict():
            active.module.load_state_dict(checkpoint[name])


def _softmax(softmax: CN, context: LossContext) -> nn.Module:
    return torchreid.losses.CrossEntropyLoss(
        num_classes=context.num_classes, use_gpu=context.use_gpu, label_smooth=softmax.label_smooth
    )


def _ccsc(ccsc: CN, context: LossContext) -> nn.Module:
    return CCSCLoss(cross_camera=ccsc.cross_camera, include_self=ccsc.include_self)


def _ccsc_method(ccsc: CN) -> str:
    return "ccsc" if ccsc.cross_camera else "ccsc-noconstraint"  # Table 2's "without constraint"


def _triplet(triplet: CN, context: LossContext) -> nn.Module:
    return BatchHardTripletLoss(margin=triplet.margin)


def _center(center: CN, context: LossContext) -> nn.Module:
    return CenterLoss(context.num_classes, context.feature_dim(), alpha=center.alpha)  # centres: the feature's size


# The paper's terms (Sec. 4.2: softmax + 1.5 CCSC by default; Table 2's variant; Table 3's triplet and centre loss).
# label_smooth: the paper uses plain softmax cross-entropy; include_self: only used when cross_camera is False
# (Algorithm 1 keeps i = j); alpha: the centre update rate.
PAPER_TERMS = (
    LossTerm("id", "softmax", {"weight": 1.0, "label_smooth": False}, _softmax, input="logits"),
    LossTerm(
        "ccsc",
        "ccsc",
        {"weight": 1.5, "cross_camera": True, "include_self": True},
        _ccsc,
        camids=True,
        gathered=True,
        method_part=_ccsc_method,
    ),
    LossTerm(
        "triplet", "triplet", {"weight": 0.0, "margin": 0.3}, _triplet, gathered=True, ranges={"margin": (0, math.inf)}
    ),
    LossTerm(
        "center",
        "center",
        {"weight": 0.0, "alpha": 0.5},
        _center,
        update=CenterLoss.update_centers,
        ranges={"alpha": (0, 1)},
    ),
)
for _term in PAPER_TERMS:
    register_loss_term(_term)
