"""``ccsc-reid quickstart``: both models trained, saved where the demo looks, compared on both sets."""

from __future__ import annotations

import csv
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


@pytest.fixture
def real_set(market_root, tmp_path) -> Path:
    """A labels.csv folder (path,pid,camid) over the generated Market tree's test images."""
    folder = tmp_path / "real"
    folder.mkdir()
    tree = market_root / "market1501" / "Market-1501-v15.09.15"
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pid", "camid"])
        for image in sorted([*tree.glob("query/*.jpg"), *tree.glob("bounding_box_test/*.jpg")]):
            writer.writerow([image, int(image.name[:4]), int(image.name[6]) - 1])
    return folder


@pytest.mark.slow
def test_quickstart_trains_saves_and_compares(tmp_path, real_set, capsys):
    runs = tmp_path / "runs" / "quickstart"
    overrides = [*TINY_QUICKSTART, f"data.root={tmp_path / 'data'}", f"data.save_dir={runs / 'ccsc'}"]
    results = run_quickstart(overrides=overrides, real_set=real_set)
    assert set(results) == {"synthcam", REAL_SET_NAME}
    for by_method in results.values():
        assert list(by_method) == list(RUNS)
        assert all(0.0 <= r["rank1"] <= 1.0 and 0.0 <= r["mAP"] <= 1.0 for r in by_method.values())
    assert results["synthcam"]["softmax + CCSC"]["method"] == "softmax+ccsc"
    assert results["synthcam"]["softmax (baseline)"]["method"] == "softmax"
    for folder in ("baseline", "ccsc"):
        assert latest_checkpoint(runs / folder).name == "epoch-002.pt"
        assert (runs / folder / REAL_SET_NAME / "result.json").is_file()
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
