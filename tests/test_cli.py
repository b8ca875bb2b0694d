"""``ccsc-reid`` from the command line: train, test, and errors a user can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccsc_plugin.cli import main
from ccsc_plugin.results import read_result

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")


def as_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.mark.slow
def test_train_then_test_from_the_command_line(tiny_overrides, tmp_path):
    assert main(["train", BASE, *as_args(tiny_overrides)]) == 0
    run = Path(next(o for o in tiny_overrides if o.startswith("data.save_dir=")).split("=", 1)[1])
    trained = read_result(run)
    test_dir = tmp_path / "eval"
    assert (
        main(["test", BASE, "--weights", str(run), *as_args(tiny_overrides), "--set", f"data.save_dir={test_dir}"]) == 0
    )
    evaluated = read_result(test_dir)
    assert evaluated["weights"].endswith("epoch-002.pt")
    assert evaluated["rank1"] == pytest.approx(trained["rank1"]) and evaluated["mAP"] == pytest.approx(trained["mAP"])


def test_unknown_key_exits_2_with_the_nearest_key(capsys):
    assert main(["train", BASE, "--set", "train.max_epochs=3"]) == 2
    assert "Did you mean 'train.max_epoch'" in capsys.readouterr().err


def test_missing_dataset_names_path_and_layout(tmp_path, capsys):
    assert main(["train", BASE, "--set", f"data.root={tmp_path}", "--set", "model.pretrained=false"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "market1501") in err and "bounding_box_train" in err


def test_missing_weights_exit_2(capsys):
    assert main(["test", BASE, "--weights", "/nonexistent/run"]) == 2
    assert "No checkpoints" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "ccsc_plugin", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "test" in out.stdout
