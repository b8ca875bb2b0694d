"""A run's ``train.log``: everything printed while it trains or tests, also written to the run folder."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from ccsc_plugin.engine import distributed


class _Tee(io.TextIOBase):
    """Write to the console and a log file at once (torchreid's Logger closes the console when collected).

    A log file that cannot be written any more (its disk is full) is dropped with one line on the console:
    the run goes on, and the error that matters (a checkpoint that cannot be saved) is reported where it happens.
    """

    def __init__(self, console, log_file) -> None:
        self.console, self.log_file = console, log_file

    def write(self, text: str) -> int:
        self.console.write(text)
        if self.log_file is not None:
            try:
                self.log_file.write(text)
            except OSError as error:
                self._drop_log(error)
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        if self.log_file is not None:
            try:
                self.log_file.flush()
            except OSError as error:
                self._drop_log(error)

    def _drop_log(self, error: OSError) -> None:
        name, self.log_file = getattr(self.log_file, "name", "the log"), None
        self.console.write(f"\n=> WARNING: {name} cannot be written ({error.strerror}); logging to the console only\n")


@contextlib.contextmanager
def log_to(path: Path):
    """Tee stdout into ``path`` for the duration of a run (line-buffered: the log follows the run live).

    Under DDP only rank 0 logs.
    """
    if not distributed.is_main_process():
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(path, "a", buffering=1)  # noqa: SIM115 (closed below, whatever happened to it)
    try:
        with contextlib.redirect_stdout(_Tee(sys.stdout, log_file)):
            yield
    finally:
        with contextlib.suppress(OSError):
            log_file.close()
