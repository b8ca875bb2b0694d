"""Losses: CCSC (the paper's Eq. 2), Wen et al.'s centre loss, batch-hard triplet, torchreid's ID loss, and the table
of loss terms the engine trains with (:mod:`.terms`).

torchreid's ``CrossEntropyLoss`` is re-exported unchanged, the way torchreid's own ``losses`` package exports its
losses; so is its hard-mining ``TripletLoss`` (Hermans et al.), the reference that :class:`BatchHardTripletLoss`
(what the engine trains with: the same loss without a per-anchor Python loop) is tested against.
"""

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.losses.ccsc import CCSCLoss, ccsc_pair_mask
from ccsc_plugin.losses.center import CenterLoss
from ccsc_plugin.losses.terms import (
    LOSS_TERMS,
    WEIGHT_BOUNDS,
    ActiveTerm,
    LossContext,
    LossTerm,
    active_terms,
    build_active_terms,
    load_term_states,
    loss_sections,
    nothing_trains,
    register_loss_term,
    term_states,
)
from ccsc_plugin.losses.triplet import BatchHardTripletLoss

CrossEntropyLoss = torchreid.losses.CrossEntropyLoss
TripletLoss = torchreid.losses.TripletLoss

__all__ = [
    "LOSS_TERMS",
    "WEIGHT_BOUNDS",
    "ActiveTerm",
    "BatchHardTripletLoss",
    "CCSCLoss",
    "CenterLoss",
    "CrossEntropyLoss",
    "LossContext",
    "LossTerm",
    "TripletLoss",
    "active_terms",
    "build_active_terms",
    "ccsc_pair_mask",
    "load_term_states",
    "loss_sections",
    "nothing_trains",
    "register_loss_term",
    "term_states",
]
