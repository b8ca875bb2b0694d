"""The paper's learning-rate schedule (torchreid has no warm-up scheduler).

Stepped once per epoch by torchreid's ``Engine.update_lr``. For epoch e (0-based):
    e <  warmup_epochs:  lr = start + (base - start) * e / warmup_epochs     (3.5e-5 -> 3.5e-4)
    e >= warmup_epochs:  lr = base * gamma ** (number of milestones <= e)   (x0.1 at 35 and 55)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ccsc_plugin._torchreid import submodule

WARMUP_MULTISTEP = "warmup_multistep"  # the paper's schedule, WarmupMultiStepLR
# every valid train.lr_scheduler: the plugin's, then what torchreid.optim.build_lr_scheduler builds
LR_SCHEDULERS = (WARMUP_MULTISTEP, *submodule("optim.lr_scheduler").AVAI_SCH)


def warmup_multistep_factor(
    epoch: int, milestones: Sequence[int], gamma: float, warmup_epochs: int, warmup_factor: float
) -> float:
    """Multiplier of the base lr at ``epoch`` (closed form, so resuming needs only the epoch)."""
    if epoch < warmup_epochs:
        return warmup_factor + (1.0 - warmup_factor) * epoch / warmup_epochs
    return gamma ** bisect_right(list(milestones), epoch)


class WarmupMultiStepLR(LRScheduler):
    """Linear warm-up from ``warmup_start_lr`` to each group's lr, then step decay at ``milestones``.

    ``warmup_start_lr`` is the absolute start lr of the first param group; other groups (the
    centre-loss optimiser, staged lrs) warm up by the same factor.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int] = (35, 55),
        gamma: float = 0.1,
        warmup_epochs: int = 5,
        warmup_start_lr: float = 3.5e-5,
        last_epoch: int = -1,
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"train.stepsize must be increasing, got {list(milestones)}.")
        if warmup_epochs < 0:
            raise ValueError(f"train.warmup_epochs must be >= 0, got {warmup_epochs}.")
        base_lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_factor = float(warmup_start_lr) / float(base_lr) if warmup_epochs else 1.0
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = warmup_multistep_factor(
            self.last_epoch, self.milestones, self.gamma, self.warmup_epochs, self.warmup_factor
        )
        return [base_lr * factor for base_lr in self.base_lrs]
