"""The vectorised batch-hard triplet loss equals torchreid's per-anchor loop, in value and gradient."""

from __future__ import annotations

import pytest
import torch

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.losses import BatchHardTripletLoss


def random_batch(seed: int, p: int, k: int, dim: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(p * k, dim, generator=generator)
    pids = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=generator)]
    return features, pids


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("p", "k", "margin"), [(16, 4, 0.3), (8, 4, 0.3), (4, 2, 1.0), (32, 2, 0.0)])
def test_equals_torchreids_triplet_loss_in_value_and_gradient(seed, p, k, margin):
    features, pids = random_batch(seed, p, k)
    ours_in, theirs_in = features.clone().requires_grad_(), features.clone().requires_grad_()
    ours = BatchHardTripletLoss(margin=margin)(ours_in, pids)
    theirs = torchreid.losses.TripletLoss(margin=margin)(theirs_in, pids)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=0, atol=1e-6)


def test_an_anchor_without_negative_adds_nothing_and_stays_finite():
    features = torch.randn(4, 8, requires_grad=True)
    loss = BatchHardTripletLoss()(features, torch.zeros(4, dtype=torch.long))  # one identity: no negative at all
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(features.grad).all()


def test_the_hardest_pairs_are_mined():
    features = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest positive 1.0, hardest negative 3.0 -> relu(1 - 3 + 2.5) = 0.5; anchor 1: relu(1 - 2 + 2.5)
    # anchor 2: relu(0.5 - 2 + 2.5) = 1.0; anchor 3: relu(0.5 - 2.5 + 2.5) = 0.5
    loss = BatchHardTripletLoss(margin=2.5)(features, pids)
    assert loss.item() == pytest.approx((0.5 + 1.5 + 1.0 + 0.5) / 4, abs=1e-6)
