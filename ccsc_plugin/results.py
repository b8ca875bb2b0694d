"""``result.json``: what a run measured, written next to its checkpoints; the tables read it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write

RESULT_FILE = "result.json"


def git_commit() -> str | None:
    """The commit of the plugin's source tree, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_result(save_dir: str | Path, result: dict[str, Any]) -> Path:
    """Atomically write ``result`` as ``<save_dir>/result.json``."""
    text = json.dumps(result, indent=2, sort_keys=True)
    return atomic_write(Path(save_dir) / RESULT_FILE, lambda tmp: Path(tmp).write_text(text))


def read_result(path: str | Path) -> dict[str, Any]:
    """Read a run's ``result.json`` (``path`` may be the run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    return json.loads(path.read_text())
