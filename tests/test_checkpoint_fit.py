"""Checkpoints that do not fit the model: every load path refuses them with a message, none scores random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from ccsc_plugin.cli import main
from ccsc_plugin.evaluation.results import read_result, result_files
from ccsc_plugin.serve.inference import FeatureExtractor

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")


def as_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def misfit_checkpoint(tiny_checkpoint: Path, path: Path, problem: str) -> Path:
    """The tiny run's checkpoint with its state dict spoiled in one of the ways users meet."""
    state = load_checkpoint(latest_checkpoint(tiny_checkpoint))
    weights = state["state_dict"]
    if problem == "empty":
        weights = {}
    elif problem == "model-prefix":  # e.g. saved from a LightningModule holding the network as `self.model`
        weights = {f"model.{key}": value for key, value in weights.items()}
    elif problem == "other-ids":  # a classifier for 5 identities, the data has 8
        weights = {
            **weights,
            "classifier.weight": weights["classifier.weight"][:5],
            "classifier.bias": weights["classifier.bias"][:5],
        }
    save_checkpoint({**state, "state_dict": weights}, path)
    return path


@pytest.mark.parametrize("problem", ["empty", "model-prefix"])
def test_test_refuses_weights_that_do_not_fit(tiny_checkpoint, tiny_overrides, tmp_path, capsys, problem):
    bad = misfit_checkpoint(tiny_checkpoint, tmp_path / "bad.pt", problem)
    eval_dir = tmp_path / "eval"
    args = ["test", BASE, "--weights", str(bad), *as_args(tiny_overrides), "--set", f"data.save_dir={eval_dir}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{bad} does not fit model CCSCModel" in err and "--weights" in err
    assert {"empty": "holds none of the model's weights", "model-prefix": "prefix 'model.'"}[problem] in err
    assert not (eval_dir / "result.json").exists()


def test_recipe_export_refuses_load_weights_that_do_not_fit(tiny_checkpoint, tmp_path, capsys):
    bad = misfit_checkpoint(tiny_checkpoint, tmp_path / "bad.pt", "model-prefix")
    out = tmp_path / "model.onnx"
    overrides = ["model.pretrained=false", "data.height=64", "data.width=32", f"model.load_weights={bad}"]
    assert main(["export", BASE, "--onnx", str(out), *as_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} does not fit" in err and "model.load_weights" in err
    assert not out.exists()


@pytest.mark.parametrize("problem", ["empty", "model-prefix", "other-ids"])
def test_feature_extractor_refuses_weights_that_do_not_fit(tiny_checkpoint, tmp_path, problem):
    bad = misfit_checkpoint(tiny_checkpoint, tmp_path / "bad.pt", problem)
    with pytest.raises(CheckpointError, match="does not fit"):
        FeatureExtractor.from_checkpoint(bad)


def test_another_datasets_classifier_is_left_out_with_a_line(tiny_checkpoint, tmp_path, capsys):
    bad = misfit_checkpoint(tiny_checkpoint, tmp_path / "five-ids.pt", "other-ids")
    model = torchreid.models.build_model("resnet50_ccsc", 8, loss="ccsc", pretrained=False)
    pipeline.load_weights(model, bad)
    assert "Not loaded from" in capsys.readouterr().out
    stored = load_checkpoint(bad)["state_dict"]
    torch.testing.assert_close(model.state_dict()["reduction.0.weight"], stored["reduction.0.weight"])
    assert model.classifier.weight.shape == (8, 512)


def test_test_runs_at_the_checkpoints_input_size(tiny_checkpoint, tiny_overrides, tmp_path, capsys):
    """The tiny run was trained at 64x32; a recipe at 96x48 tests it at 64x32, says so and records it."""
    eval_dir = tmp_path / "eval"
    overrides = [*tiny_overrides, "data.height=96", "data.width=48", f"data.save_dir={eval_dir}"]
    assert main(["test", BASE, "--weights", str(tiny_checkpoint), *as_args(overrides)]) == 0
    assert "was trained at 64x32: testing at that size, not at the recipe's" in capsys.readouterr().out
    (test_result,) = result_files(eval_dir)
    assert read_result(test_result)["input_size"] == [64, 32]


@pytest.mark.parametrize("other", ["architecture", "ids"])
def test_resume_from_a_run_of_another_model_is_a_message(tiny_checkpoint, tiny_overrides, tmp_path, capsys, other):
    if other == "architecture":
        overrides, resume = [*tiny_overrides, "model.name=osnet_x0_25"], tiny_checkpoint
    else:
        overrides, resume = tiny_overrides, misfit_checkpoint(tiny_checkpoint, tmp_path / "five-ids.pt", "other-ids")
    assert main(["train", BASE, *as_args(overrides), "--resume", str(resume)]) == 2
    err = capsys.readouterr().err
    read = latest_checkpoint(resume)  # the file resumed: a run folder's newest checkpoint
    assert f"{read} does not fit model" in err and "--resume continues a run of this recipe's model" in err
    assert {"architecture": "missing", "ids": "classifier.weight ([5, 512] in the file, [8, 512]"}[other] in err


@pytest.mark.parametrize("problem", ["missing", "not-a-checkpoint", "other-architecture", "ccsc-run"])
def test_broken_pretrained_path_is_a_message_naming_the_key(tiny_checkpoint, tmp_path, capsys, problem):
    path = tmp_path / "resnet50.pth"
    if problem == "not-a-checkpoint":
        path.write_bytes(b"this is no weights file")
    elif problem == "other-architecture":
        torch.save(torchreid.models.build_model("osnet_x0_25", 10, pretrained=False).state_dict(), path)
    elif problem == "ccsc-run":  # a ccsc-reid checkpoint is a whole model, not ImageNet backbone weights
        path = latest_checkpoint(tiny_checkpoint)
    out = tmp_path / "model.onnx"
    # allow_random_init covers an unreachable hub only: a file the recipe names must be usable
    overrides = [f"model.pretrained_path={path}", "model.allow_random_init=true", "data.height=64", "data.width=32"]
    assert main(["export", BASE, "--onnx", str(out), *as_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert f"model.pretrained_path {path}" in err and "Pass model.pretrained_path=" in err
    assert not out.exists()
