"""``ccsc-reid quickstart``: both models trained, saved where the demo looks, compared on both sets."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from ccsc_plugin import pipeline, shipped
from ccsc_plugin.checkpoint import latest_checkpoint
from ccsc_plugin.cli import build_parser, main
from ccsc_plugin.cli.quickstart import (
    DEFAULT_RECIPE,
    RUNS,
    cross_domain_label,
    cross_domain_note,
    format_comparison,
    run_folders,
    run_quickstart,
)
from ccsc_plugin.cli.serving import run_demo
from ccsc_plugin.config import load_config
from ccsc_plugin.serve import demo_backend
from ccsc_plugin.serve.gallery import DemoInputError

REPO = Path(__file__).resolve().parents[1]

TINY_QUICKSTART = [
    "data.synthcam={num_train_ids: 6, num_test_ids: 4, num_cams: 3, images_per_cam: 2, height: 64, width: 32, seed: 1}",
    "data.workers=0",
    "train.batch_size=16",
    "train.max_epoch=2",
    "train.warmup_epochs=1",
    "train.stepsize=[1]",
    "test.batch_size=32",
]


def test_runs_are_where_the_demo_looks(monkeypatch):
    """``ccsc-reid demo`` without ``--weights`` opens the folders ``ccsc-reid quickstart`` trains into, in its order."""
    looked_at = []

    def backend(weights, **kwargs):  # stands in for DemoBackend: record the rows, serve nothing
        looked_at.extend(weights)
        raise DemoInputError("recorded")

    monkeypatch.setattr(demo_backend, "DemoBackend", backend)
    monkeypatch.setattr(shipped, "demo_app", lambda: None)
    assert run_demo(build_parser().parse_args(["demo"])) == 2
    trained_in = run_folders(load_config(DEFAULT_RECIPE))
    assert [Path(weights) for weights in looked_at] == list(trained_in.values())


def test_real_set_is_opt_in_on_the_command_line():
    assert build_parser().parse_args(["quickstart"]).real_set is None
    assert build_parser().parse_args(["quickstart", "--real-set", "crops"]).real_set == "crops"


@pytest.mark.parametrize("problem", ["no-folder", "no-labels-csv"])
def test_real_set_without_labels_csv_is_an_error_before_training(tmp_path, monkeypatch, capsys, problem):
    def no_training(*args, **kwargs):
        raise AssertionError("trained although --real-set is unusable")

    monkeypatch.setattr(pipeline, "train", no_training)
    folder = tmp_path / "crops"
    if problem == "no-labels-csv":
        folder.mkdir()
    assert main(["quickstart", "--real-set", str(folder), "--set", f"data.save_dir={tmp_path / 'runs' / 'ccsc'}"]) == 2
    err = capsys.readouterr().err
    assert f"--real-set {folder}" in err and "labels.csv" in err and "leave --real-set out" in err


@pytest.mark.parametrize("real_set", ["default", "present", "absent"])
def test_make_quickstart_passes_the_real_set_only_when_it_exists(tmp_path, market_csv, real_set):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: make installs nothing
    command = ["make", "-n", "--no-print-directory", "-C", str(REPO), "quickstart", f"VENV={venv}"]
    if real_set == "default":  # ../shared/data/cuhk03-detected-mini, used where this checkout has it
        folder = "../shared/data/cuhk03-detected-mini"
        expected = (REPO / folder / "labels.csv").is_file()
    else:
        folder, expected = str(market_csv if real_set == "present" else tmp_path / "absent"), real_set == "present"
        command.append(f"REAL_SET={folder}")
    line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    assert line.startswith(f"{venv}/bin/ccsc-reid quickstart")
    assert line.endswith(f" --real-set {folder}") == expected and ("--real-set" in line) == expected


def test_cross_domain_note_on_the_shared_crops(shared_cuhk03):
    note = cross_domain_note(shared_cuhk03 / "labels.csv", "synthcam")
    assert "trained on generated people only (synthcam)" in note and "100 people" in note
    assert "expected near chance" in note and "a random ranking scores 0.5 % rank-1" in note
    assert cross_domain_label("cuhk03-detected-mini", "synthcam") == (
        "cuhk03-detected-mini, cross-domain from synthcam: expected near chance"
    )


@pytest.mark.slow
@pytest.mark.parametrize("with_real_set", [True, False])
def test_quickstart_trains_saves_and_compares(tmp_path, market_csv, capsys, with_real_set):
    runs = tmp_path / "runs" / "quickstart"
    overrides = [*TINY_QUICKSTART, f"data.root={tmp_path / 'data'}", f"data.save_dir={runs / 'ccsc'}"]
    results = run_quickstart(overrides=overrides, real_set=market_csv if with_real_set else None)
    real_label = cross_domain_label(market_csv.name, "synthcam")
    assert set(results) == ({"synthcam", market_csv.name} if with_real_set else {"synthcam"})
    for by_method in results.values():
        assert list(by_method) == list(RUNS)
        assert all(0.0 <= r["rank1"] <= 1.0 and 0.0 <= r["mAP"] <= 1.0 for r in by_method.values())
    assert results["synthcam"]["softmax + CCSC"]["method"] == "softmax+ccsc"
    assert results["synthcam"]["softmax (baseline)"]["method"] == "softmax"
    for folder in ("baseline", "ccsc"):
        assert latest_checkpoint(runs / folder).name == "epoch-002.pt"
        real_tests = list((runs / folder / "tests").glob("csv-epoch-002-*.json"))  # beside result.json
        assert len(real_tests) == int(with_real_set)
        assert (runs / folder / "result.json").is_file()
    out = capsys.readouterr().out
    assert format_comparison(results) in out
    assert out.count(f"| {real_label} |") == 2 * int(with_real_set)
    if with_real_set:
        assert out.count(cross_domain_note(market_csv / "labels.csv", "synthcam")) == 2  # at the step, under the table
    else:
        assert "real-crop step skipped: pass --real-set FOLDER" in out


def test_comparison_table_lists_every_dataset_and_method():
    results = {
        "synthcam": {"softmax (baseline)": {"dataset": "synthcam", "rank1": 0.5, "mAP": 0.25}},
        "real": {"softmax + CCSC": {"dataset": "real", "rank1": 0.125, "mAP": 0.07}},
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
