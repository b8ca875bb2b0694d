"""``ccsc-reid`` from the command line: train, test, and errors a user can act on."""

from __future__ import annotations

import re
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


QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
BAD_RECIPES = {  # id -> (recipe bytes, --set overrides, what the message must say)
    "yaml-syntax": (b"train: {lr: 0.1\n", [], r"r\.yaml line 2, column 1: invalid YAML"),
    "base-number": (b"_base_: 3\n", [], r"r\.yaml: _base_ must be a path or a list of paths .*got 3"),
    "base-mapping": (b"_base_: {a: b}\n", [], r"r\.yaml: _base_ must be a path or a list of paths"),
    "base-list-of-number": (b"_base_: [2]\n", [], r"r\.yaml: _base_ must be a path or a list of paths .*got \[2\]"),
    "latin-1": ("experiment: {notes: caf\xe9}\n".encode("latin-1"), [], r"r\.yaml line 1: not UTF-8.*as UTF-8"),
    "unknown-source": (b"", ["data.sources=[market15]"], r"data.sources: unknown dataset 'market15'.*'market1501'"),
    "unknown-target": (b"", ["data.targets=[dukemtmc]"], r"data.targets: unknown dataset 'dukemtmc'.*'dukemtmcreid'"),
    "lr-nan": (b"", ["train.lr=.nan"], "train.lr must be a finite number, got nan"),
    "norm-std-0": (b"", ["data.norm_std=[0.2, 0, 0.2]"], r"data.norm_std must hold values > 0, got \[0.2, 0.0, 0.2\]"),
}


@pytest.mark.parametrize("command", ["train", "test"])
@pytest.mark.parametrize("case", BAD_RECIPES)
def test_bad_recipe_exits_2_with_a_message_not_a_traceback(tiny_checkpoint, tmp_path, capsys, command, case):
    content, overrides, message = BAD_RECIPES[case]
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(content or f"_base_: {QUICKSTART}\n".encode())
    weights = ["--weights", str(tiny_checkpoint)] if command == "test" else []
    args = [command, str(recipe), *weights, *as_args([f"data.save_dir={tmp_path / 'run'}", *overrides])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
