"""``benchmarks/eval_variants.py``: plain / flip / re-ranking / both, kept for git and rebuilt without checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import _common
import eval_variants  # noqa: E402

from ccsc_plugin.evaluation.results import read_result, write_result


def result(rank1: float, mAP: float, mINP: float, sha: str = "abc") -> dict:
    return {"rank1": rank1, "mAP": mAP, "mINP": mINP, "checkpoint_sha256": sha, "kind": "test"}


def test_the_table_gives_each_variant_and_its_difference_from_the_plain_test():
    results = {
        "softmax_ccsc": {
            "plain": result(0.20, 0.25, 0.10),
            "flip": result(0.22, 0.26, 0.11),
            "rerank": result(0.25, 0.33, 0.20),
            "flip+rerank": None,
        }
    }
    rows = [line for line in eval_variants.render(results, seed=1).splitlines() if line.startswith("| Softmax")]
    assert rows == [
        "| Softmax + CCSC | plain | 20.0 | 25.0 | 10.0 |",
        "| Softmax + CCSC | flip | 22.0 (+2.0) | 26.0 (+1.0) | 11.0 (+1.0) |",
        "| Softmax + CCSC | rerank | 25.0 (+5.0) | 33.0 (+8.0) | 20.0 (+10.0) |",
        "| Softmax + CCSC | flip+rerank | not scored | not scored | not scored |",
    ]


@pytest.fixture
def kept(tmp_path: Path) -> Path:
    records = tmp_path / "records"
    write_result(eval_variants.record_path(records, "softmax", 1, "flip"), result(0.1, 0.2, 0.05, sha="old"))
    return records


def test_report_only_reads_the_kept_results_and_scores_nothing(kept, tmp_path, monkeypatch):
    monkeypatch.setattr(eval_variants, "score", lambda *args, **kwargs: pytest.fail("scored in --report-only"))
    runs = tmp_path / "runs"
    assert eval_variants.kept_or_scored("softmax", 1, "flip", runs, kept, report_only=True)["mAP"] == 0.2
    assert eval_variants.kept_or_scored("softmax", 1, "plain", runs, kept, report_only=True) is None


def test_a_kept_result_of_other_weights_is_scored_again_and_replaced(kept, tmp_path, monkeypatch):
    checkpoint = tmp_path / "runs" / "softmax" / "seed-1" / "checkpoints" / "epoch-001.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"new weights")
    calls = []
    monkeypatch.setattr(eval_variants.ckpt, "epoch_checkpoints", lambda folder: [checkpoint])
    monkeypatch.setattr(
        eval_variants, "score", lambda *args, **kwargs: calls.append(args) or result(0.3, 0.4, 0.1, sha="new")
    )
    scored = eval_variants.kept_or_scored("softmax", 1, "flip", tmp_path / "runs", kept, report_only=False)
    assert calls and scored["mAP"] == 0.4
    assert read_result(eval_variants.record_path(kept, "softmax", 1, "flip"))["checkpoint_sha256"] == "new"


def test_the_strip_is_the_first_query_of_the_plain_ccsc_test(tmp_path):
    folder = tmp_path / "visrank" / "csv"
    folder.mkdir(parents=True)
    for name in ("q0001_b.jpg", "q0000_a.jpg"):
        (folder / name).write_bytes(name.encode())
    strip = tmp_path / "docs" / "rank_list.jpg"
    message = eval_variants.copy_strip({"targets": {"csv": {"rank_lists": str(folder)}}}, strip)
    assert strip.read_bytes() == b"q0000_a.jpg" and "q0000_a.jpg" in message
    assert "kept as it is" in eval_variants.copy_strip(None, tmp_path / "other.jpg")


def test_the_readmes_table_rebuilds_from_the_kept_results_without_checkpoints(tmp_path):
    """docs/eval_variants.md (pasted into the README) is what ``--report-only`` makes of the committed test results
    alone; only the line naming the machine and the command may differ."""
    output = tmp_path / "eval_variants.md"
    argv = ["--report-only", "--runs-dir", str(tmp_path / "runs"), "--output", str(output)]
    assert eval_variants.main([*argv, "--strip", str(tmp_path / "strip.jpg")]) == 0
    assert not (tmp_path / "strip.jpg").exists()

    def table(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("Tables written on")]

    assert table(output.read_text()) == table((eval_variants.REPO_ROOT / eval_variants.OUTPUT).read_text())
    assert "not scored" not in output.read_text()
