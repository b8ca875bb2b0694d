"""The CCSC loss (the paper's Eq. 2 and Algorithm 1): pull same-person cross-camera features together."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SIMILARITY_EPS = 1e-6  # 1 + S is clamped here: D = 1 / (1 + S) stays finite at S = -1


def ccsc_pair_mask(
    pids: torch.Tensor, camids: torch.Tensor | None, cross_camera: bool = True, include_self: bool = True
) -> torch.Tensor:
    """Boolean N x N mask of the pairs CCSC pulls together, from the N pids and camera ids (shape (N,) each).

    ``cross_camera=True``: same person AND different camera (Eq. 2), which never holds for i = j.
    ``cross_camera=False``: the paper's "without constraint" variant (I = 1): same person, any camera.
    Algorithm 1 builds that mask from pid equality alone, so the diagonal i = j is included by
    default (``include_self=True``); each diagonal term is the constant 1 / (1 + 1) = 0.5 with zero
    gradient, so it only lowers the loss value and scales the gradient by (K - 1) / K per identity.
    """
    mask = pids.view(-1, 1) == pids.view(1, -1)
    if cross_camera:
        if camids is None:
            raise ValueError("CCSCLoss(cross_camera=True) needs the batch's camera ids (data['camid']).")
        mask &= camids.view(-1, 1) != camids.view(1, -1)
    elif not include_self:
        mask &= ~torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    return mask


class CCSCLoss(nn.Module):
    """Cross-camera similarity constraint: L = mean over masked pairs of D = 1 / (1 + S).

    S is the cosine similarity matrix of the batch features. The loss is computed in float32 even
    under autocast. A batch without a qualifying pair returns a zero that still carries a graph, so
    ``backward()`` works and nothing becomes NaN; the masked mean is ``sum(D * mask) / max(count, 1)``, so no step
    waits for the device to say whether a pair exists.

    At S = -1 (a pair of opposite features) D is infinite: 1 + S is clamped at :data:`SIMILARITY_EPS`, so D stays
    at most 1 / eps (with zero gradient there); elsewhere D is exact.
    """

    def __init__(self, cross_camera: bool = True, include_self: bool = True) -> None:
        super().__init__()
        self.cross_camera = cross_camera
        self.include_self = include_self

    def forward(self, features: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of a batch.

        Args:
            features: (N, D) features, any float dtype (any norm: they are L2-normalised here).
            pids: (N,) identity labels.
            camids: (N,) camera ids; needed with ``cross_camera=True``.

        Returns:
            A float32 scalar.
        """
        with torch.autocast(device_type=features.device.type, enabled=False):
            unit = F.normalize(features.float(), dim=1)
            similarity = unit @ unit.t()
            distance = 1.0 / (1.0 + similarity).clamp(min=SIMILARITY_EPS)
            mask = ccsc_pair_mask(pids, camids, self.cross_camera, self.include_self).float()
            return (distance * mask).sum() / mask.sum().clamp(min=1.0)

    def extra_repr(self) -> str:
        return f"cross_camera={self.cross_camera}, include_self={self.include_self}"
