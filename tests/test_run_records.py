"""What ``result.json`` records beside the scores: the settings, the code, and every warning that qualifies them."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_overrides

from ccsc_plugin import cli
from ccsc_plugin.config import load_config
from ccsc_plugin.evaluation.machine import describe, machine_record
from ccsc_plugin.evaluation.provenance import provenance
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.pipeline import run_log
from ccsc_plugin.pipeline.trained import config_from_checkpoint

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
SEEN = "the scored identities were seen in training"


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="module")
def market_labels(market_root, module_tmp) -> Path:
    """``labels.csv`` (path,pid,camid) over the generated Market tree's training images."""
    folder = module_tmp("labels")
    tree = market_root / "market1501" / "Market-1501-v15.09.15" / "bounding_box_train"
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pid", "camid"])
        for image in sorted(tree.glob("*.jpg")):
            writer.writerow([image, int(image.name[:4]), int(image.name[6]) - 1])
    return folder / "labels.csv"


def spelling(labels: Path, how: str, tmp_path: Path) -> str:
    """``labels`` spelled another way: relative to the current folder, absolute, or through a symlink."""
    if how == "relative":
        return os.path.relpath(labels)
    if how == "symlink":
        link = tmp_path / "link.csv"
        link.symlink_to(labels)
        return str(link)
    return str(labels)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
def test_training_and_testing_on_one_csv_records_the_warning(market_root, market_labels, tmp_path, capsys, how):
    run = tmp_path / "run"
    overrides = [*tiny_run_overrides(market_root, run), "train.max_epoch=1", "train.warmup_epochs=0"]
    overrides += ["data.sources=[csv]", f"data.csv.path={market_labels}"]
    overrides += [f"data.csv.test_path={spelling(market_labels, how, tmp_path)}"]
    assert cli.main(["train", str(BASE), *set_args(overrides)]) == 0
    result = read_result(run)
    assert any("data.csv.test_path is data.csv.path" in text for text in result["warnings"]), result["warnings"]

    # the same weights tested on the same people by `ccsc-reid test`: its result says so too
    test_overrides = [*overrides[:-1], f"data.csv.test_path={market_labels}"]
    args = ["test", str(BASE), "--weights", str(run), *set_args(test_overrides)]
    assert cli.main(args) == 0
    (tested,) = (run / "tests").glob("*.json")
    assert any(SEEN in text for text in read_result(tested)["warnings"])
    assert "=> WARNING: these weights were trained on" in capsys.readouterr().out


@pytest.mark.slow
def test_a_result_records_its_full_settings_and_its_code(market_root, tmp_path):
    run = tmp_path / "run"
    overrides = [*tiny_run_overrides(market_root, run), "train.max_epoch=1", "train.warmup_epochs=0", "train.lr=0.001"]
    assert cli.main(["train", str(BASE), *set_args(overrides)]) == 0
    result = read_result(run)
    stored = config_from_checkpoint(result, origin="result.json")
    assert stored.dump() == load_config(BASE, overrides).dump() and stored.train.lr == 0.001
    assert {key: result[key] for key in ("git_commit", "git_dirty", "package_version")} == provenance()
    assert result["package_version"] is not None
    assert result["machine"] == machine_record(torch.device("cpu"))  # what its wall time was measured on


@pytest.mark.parametrize(
    ("usable", "threads", "expected"),
    [
        (2, 2, "Some CPU, 2 cores, torch 2.14.1"),
        (1, 1, "Some CPU, 2 cores (1 usable, 1 torch threads), torch 2.14.1"),
        (2, 1, "Some CPU, 2 cores (2 usable, 1 torch threads), torch 2.14.1"),
    ],
)
def test_the_machine_is_described_with_the_cores_and_threads_a_run_had(usable, threads, expected):
    record = {"cpu": "Some CPU", "cores": 2, "usable_cores": usable, "torch_threads": threads, "gpu": None}
    assert describe({**record, "torch": "2.14.1"}) == expected


def test_the_machine_record_reads_the_affinity_and_torch_threads(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    record = machine_record()
    assert (record["usable_cores"], record["torch_threads"], record["gpu"]) == (1, 1, None)
    assert record["cpu"] and record["cores"] == os.cpu_count()


def test_testing_a_run_that_has_no_checkpoint_says_so(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert cli.main(["test", str(BASE), "--weights", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "nothing to test" in err and "nothing to resume" not in err and "--weights" in err


def test_a_log_file_that_cannot_be_written_is_dropped_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    monkeypatch.setattr(run_log.Path, "mkdir", lambda *args, **kwargs: None)
    with run_log.log_to(Path("/dev/full")):  # every write there fails: "No space left on device"
        print("epoch 1")
        print("epoch 2")
    out = capsys.readouterr().out
    assert "epoch 1" in out and "epoch 2" in out and out.count("cannot be written (No space left on device)") == 1
