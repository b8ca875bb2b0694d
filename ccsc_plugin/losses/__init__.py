"""Losses: CCSC (the paper's Eq. 2), Wen et al.'s centre loss, and torchreid's own ID / triplet losses.

torchreid's ``CrossEntropyLoss`` and hard-mining ``TripletLoss`` (Hermans et al.) are re-exported
unchanged, the way torchreid's own ``losses`` package exports its losses.
"""

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.losses.ccsc import CCSCLoss, ccsc_pair_mask
from ccsc_plugin.losses.center import CenterLoss

CrossEntropyLoss = torchreid.losses.CrossEntropyLoss
TripletLoss = torchreid.losses.TripletLoss

__all__ = ["CCSCLoss", "CenterLoss", "CrossEntropyLoss", "TripletLoss", "ccsc_pair_mask"]
