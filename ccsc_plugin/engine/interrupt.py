"""Ctrl-C and SIGTERM during a run: finish the current step or stop the evaluation, exit cleanly, resumable.

:class:`StopOnSignal` turns the first SIGINT or SIGTERM into a request that the engine honours at the next
safe point: in training after the optimiser step in progress (it then saves a resumable checkpoint), in an
evaluation at the next batch (the weights were saved before it started). It prints what will happen, as
the engine set it with :meth:`StopOnSignal.promising`; a second signal stops at once (``KeyboardInterrupt``,
nothing saved). Only the process that installed the handler acts on it: DataLoader workers ignore both signals
(``data.loaders.leave_signals_to_main_process``), since a terminal's Ctrl-C, ``timeout``, ``scancel`` and systemd
reach every process of the group.
:class:`TrainingInterrupted` carries where the run stopped and the checkpoint that holds its state; the
command line turns it into exit status 128 + signal (130 / 143) and the command that resumes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
IN_TRAINING = "saving a resumable checkpoint after the current step (send it again to stop at once, without saving)"


class TrainingInterrupted(Exception):
    """A run stopped on a signal; ``checkpoint`` holds its state (``in_evaluation``: the weights being evaluated)."""

    def __init__(self, signum: int, checkpoint: Path, where: str, in_evaluation: bool = False) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        self.where = where
        self.in_evaluation = in_evaluation
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        if in_evaluation:
            message = f"{name} during {where}: evaluation stopped; the weights were saved before it, to {checkpoint}"
        else:
            message = f"{name} at {where}; resumable checkpoint saved to {checkpoint}"
        super().__init__(message)


class StopOnSignal:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signum` instead of killing the process.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.promise = IN_TRAINING  # what the first signal leads to, printed when it arrives
        self._pid = os.getpid()
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker: the process that installed the handler acts
            return
        if self.signum is not None:  # second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n=> {signal.Signals(signum).name} received: {self.promise}", flush=True)

    @contextmanager
    def promising(self, promise: str) -> Iterator[None]:
        """Within the block, the message of a first signal says ``promise`` (what the engine will do)."""
        previous, self.promise = self.promise, promise
        try:
            yield
        finally:
            self.promise = previous

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopOnSignal:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
