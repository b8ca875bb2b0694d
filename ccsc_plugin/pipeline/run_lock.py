"""One training run per folder at a time: an exclusive lock on ``data.save_dir`` for the whole run.

:func:`hold` takes ``<save_dir>/.run.lock`` with ``flock`` before the run looks at or writes anything in the
folder, and keeps it until the run ends, however it ends: the kernel releases the lock when the process exits,
even on SIGKILL. A second training into the folder meanwhile stops with :class:`RunFolderLocked` naming the
folder and the process that holds it. The file records its holder (pid, host, start time, command); a clean
exit empties it, so a record left in an unlocked file is a stale lock of a process that died, and the next run
takes it over with a line naming that process. ``ccsc-reid test`` and the demo only read a run folder and take
no lock: they work beside a training run.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ccsc_plugin.config import RecipeError

LOCK_FILE = ".run.lock"


class RunFolderLocked(RecipeError):
    """Another training run holds ``data.save_dir``; the message names the folder and the holder."""


def holder_record() -> dict[str, Any]:
    """What the lock file says of the process holding it."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file, or None for an empty or unreadable one."""
    try:
        record = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict[str, Any] | None) -> str:
    if record is None:
        return "a process that left no record"
    return (
        f"process {record.get('pid')} on {record.get('host')} (started {record.get('started')}: "
        f"{record.get('command')})"
    )


@contextlib.contextmanager
def hold(save_dir: str | Path) -> Iterator[list[str]]:
    """Hold the lock of ``save_dir`` for the block; yield the lines to log (a stale lock taken over).

    Raises :class:`RunFolderLocked` when another live process holds it.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderLocked(
                f"{save_dir} is in use: another training run, {_describe(read_holder(path))}, is writing to it. "
                "Two runs in one folder would mix their checkpoints, logs and result.json. Wait for it to end, "
                "stop it (its checkpoint lets you --resume it), or train into another folder: "
                "--set data.save_dir=NEW_FOLDER."
            ) from None
        notes = []
        stale = read_holder(path)
        if stale is not None:
            notes.append(
                f"=> A stale lock of {_describe(stale)} was left in {path}: that process ended without releasing "
                "it (killed?). This run takes the folder over."
            )
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder_record()))
        handle.flush()
        try:
            yield notes
        finally:
            handle.seek(0)
            handle.truncate()  # released cleanly: no stale record for the next run
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
