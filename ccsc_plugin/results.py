"""``result.json``: what a run measured, written next to its checkpoints; the tables read it.

A training run writes ``<run>/result.json`` (``kind: train``); ``ccsc-reid test`` writes its result beside
it, never over it, as ``<save_dir>/tests/<name>.json`` (``kind: test``). Both name the checkpoint they
scored (``checkpoint``) and its SHA-256 (``checkpoint_sha256``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write

RESULT_FILE = "result.json"
TEST_DIR = "tests"  # test results, one JSON file per weights and test, beside the training result


def git_commit() -> str | None:
    """The commit of the plugin's source tree, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_result(target: str | Path, result: dict[str, Any]) -> Path:
    """Atomically write ``result`` as JSON to ``target``: a ``.json`` file, or a run folder's ``result.json``."""
    path = Path(target)
    if path.suffix != ".json":
        path = path / RESULT_FILE
    text = json.dumps(result, indent=2, sort_keys=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_result(path: str | Path) -> dict[str, Any]:
    """Read a run's ``result.json`` (``path`` may be the run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    return json.loads(path.read_text())


def result_files(folder: str | Path) -> list[Path]:
    """Every result under ``folder``: training results (``result.json``) and test results (``tests/*.json``)."""
    folder = Path(folder)
    return sorted({*folder.rglob(RESULT_FILE), *folder.rglob(f"{TEST_DIR}/*.json")})
