"""CCSCLoss against a literal triple loop over Eq. (2); CenterLoss against Wen et al.'s rule."""

from __future__ import annotations

import math

import pytest
import torch

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.losses import CCSCLoss, CenterLoss, CrossEntropyLoss, TripletLoss
from ccsc_plugin.losses.ccsc import SIMILARITY_EPS


def eq2_reference(features, pids, camids, cross_camera=True, include_self=True):
    """Eq. (2) / Algorithm 1 written as loops: mean of 1 / (1 + cos(f_i, f_j)) over masked pairs."""
    n = len(pids)
    total, count = 0.0, 0
    for i in range(n):
        for j in range(n):
            same_person = pids[i] == pids[j]
            if cross_camera:
                keep = same_person and camids[i] != camids[j]
            else:
                keep = same_person and (include_self or i != j)
            if keep:
                cos = sum(a * b for a, b in zip(features[i], features[j], strict=True)) / (
                    math.sqrt(sum(a * a for a in features[i])) * math.sqrt(sum(b * b for b in features[j]))
                )
                total += 1.0 / (1.0 + cos)
                count += 1
    return total / count if count else 0.0


def random_batch(seed, p=4, k=4, cams=3, dim=16):
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(p * k, dim, generator=generator) + 0.05
    pids = torch.arange(p).repeat_interleave(k)
    camids = torch.randint(0, cams, (p * k,), generator=generator)
    return features, pids, camids


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("cross_camera", "include_self"), [(True, True), (False, True), (False, False)])
def test_ccsc_equals_eq2_loop(seed, cross_camera, include_self):
    features, pids, camids = random_batch(seed)
    loss = CCSCLoss(cross_camera=cross_camera, include_self=include_self)(features, pids, camids)
    expected = eq2_reference(features.double().tolist(), pids.tolist(), camids.tolist(), cross_camera, include_self)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ccsc_signed_features_match_loop():
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(12, 8, generator=generator)
    pids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    camids = torch.tensor([0, 1, 2] * 4)
    loss = CCSCLoss()(features, pids, camids)
    assert loss.item() == pytest.approx(
        eq2_reference(features.double().tolist(), pids.tolist(), camids.tolist()), abs=1e-6
    )


@pytest.mark.parametrize(
    ("pids", "camids", "cross_camera"),
    [
        ([0, 1, 2, 3], [0, 1, 0, 1], True),  # K = 1: no positive pair at all
        ([0, 0, 1, 1], [0, 0, 1, 1], True),  # one camera per identity: no cross-camera pair
        ([0, 0, 0, 0], [2, 2, 2, 2], True),  # one identity, one camera
        ([0, 1, 2, 3], [0, 1, 0, 1], False),  # K = 1 without constraint, diagonal excluded below
    ],
)
def test_no_qualifying_pair_gives_zero_with_graph(pids, camids, cross_camera):
    features = torch.rand(len(pids), 8, requires_grad=True)
    loss = CCSCLoss(cross_camera=cross_camera, include_self=False)(features, torch.tensor(pids), torch.tensor(camids))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_one_identity_many_cameras():
    features = torch.rand(6, 8)
    pids, camids = torch.zeros(6, dtype=torch.long), torch.tensor([0, 0, 1, 1, 2, 2])
    loss = CCSCLoss()(features, pids, camids)
    assert loss.item() == pytest.approx(eq2_reference(features.double().tolist(), [0] * 6, camids.tolist()), abs=1e-6)


def test_diagonal_only_without_constraint_is_half():
    """K = 1 with the diagonal: each term is 1 / (1 + 1)."""
    loss = CCSCLoss(cross_camera=False, include_self=True)(torch.rand(4, 8), torch.arange(4), None)
    assert loss.item() == pytest.approx(0.5)


def test_cross_camera_needs_camids():
    with pytest.raises(ValueError, match="camera ids"):
        CCSCLoss()(torch.rand(4, 8), torch.zeros(4, dtype=torch.long), None)


def test_gradient_matches_loop_autograd():
    features, pids, camids = random_batch(11, dim=6)
    mine = features.double().clone().requires_grad_(True)
    CCSCLoss()(mine, pids, camids).backward()
    ref = features.double().clone().requires_grad_(True)
    unit = ref / ref.norm(dim=1, keepdim=True)
    terms = [
        1.0 / (1.0 + unit[i] @ unit[j])
        for i in range(len(pids))
        for j in range(len(pids))
        if pids[i] == pids[j] and camids[i] != camids[j]
    ]
    torch.stack(terms).mean().backward()
    torch.testing.assert_close(mine.grad, ref.grad, atol=1e-6, rtol=1e-4)


def test_gradient_pulls_cross_camera_positives_together():
    features, pids, camids = random_batch(2)
    features.requires_grad_(True)
    loss_fn = CCSCLoss()
    before = loss_fn(features, pids, camids)
    before.backward()
    with torch.no_grad():
        after = loss_fn(features - 0.5 * features.grad, pids, camids)
    assert after < before


def test_bf16_autocast_computes_in_float32():
    features, pids, camids = random_batch(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = CCSCLoss()(features.bfloat16(), pids, camids)
    assert loss.dtype == torch.float32
    expected = CCSCLoss()(features.bfloat16().float(), pids, camids)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_opposite_features_of_one_person_give_a_finite_loss_and_gradient():
    """At S = -1, D = 1 / (1 + S) is infinite; the guard holds it at 1 / eps."""
    feature = 3.0 * torch.eye(8)[:1]  # normalised exactly: S = -1 to the bit
    features = torch.cat([feature, -feature]).requires_grad_(True)
    loss = CCSCLoss()(features, torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(1.0 / SIMILARITY_EPS, rel=1e-3)
    loss.backward()
    assert torch.isfinite(features.grad).all()


def test_an_opposite_pair_outside_the_mask_leaves_the_loss_equal_to_eq2():
    """Masked out by the multiply (no indexing), an infinite D would make 0 * inf = NaN without the guard."""
    feature = 3.0 * torch.eye(8)[:1]  # normalised exactly: S = -1 to the bit
    features = torch.cat([feature, -feature, torch.rand(2, 8) + 0.05]).requires_grad_(True)
    pids, camids = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 0, 1])  # 0 and 1: other people, opposite
    loss = CCSCLoss()(features, pids, camids)
    expected = eq2_reference(features.detach().double().tolist(), pids.tolist(), camids.tolist())
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert torch.isfinite(features.grad).all() and torch.equal(features.grad[:2], torch.zeros(2, 8))


@pytest.mark.parametrize(
    ("pids", "camids"),
    [([0, 0, 1, 1], [0, 1, 0, 1]), ([0, 1, 2, 3], [0, 1, 0, 1])],
    ids=["pairs", "no-pair"],
)
def test_the_loss_never_asks_the_device_for_a_python_value(monkeypatch, pids, camids):
    """No ``bool(tensor)`` / ``.item()`` in the forward: a GPU step never waits for the device (no host sync)."""
    features = torch.rand(len(pids), 8, requires_grad=True)
    pids, camids = torch.tensor(pids), torch.tensor(camids)
    expected = eq2_reference(features.detach().double().tolist(), pids.tolist(), camids.tolist())

    def host_sync(tensor, *args, **kwargs):
        raise AssertionError("CCSCLoss turned a tensor into a Python value (a host sync on a GPU)")

    for name in ("__bool__", "__int__", "__float__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_sync)
    loss = CCSCLoss()(features, pids, camids)
    monkeypatch.undo()
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_center_loss_value_and_wen_update():
    torch.manual_seed(0)
    center = CenterLoss(num_classes=3, feat_dim=4, alpha=0.5)
    center.centers.copy_(torch.randn(3, 4))
    features, pids = torch.randn(5, 4), torch.tensor([0, 0, 2, 2, 2])
    expected = 0.5 * sum(((features[i] - center.centers[pids[i]]) ** 2).sum() for i in range(5)) / 5
    assert center(features, pids).item() == pytest.approx(expected.item(), rel=1e-6)

    old = center.centers.clone()
    center.update_centers(features, pids)
    for j in range(3):
        members = [i for i in range(5) if pids[i] == j]
        delta = sum((old[j] - features[i] for i in members), torch.zeros(4)) / (1 + len(members))
        torch.testing.assert_close(center.centers[j], old[j] - 0.5 * delta)


def test_center_loss_centres_are_not_parameters():
    center = CenterLoss(num_classes=3, feat_dim=4)
    assert list(center.parameters()) == []
    assert "centers" in center.state_dict()


def test_torchreid_losses_are_reused_not_rewritten():
    assert CrossEntropyLoss is torchreid.losses.CrossEntropyLoss
    assert TripletLoss is torchreid.losses.TripletLoss  # the reference of BatchHardTripletLoss (test_triplet.py)
