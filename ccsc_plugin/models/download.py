"""A time-out for torchreid's weight downloads, which set none: a stalled download fails instead of hanging a run."""

from __future__ import annotations

import contextlib
import pickle
import socket
from collections.abc import Iterator

DOWNLOAD_TIMEOUT_S = 60  # a download that stalls this long fails instead of hanging the run
# What torchreid's weight download raises when the weights cannot be had: no network, an unreadable cached file.
DOWNLOAD_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)


@contextlib.contextmanager
def download_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    """Sockets opened meanwhile give up after ``seconds`` of silence."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
