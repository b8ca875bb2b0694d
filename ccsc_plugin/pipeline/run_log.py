"""A run's ``train.log``: everything printed while it trains or tests, also written to the run folder."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from ccsc_plugin.engine import distributed


class _Tee(io.TextIOBase):
    """Write to several text streams at once (torchreid's Logger closes the console when collected)."""

    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


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
    with open(path, "a", buffering=1) as log_file, contextlib.redirect_stdout(_Tee(sys.stdout, log_file)):
        yield
