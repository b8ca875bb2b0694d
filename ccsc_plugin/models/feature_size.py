"""The size of a re-ID model's test feature, for losses that hold per-identity state (the centre loss)."""

from __future__ import annotations

import torch
from torch import nn


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
