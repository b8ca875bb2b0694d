"""Wen et al.'s centre loss (torchreid has none), with its own centre update rule."""

from __future__ import annotations

import torch
from torch import nn


class CenterLoss(nn.Module):
    """Centre loss of Wen et al. (ECCV 2016): L_C = 1/2 * mean_i ||x_i - c_{y_i}||^2.

    The centres are a buffer, not a parameter: the optimiser never touches them. After each step
    the engine calls :meth:`update_centers`, which applies Wen et al.'s rule (their Eq. 4):
    c_j <- c_j - alpha * sum_{i: y_i = j}(c_j - x_i) / (1 + n_j).
    """

    def __init__(self, num_classes: int, feat_dim: int, alpha: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"CenterLoss alpha must lie in [0, 1], got {alpha}.")
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=features.device.type, enabled=False):
            diff = features.float() - self.centers[pids]
            return 0.5 * diff.pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def update_centers(self, features: torch.Tensor, pids: torch.Tensor) -> None:
        """Move each centre seen in the batch towards its features by Wen et al.'s rule."""
        diff = self.centers[pids] - features.detach().float()
        delta = torch.zeros_like(self.centers).index_add_(0, pids, diff)
        counts = torch.bincount(pids, minlength=self.centers.size(0)).to(delta.dtype)
        self.centers -= self.alpha * delta / (1.0 + counts).unsqueeze(1)
