"""A train sampler wrapper that can replay an interrupted epoch from the batch where it stopped.

torchreid's samplers draw a whole epoch's order when iteration starts (python ``random`` and numpy).
:class:`ResumableSampler` keeps that order, so a checkpoint taken mid-epoch can store it with the
position reached; after a resume the rest of the epoch is replayed in the same order, and the RNG
states saved at the interruption are restored just before its first batch is loaded (after the
DataLoader iterator exists, which itself draws a seed), so augmentations match too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from ccsc_plugin import rng


class ResumableSampler(Sampler[int]):
    """Yields ``sampler``'s indices, remembering this epoch's order; see the module doc."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.epoch_indices: list[int] = []
        self.start = 0  # samples of ``epoch_indices`` consumed before the current pass (non-zero after a resume)
        self._pending: tuple[list[int], int, dict[str, Any] | None] | None = None

    def __getattr__(self, name: str) -> Any:  # e.g. set_epoch of a distributed sampler
        if name == "sampler":
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def __iter__(self) -> Iterator[int]:
        if self._pending is not None:
            self.epoch_indices, self.start, rng_state = self._pending
            self._pending = None
            if rng_state is not None:
                rng.restore(rng_state)
        else:
            self.epoch_indices, self.start = [int(i) for i in self.sampler], 0
        return iter(self.epoch_indices[self.start :])

    def __len__(self) -> int:
        return len(self.sampler)

    def state(self, samples_done: int) -> dict[str, Any]:
        """This epoch's order and how far it got (``samples_done`` in the current pass), as tensors/ints."""
        return {"indices": torch.tensor(self.epoch_indices, dtype=torch.int64), "position": self.start + samples_done}

    def load_state(self, state: dict[str, Any], rng_state: dict[str, Any] | None) -> None:
        """Make the next pass yield the saved epoch from its saved position, restoring ``rng_state`` first."""
        self._pending = (state["indices"].tolist(), int(state["position"]), rng_state)
