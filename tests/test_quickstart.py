"""``ccsc-reid quickstart``: both models trained, saved where the demo looks, compared on both sets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ccsc_plugin.checkpoint import latest_checkpoint
from ccsc_plugin.quickstart import REAL_SET, REAL_SET_NAME, RUNS, format_comparison, run_quickstart

TINY_QUICKSTART = [
    "data.synthcam={num_train_ids: 6, num_test_ids: 4, num_cams: 3, images_per_cam: 2, height: 64, width: 32, seed: 1}",
    "data.workers=0",
    "train.batch_size=16",
    "train.max_epoch=2",
    "train.warmup_epochs=1",
    "train.stepsize=[1]",
    "test.batch_size=32",
]


def test_real_set_resolves_beside_the_checkout():
    assert REAL_SET == Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhk03-detected-mini"
    assert {folder for folder, _ in RUNS.values()} == {"baseline", "ccsc"}  # the demo's default paths


@pytest.mark.slow
def test_quickstart_trains_saves_and_compares(tmp_path, market_csv, capsys):
    runs = tmp_path / "runs" / "quickstart"
    overrides = [*TINY_QUICKSTART, f"data.root={tmp_path / 'data'}", f"data.save_dir={runs / 'ccsc'}"]
    results = run_quickstart(overrides=overrides, real_set=market_csv)
    assert set(results) == {"synthcam", REAL_SET_NAME}
    for by_method in results.values():
        assert list(by_method) == list(RUNS)
        assert all(0.0 <= r["rank1"] <= 1.0 and 0.0 <= r["mAP"] <= 1.0 for r in by_method.values())
    assert results["synthcam"]["softmax + CCSC"]["method"] == "softmax+ccsc"
    assert results["synthcam"]["softmax (baseline)"]["method"] == "softmax"
    for folder in ("baseline", "ccsc"):
        assert latest_checkpoint(runs / folder).name == "epoch-002.pt"
        assert len(list((runs / folder / "tests").glob("csv-epoch-002-*.json"))) == 1  # beside result.json
        assert (runs / folder / "result.json").is_file()
    out = capsys.readouterr().out
    assert format_comparison(results) in out
    assert out.count(f"| {REAL_SET_NAME} (cross-domain) |") == 2


def test_comparison_table_lists_every_dataset_and_method():
    results = {
        "synthcam": {"softmax (baseline)": {"dataset": "synthcam", "rank1": 0.5, "mAP": 0.25}},
        REAL_SET_NAME: {"softmax + CCSC": {"dataset": "real", "rank1": 0.125, "mAP": 0.07}},
    }
    table = format_comparison(results).splitlines()
    assert table[2] == "| synthcam | softmax (baseline) | 50.0 | 25.0 |"
    assert table[3] == "| real | softmax + CCSC | 12.5 | 7.0 |"


@pytest.mark.slow
def test_quickstart_run_twice_replaces_its_runs_and_never_mixes_models(tmp_path, market_csv, capsys):
    runs = tmp_path / "runs" / "quickstart"
    overrides = [*TINY_QUICKSTART, f"data.root={tmp_path / 'data'}", f"data.save_dir={runs / 'ccsc'}"]
    run_quickstart(overrides=overrides, real_set=market_csv)  # 2 epochs
    capsys.readouterr()
    one_epoch = [*overrides, "train.max_epoch=1", "train.warmup_epochs=0"]
    results = run_quickstart(overrides=one_epoch, real_set=market_csv)
    out = capsys.readouterr().out
    for folder, _ in RUNS.values():
        assert latest_checkpoint(runs / folder).name == "epoch-001.pt"
        assert sorted(p.name for p in (runs / folder / "checkpoints").iterdir()) == ["epoch-001.pt"]
    rows = [(label, result) for by_method in results.values() for label, result in by_method.items()]
    assert len(rows) == 2 * len(RUNS)  # synthcam and real-crop rows
    for label, result in rows:
        checkpoint = runs / RUNS[label][0] / "checkpoints" / "epoch-001.pt"
        assert result.get("checkpoint") == str(checkpoint.resolve()), (label, result["dataset"])
        assert result["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for folder, _ in RUNS.values():
        assert f"replacing its previous run in {runs / folder}" in out
        assert len(list((runs / folder / "tests").glob("*.json"))) == 1  # the first run's real-crop result is gone
