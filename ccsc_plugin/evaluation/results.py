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

from ccsc_plugin.checkpoint import atomic_write

RESULT_FILE = "result.json"
TEST_DIR = "tests"  # test results, one JSON file per weights and test, beside the training result


class ResultFileError(ValueError):
    """A ``result.json`` (or a file the tables are written to) is unusable; the message names the file."""


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
    """Read a run's ``result.json`` (``path`` may be the run folder); anything but a JSON object is an error."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        result = json.loads(path.read_bytes())
    except ValueError as error:  # not JSON, or not UTF-8
        raise ResultFileError(
            f"{path} is not a JSON result file ({error}). Give result.json files written by `ccsc-reid train` "
            "or `ccsc-reid test`, or train the run again."
        ) from None
    if not isinstance(result, dict):
        raise ResultFileError(f"{path} holds a JSON {type(result).__name__}, not a result object: is it a result.json?")
    return result


def result_files(folder: str | Path) -> list[Path]:
    """Every result under ``folder``: training results (``result.json``) and test results (``tests/*.json``)."""
    folder = Path(folder)
    return sorted({*folder.rglob(RESULT_FILE), *folder.rglob(f"{TEST_DIR}/*.json")})
