"""The paper's schedule: linear warm-up 3.5e-5 -> 3.5e-4 over 5 epochs, x0.1 at 35 and 55."""

from __future__ import annotations

import pytest
import torch

from ccsc_plugin.engine.schedule import WarmupMultiStepLR


def lrs_over(epochs: int, scheduler_kwargs: dict) -> list[float]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3.5e-4)
    scheduler = WarmupMultiStepLR(optimizer, **scheduler_kwargs)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


PAPER = {"milestones": [35, 55], "gamma": 0.1, "warmup_epochs": 5, "warmup_start_lr": 3.5e-5}


@pytest.mark.parametrize(
    ("epoch", "lr"),
    [
        (0, 3.5e-5),
        (1, 9.8e-5),
        (4, 2.87e-4),
        (5, 3.5e-4),
        (34, 3.5e-4),
        (35, 3.5e-5),
        (54, 3.5e-5),
        (55, 3.5e-6),
        (99, 3.5e-6),
    ],
)
def test_paper_schedule(epoch, lr):
    assert lrs_over(100, PAPER)[epoch] == pytest.approx(lr, rel=1e-9)


def test_warmup_is_linear():
    lrs = lrs_over(6, PAPER)
    steps = [b - a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert steps == pytest.approx([steps[0]] * 5)


def test_resume_from_state_dict_continues_the_schedule():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3.5e-4)
    scheduler = WarmupMultiStepLR(optimizer, **PAPER)
    for _ in range(36):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3.5e-4)
    fresh = WarmupMultiStepLR(fresh_optimizer, **PAPER)
    fresh.load_state_dict(state)
    fresh_optimizer.step()
    fresh.step()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(lrs_over(38, PAPER)[37])


def test_decreasing_milestones_are_rejected():
    with pytest.raises(ValueError, match="stepsize"):
        lrs_over(1, {**PAPER, "milestones": [55, 35]})
