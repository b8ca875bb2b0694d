"""A NaN or infinite loss stops training before the optimiser step, so no NaN weights are ever saved."""

from __future__ import annotations

import math
from pathlib import Path


class NonFiniteLoss(RuntimeError):
    """A loss term is NaN or infinite; the message names the step, the term and the last good checkpoint."""


def all_finite(summary: dict[str, float]) -> bool:
    """Whether every loss value of a step's summary is finite."""
    return all(math.isfinite(value) for name, value in summary.items() if name.startswith("loss"))


def non_finite_loss(summary: dict[str, float], where: str, last_checkpoint: Path | None) -> NonFiniteLoss:
    """The error for a step whose ``summary`` holds a NaN or infinite loss at ``where``."""
    bad = [name for name, value in summary.items() if name.startswith("loss_") and not math.isfinite(value)]
    term = bad[0] if bad else "loss"
    values = ", ".join(f"{name} = {value:.4g}" for name, value in summary.items() if name.startswith("loss_"))
    kept = (
        f"The last good checkpoint is {last_checkpoint}; resume from it with --resume."
        if last_checkpoint
        else "No checkpoint had been written yet."
    )
    return NonFiniteLoss(
        f"{term} is {summary[term]} at {where} ({values}). Training stopped before the optimiser step, so no "
        f"checkpoint of these weights was written. {kept} Try a lower train.lr, train.amp=off, or check the data."
    )
