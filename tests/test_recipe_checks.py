"""Recipes: unknown keys, wrong types and impossible values stop the run before training, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError, load_config

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["loss.softmax.weight=-1"], "loss.softmax.weight"),
        (["loss.ccsc.weight=-0.5"], "loss.ccsc.weight"),
        (["loss.triplet.weight=-1"], "loss.triplet.weight"),
        (["loss.center.weight=-0.1"], "loss.center.weight"),
        (["train.warmup_epochs=8", "train.max_epoch=8"], "train.warmup_epochs"),  # as long as training
        (["train.batch_size=30", "sampler.num_instances=4"], "train.batch_size"),  # not P x K
        (["sampler.num_instances=0"], "sampler.num_instances"),  # not a division by zero
        (["train.max_epoch=-1"], "train.max_epoch"),
        (["train.warmup_epochs=-1"], "train.warmup_epochs"),
        (["data.workers=-2"], "data.workers"),
        (["data.on_bad_image=ignore"], "data.on_bad_image"),
    ],
)
def test_impossible_values_name_the_key(overrides, key):
    with pytest.raises(RecipeError, match=key):
        load_config(BASE, overrides)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.stepsize=35", "train.stepsize"),  # a list expected
        ("sampler.num_instances=four", "sampler.num_instances"),
        ("data.on_bad_image=[skip]", "data.on_bad_image"),
    ],
)
def test_wrong_types_name_the_key(override, key):
    with pytest.raises(RecipeError, match=f"key '{key}' expects"):
        load_config(BASE, [override])


def test_every_problem_is_listed_at_once():
    with pytest.raises(RecipeError) as error:
        load_config(BASE, ["loss.ccsc.weight=-1", "data.workers=-1", "train.lr=0"])
    assert all(key in str(error.value) for key in ("loss.ccsc.weight", "data.workers", "train.lr"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.max_epochs=3", "train.max_epoch"),  # unknown key: the nearest one is named
        ("loss.ccsc.weight=-1", "loss.ccsc.weight"),
        ("train.batch_size=big", "train.batch_size"),
        ("train.warmup_epochs=100", "train.warmup_epochs"),
    ],
)
def test_bad_recipe_stops_the_cli_before_anything_runs(tmp_path, capsys, override, key):
    run = tmp_path / "run"
    assert main(["train", BASE, "--set", f"data.save_dir={run}", "--set", override]) == 2
    assert key in capsys.readouterr().err
    assert not run.exists()  # no log, no checkpoint: nothing started
