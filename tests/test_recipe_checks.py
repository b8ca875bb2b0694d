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
        ("train.stepsize=[a, b]", "train.stepsize"),  # each item as the default's: a list of int
        ("test.ranks=[1.5]", "test.ranks"),
        ("data.norm_std=[x, 0.2, 0.2]", "data.norm_std"),
    ],
)
def test_wrong_types_name_the_key(override, key):
    with pytest.raises(RecipeError, match=f"key '{key}' expects"):
        load_config(BASE, [override])


def test_every_problem_is_listed_at_once_and_once_only():
    with pytest.raises(RecipeError) as error:
        load_config(BASE, ["loss.ccsc.weight=-1", "data.workers=-1", "train.lr=.nan"])
    message = str(error.value)
    assert [message.count(key) for key in ("loss.ccsc.weight", "data.workers", "train.lr")] == [1, 1, 1]
    assert "data.workers must be >= 0 (0 = load in the training process), got -1." in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.max_epochs=3", "train.max_epoch"),  # unknown key: the nearest one is named
        ("loss.ccsc.weight=-1", "loss.ccsc.weight"),
        ("train.batch_size=big", "train.batch_size"),
        ("train.warmup_epochs=100", "train.warmup_epochs"),
        ("train.gamma=-5", "train.gamma"),  # would train with a negative learning rate
        ("train.max_epoch=0", "train.max_epoch"),  # would write a result.json with null metrics
    ],
)
def test_bad_recipe_stops_the_cli_before_anything_runs(tmp_path, capsys, override, key):
    run = tmp_path / "run"
    assert main(["train", BASE, "--set", f"data.save_dir={run}", "--set", override]) == 2
    assert key in capsys.readouterr().err
    assert not run.exists()  # no log, no checkpoint: nothing started


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.gamma=-5", "train.gamma must be in (0, 1], got -5.0"),
        ("train.max_epoch=0", "train.max_epoch must be >= 1, got 0"),
        ("train.weight_decay=-1e-4", "train.weight_decay must be >= 0, got -0.0001"),
        ("train.warmup_start_lr=0", "train.warmup_start_lr must be > 0, got 0.0"),
        ("train.warmup_start_lr=-3.5e-5", "train.warmup_start_lr must be > 0, got -3.5e-05"),
        ("test.ranks=[0]", "test.ranks must hold values >= 1, got [0]"),
        ("test.ranks=[1, 5, -10]", "test.ranks must hold values >= 1, got [1, 5, -10]"),
        ("train.lr=.nan", "train.lr must be a finite number, got nan"),
        ("train.lr=.inf", "train.lr must be a finite number, got inf"),
        ("train.lr=-.inf", "train.lr must be a finite number, got -inf"),
        ("loss.ccsc.weight=.nan", "loss.ccsc.weight must be a finite number, got nan"),
        ("train.stepsize=[0, 10]", "train.stepsize must hold values >= 1, got [0, 10]"),
        ("train.stepsize=[55, 35]", "train.stepsize must be increasing epochs, got [55, 35]"),
        ("train.stepsize=[35, 35]", "train.stepsize must be increasing epochs, got [35, 35]"),
        ("data.norm_std=[0, 0.2, 0.2]", "data.norm_std must hold values > 0, got [0.0, 0.2, 0.2]"),
        ("data.norm_std=[.nan, 0.2, 0.2]", "data.norm_std must hold finite numbers, got [nan, 0.2, 0.2]"),
        ("data.norm_mean=[0.5, .inf, 0.5]", "data.norm_mean must hold finite numbers, got [0.5, inf, 0.5]"),
        ("data.norm_mean=[0.5, 0.5]", "data.norm_mean must hold 3 values (R, G, B), got [0.5, 0.5]"),
        ("data.norm_std=[0.2, 0.2, 0.2, 0.2]", "data.norm_std must hold 3 values (R, G, B), got [0.2, 0.2, 0.2, 0.2]"),
        ("sampler.num_instances=0", "sampler.num_instances must be >= 1, got 0"),
        ("loss.triplet.margin=-0.3", "loss.triplet.margin must be >= 0, got -0.3"),
        ("loss.center.alpha=1.5", "loss.center.alpha must be in [0, 1], got 1.5"),
        ("adam.beta1=1", "adam.beta1 must be in [0, 1), got 1.0"),
        ("adam.beta2=-0.1", "adam.beta2 must be in [0, 1), got -0.1"),
        ("test.eval_freq=0", "test.eval_freq must be -1 (evaluate at the end only) or >= 1, got 0"),
        ("test.eval_freq=-3", "test.eval_freq must be -1 (evaluate at the end only) or >= 1, got -3"),
        ("test.start_eval=-1", "test.start_eval must be >= 0, got -1"),
        ("test.batch_size=0", "test.batch_size must be >= 1, got 0"),
        ("train.print_freq=0", "train.print_freq must be >= 1, got 0"),
        ("train.seed=-1", "train.seed must be in [0, 4294967295], got -1"),
        ("train.fixbase_epoch=-1", "train.fixbase_epoch must be >= 0, got -1"),
        ("train.start_epoch=-1", "train.start_epoch must be >= 0, got -1"),
        ("train.start_epoch=100", "train.start_epoch (100) must be below train.max_epoch (100)"),
        ("data.split_id=-1", "data.split_id must be >= 0, got -1"),
        ("data.height=0", "data.height must be >= 1, got 0"),
        ("train.optim=adamw", "train.optim must be one of adam, amsgrad, sgd, rmsprop, radam; got 'adamw'"),
        ("train.lr_scheduler=step", "train.lr_scheduler must be one of warmup_multistep, single_step, multi_step"),
        ("test.dist_metric=l2", "test.dist_metric must be one of euclidean, cosine; got 'l2'"),
    ],
)
def test_values_that_train_nonsense_name_the_key_the_value_and_the_range(override, message):
    with pytest.raises(RecipeError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_int_list_elements_become_floats_where_the_default_holds_floats():
    assert [type(v) for v in load_config(None, ["data.norm_std=[1, 1, 1]"]).data.norm_std] == [float] * 3


def test_limits_themselves_are_valid():
    edge = ["train.gamma=1", "adam.beta1=0", "loss.center.alpha=1", "test.eval_freq=1", "train.max_epoch=6"]
    cfg = load_config(None, [*edge, "loss.triplet.margin=0", "train.stepsize=[]", "train.seed=0"])
    assert cfg.train.gamma == 1.0 and list(cfg.train.stepsize) == []
