"""``result.json``: what a run measured, written next to its checkpoints; the tables read it.

A training run writes ``<run>/result.json`` (``kind: train``); ``ccsc-reid test`` writes its result beside
it, never over it, as ``<save_dir>/tests/<name>.json`` (``kind: test``). Both name the checkpoint they
scored (``checkpoint``) and its SHA-256 (``checkpoint_sha256``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ccsc_plugin.checkpoint import atomic_write

RESULT_FILE = "result.json"
TEST_DIR = "tests"  # test results, one JSON file per weights and test, beside the training result


FRACTIONS = ("rank1", "rank5", "rank10", "mAP", "mINP")  # metrics in [0, 1]; a gallery below 5 or 10 leaves
REQUIRED_FRACTIONS = ("rank1", "mAP")  # rank5 / rank10 null, but every finished evaluation records these two
GAP_MEANS = ("same_camera", "cross_camera", "different_person")  # mean cosine similarities, in [-1, 1]
_AGAIN = "Train or test the run again (ccsc-reid train / ccsc-reid test), or leave the file out of the RUN_DIRs."


class ResultFileError(ValueError):
    """A ``result.json`` (or a file the tables are written to) is unusable; the message names the file."""


def write_result(target: str | Path, result: dict[str, Any]) -> Path:
    """Atomically write ``result`` as JSON to ``target``: a ``.json`` file, or a run folder's ``result.json``."""
    path = Path(target)
    if path.suffix != ".json":
        path = path / RESULT_FILE
    text = json.dumps(result, indent=2, sort_keys=True)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), size_hint=len(text.encode()))


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


def _shown(value: Any) -> str:
    """``value`` as it reads in the JSON file (``NaN``, ``true``, ``null``, ``"92.3"``), shortened."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(path: Path, key: str, value: Any, low: float, high: float, meaning: str) -> float:
    """``value`` if it is a finite real number (not a bool) in [low, high]; else the error naming file and key."""
    problem = f"{path}: {key} is {_shown(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(type(value), "no number")
        raise ResultFileError(f"{problem} ({'null' if value is None else kind}), not a number: {meaning}. {_AGAIN}")
    if not math.isfinite(value):
        raise ResultFileError(
            f"{problem}, not a finite number (a diverged model or a broken evaluation gives NaN): {meaning}. {_AGAIN}"
        )
    if not low <= value <= high:
        percent = " Was it written in percent? Divide it by 100." if high == 1 and 1 < value <= 100 else ""
        raise ResultFileError(f"{problem}, outside [{low:g}, {high:g}]: {meaning}.{percent} {_AGAIN}")
    return float(value)


def _check_camera_gap(path: Path, gap: Any) -> None:
    """The ``camera_gap`` block (:mod:`ccsc_plugin.evaluation.camera_gap`): means in [-1, 1] or null, the gap
    their difference, pair counts whole numbers >= 0, rank-1 per camera pair a fraction or null."""
    if not isinstance(gap, dict):
        raise ResultFileError(f"{path}: camera_gap is {_shown(gap)}, not an object of similarity means. {_AGAIN}")
    cosine = "mean cosine similarities lie in [-1, 1] (null: no such pair)"
    means = {
        k: None if gap.get(k) is None else _number(path, f"camera_gap.{k}", gap[k], -1, 1, cosine) for k in GAP_MEANS
    }
    if gap.get("gap") is not None:
        value = _number(path, "camera_gap.gap", gap["gap"], -2, 2, "the gap is same_camera - cross_camera")
        same, cross = means["same_camera"], means["cross_camera"]
        if same is None or cross is None or abs(value - (same - cross)) > 1e-6:
            raise ResultFileError(
                f"{path}: camera_gap.gap is {_shown(value)}, but same_camera - cross_camera is "
                f"{'null' if same is None or cross is None else f'{same - cross:.6g}'}: the file was edited. {_AGAIN}"
            )
    for kind, count in _block(path, gap, "pairs").items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ResultFileError(f"{path}: camera_gap.pairs.{kind} is {_shown(count)}, not a pair count. {_AGAIN}")
    for pair, value in _block(path, gap, "rank1_by_camera_pair").items():
        if value is not None:
            _number(path, f"camera_gap.rank1_by_camera_pair.{pair}", value, 0, 1, "rank-1 is a fraction in [0, 1]")


def _block(path: Path, gap: dict[str, Any], key: str) -> dict[str, Any]:
    """``camera_gap[key]``: an object, or {} where absent or null."""
    block = gap.get(key) or {}
    if not isinstance(block, dict):
        raise ResultFileError(f"{path}: camera_gap.{key} is {_shown(block)}, not an object. {_AGAIN}")
    return block


def ranking(result: dict[str, Any]) -> str | None:
    """How a result's ranking differs from the paper's (re-ranked, CUHK03's single-shot CMC), or None if it does not.

    Results without ``rerank`` or ``use_metric_cuhk03`` (written before they were recorded) were ranked as the paper.
    """
    parts = []
    rerank = result.get("rerank") or {}
    if rerank.get("used"):
        parts.append(f"re-ranked (k1={rerank['k1']}, k2={rerank['k2']}, λ={rerank['lambda']})")
    if result.get("use_metric_cuhk03"):
        parts.append("CUHK03 single-shot CMC")
    return ", ".join(parts) or None


def _check_ranking(path: Path, result: dict[str, Any]) -> None:
    """``rerank`` ({"used": false}, or used with whole k1, k2 >= 1 and lambda in [0, 1]); ``use_metric_cuhk03``."""
    if not isinstance(result.get("use_metric_cuhk03", False), bool):
        raise ResultFileError(
            f"{path}: use_metric_cuhk03 is {_shown(result['use_metric_cuhk03'])}, not true or false. {_AGAIN}"
        )
    rerank = result.get("rerank", {"used": False})
    if not isinstance(rerank, dict) or not isinstance(rerank.get("used"), bool):
        raise ResultFileError(
            f"{path}: rerank is {_shown(rerank)}, not an object whose used is true or false. {_AGAIN}"
        )
    if not rerank["used"]:
        return
    for key in ("k1", "k2"):
        value = rerank.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ResultFileError(f"{path}: rerank.{key} is {_shown(value)}, not a whole number >= 1. {_AGAIN}")
    _number(path, "rerank.lambda", rerank.get("lambda"), 0, 1, "re-ranking's lambda weighs the original distance")


def check_result(result: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`ResultFileError` unless every metric ``result`` holds is a value a run can measure.

    Checked where present: rank1, rank5, rank10, mAP, mINP (finite fractions in [0, 1]; rank1 and mAP never null),
    ``epochs`` (a whole number, >= 1 for a training run, >= 0 for a test of weights saved within their first
    epoch), ``rerank`` and ``use_metric_cuhk03`` (how it was ranked), ``camera_gap`` and ``warnings`` (a list of
    text). The message names the file, the key, the value and the fix. Absent keys are the reader's to require.
    """
    path = Path(path)
    _check_ranking(path, result)
    for key in (key for key in FRACTIONS if key in result):
        if result[key] is not None or key in REQUIRED_FRACTIONS:
            _number(path, key, result[key], 0, 1, "metrics are fractions in [0, 1] (rank-1 0.923, not 92.3)")
    if "epochs" in result:
        epochs, least = result["epochs"], 0 if result.get("kind") == "test" else 1
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < least:
            raise ResultFileError(
                f"{path}: epochs is {_shown(epochs)}; it counts the epochs trained, a whole number >= {least}. {_AGAIN}"
            )
    if result.get("camera_gap") is not None:
        _check_camera_gap(path, result["camera_gap"])
    warnings = result.get("warnings") or []
    if not isinstance(warnings, list) or not all(isinstance(warning, str) for warning in warnings):
        raise ResultFileError(f"{path}: warnings is {_shown(warnings)}, not a list of text. {_AGAIN}")


def result_files(folder: str | Path) -> list[Path]:
    """Every result under ``folder``: training results (``result.json``) and test results (``tests/*.json``)."""
    folder = Path(folder)
    return sorted({*folder.rglob(RESULT_FILE), *folder.rglob(f"{TEST_DIR}/*.json")})
