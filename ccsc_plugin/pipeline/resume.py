"""``model.resume`` resolved once: the checkpoint a run continues, found and read a single time, then passed down.

As torchreid's ``scripts/main.py`` reads its ``--resume`` file once before ``engine.run``, :func:`resolve_resume`
turns ``model.resume`` (a checkpoint file, or a run folder: its newest checkpoint) into a :class:`ResumePoint`.
:func:`ccsc_plugin.pipeline.train.train` makes it once and hands it to everything that needs it: the run folder's
claim (is the checkpoint in this folder?), the check for a finished run (its epoch) and the engine's restore
(its state); none of them looks up or reads the file again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccsc_plugin import checkpoint as ckpt


@dataclass(frozen=True, eq=False)
class ResumePoint:
    """The checkpoint a resumed run continues: what ``model.resume`` said, the file it names, and its contents."""

    requested: str  # model.resume as given: a checkpoint file or a run folder
    path: Path  # the checkpoint file it resolved to (a folder's newest)
    state: dict[str, Any] = field(repr=False)  # the file's contents, loaded once (CPU, weights_only)

    @property
    def epochs(self) -> int:
        """Epochs the checkpoint has completed."""
        return int(self.state["epoch"])

    @property
    def mid_epoch(self) -> bool:
        """Whether it was saved part-way through the next epoch (the resumable checkpoint of a signal)."""
        return "sampler" in self.state


def resolve_resume(resume: str) -> ResumePoint | None:
    """The checkpoint ``resume`` (``model.resume``) names, read from disk once; None for a run that starts afresh.

    A folder without checkpoints is a ``FileNotFoundError`` and a file that is no checkpoint a
    :class:`~ccsc_plugin.checkpoint.CheckpointError`, each saying what to do.
    """
    if not resume:
        return None
    path = ckpt.latest_checkpoint(resume, ckpt.NOTHING_TO_RESUME)
    return ResumePoint(requested=str(resume), path=path, state=ckpt.load_checkpoint(path))
