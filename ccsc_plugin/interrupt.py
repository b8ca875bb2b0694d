"""Ctrl-C and SIGTERM during training: finish the current step, save a resumable checkpoint, exit cleanly.

:class:`StopOnSignal` turns the first SIGINT or SIGTERM into a request that the engine honours after
the optimiser step in progress (so the saved state is consistent); a second signal stops at once
(``KeyboardInterrupt``, nothing saved). :class:`TrainingInterrupted` carries where the run stopped
and the checkpoint it saved; the command line turns it into exit status 128 + signal (130 / 143).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint``."""

    def __init__(self, signum: int, checkpoint: Path, where: str) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        self.where = where
        self.exit_code = 128 + signum
        super().__init__(f"{signal.Signals(signum).name} at {where}; resumable checkpoint saved to {checkpoint}")


class StopOnSignal:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signum` instead of killing the process.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n=> {signal.Signals(signum).name} received: saving a resumable checkpoint after the current step "
            "(send it again to stop at once, without saving)",
            flush=True,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
