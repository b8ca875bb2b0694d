"""One truth for every recipe key: each default key is read by the package, each choice list is its user's.

A key nothing reads is a promise the code does not keep; a choice list written twice drifts apart. These
tests scan the package for a read of every key of ``get_default_config``, pin each validated choice list to
the constant of the module that uses the key, and check what happens to the keys that were removed.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import torch
import yaml
from yacs.config import CfgNode as CN

import ccsc_plugin
from ccsc_plugin import models
from ccsc_plugin._torchreid import submodule
from ccsc_plugin.config import RecipeError, get_default_config, load_config
from ccsc_plugin.config.defaults import RETIRED_KEYS, flat_keys, upgraded, without_retired
from ccsc_plugin.config.validation import CHOICES
from ccsc_plugin.data import integrity, samplers
from ccsc_plugin.engine import distributed, precision, schedule
from ccsc_plugin.evaluation import metrics
from ccsc_plugin.pipeline.trained import config_from_checkpoint

PACKAGE = Path(ccsc_plugin.__file__).resolve().parent
CONFIG = PACKAGE / "config"  # defining or validating a key is not using it: config/ is not scanned
# key -> where and how the package reads it in a way the scan cannot see. Keep it empty: read cfg.section.key.
READ_UNSEEN: dict[str, str] = {}
WHOLE_SECTION = {"items", "keys", "values"}  # node.items(), as well as dict(node) and f(**node): every key used

OWNERS = {  # recipe key -> the constant of the module that uses the key
    "model.neck": models.NECKS,
    "test.neck_feat": models.NECK_FEATS,
    "data.on_bad_image": integrity.ON_BAD_IMAGE,
    "sampler.train_sampler": samplers.SAMPLERS,
    "train.lr_scheduler": schedule.LR_SCHEDULERS,
    "train.amp": precision.AMP_MODES,
    "train.dist_backend": distributed.DIST_BACKENDS,
    "test.dist_metric": metrics.DIST_METRICS,
}


def default_keys() -> list[str]:
    """Every key of the defaults that holds a value (sections left out)."""
    cfg = get_default_config()
    value = functools.partial(functools.reduce, lambda node, part: node[part])
    return [key for key in flat_keys(cfg) if not isinstance(value(key.split("."), cfg), CN)]


def _chain(node: ast.AST) -> tuple[str, ...] | None:
    """``a.b.c`` -> ``("a", "b", "c")`` for an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return (node.id, *reversed(parts)) if isinstance(node, ast.Name) else None


@functools.cache
def package_reads() -> tuple[frozenset, frozenset]:
    """The attribute chains read outside config/, and those consumed whole (``dict(c)``, ``c.items()``, ``**c``)."""
    reads, whole = set(), set()
    for path in PACKAGE.rglob("*.py"):
        if CONFIG in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                reads.add(_chain(node))  # ast.walk visits cfg.data.csv.path, cfg.data.csv and cfg.data
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "dict" and node.args:
                    whole.add(_chain(node.args[0]))
                if isinstance(func, ast.Attribute) and func.attr in WHOLE_SECTION:
                    whole.add(_chain(func.value))
                whole.update(_chain(keyword.value) for keyword in node.keywords if keyword.arg is None)
    return frozenset(reads - {None}), frozenset(whole - {None})


def names(chain: tuple[str, ...], key: str) -> bool:
    """Whether ``chain`` is ``key``: ``[...].cfg.data.csv.path``, or from its section's node ``csv.path`` or
    ``csv_node.path`` (a variable or argument holding ``cfg.data.csv``)."""
    parts = tuple(key.split("."))
    if chain[-len(parts) - 1 :] == ("cfg", *parts):
        return True
    return any(
        chain in {(parts[k - 1], *parts[k:]), (f"{parts[k - 1]}_node", *parts[k:])} for k in range(1, len(parts))
    )


def is_read(key: str) -> bool:
    reads, whole = package_reads()
    parts = key.split(".")
    sections = [".".join(parts[:k]) for k in range(1, len(parts))]
    return any(names(chain, key) for chain in reads) or any(
        names(chain, section) for chain in whole for section in sections
    )


@pytest.mark.parametrize("key", default_keys())
def test_every_default_key_is_read_by_the_package(key):
    assert key in READ_UNSEEN or is_read(key), (
        f"{key} is in get_default_config but nothing in ccsc_plugin/ (outside config/) reads it: make it do "
        f"what its comment says, or remove it (add it to config.defaults.RETIRED_KEYS)"
    )


def test_the_scan_sees_a_read_and_misses_a_key_nobody_reads():
    assert is_read("train.lr") and is_read("data.csv.val_ids") and is_read("data.synthcam.seed")  # 3 spellings
    assert not is_read("train.no_such_key") and not any(is_read(key) for key in RETIRED_KEYS)


def test_allow_list_holds_only_live_unseen_keys():
    assert set(READ_UNSEEN) <= set(default_keys()) and not any(is_read(key) for key in READ_UNSEEN)


@pytest.mark.parametrize("key", sorted(OWNERS))
def test_recipe_choices_are_the_owners_constants(key):
    assert CHOICES[key] is OWNERS[key]


def test_optimizers_are_torchreids_own_list_and_every_choice_key_has_an_owner():
    assert CHOICES["train.optim"] == tuple(submodule("optim.optimizer").AVAI_OPTIMS)
    assert set(CHOICES) == {*OWNERS, "train.optim"}


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_a_bad_choice_lists_exactly_the_owners_values(key):
    with pytest.raises(RecipeError) as error:
        load_config(None, [f"{key}=no_such_value"])
    assert f"{key} must be one of {', '.join(CHOICES[key])}; got 'no_such_value'." in str(error.value)


@pytest.mark.parametrize(
    ("check", "choices"),
    [
        (lambda value: distributed.pick_backend(value, use_gpu=False), distributed.DIST_BACKENDS),
        (integrity.ImageScreen, integrity.ON_BAD_IMAGE),
        (lambda value: metrics.distance_matrix(*[torch.zeros(1, 2)] * 2, metric=value), metrics.DIST_METRICS),
    ],
    ids=["dist_backend", "on_bad_image", "dist_metric"],
)
def test_the_using_code_accepts_and_lists_the_same_values(check, choices):
    for value in choices:
        check(value)
    with pytest.raises(ValueError, match=f"must be one of {', '.join(choices)}; got 'no_such_value'"):
        check("no_such_value")


def test_the_samplers_are_torchreids_and_the_plugins():
    assert samplers.SAMPLERS == (*submodule("data.sampler").AVAI_SAMPLERS, samplers.CAMERA_AWARE)
    assert set(samplers.IDENTITY_SAMPLERS) <= set(samplers.SAMPLERS)


@pytest.mark.parametrize("key", sorted(RETIRED_KEYS))
def test_a_recipe_setting_a_removed_key_is_told_to_delete_it(tmp_path, key):
    section, leaf = key.split(".")
    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"{section}:\n  {leaf}: x\n")
    assert key not in flat_keys(get_default_config())
    with pytest.raises(RecipeError) as error:
        load_config(recipe)
    assert str(error.value) == f"{recipe}: unknown key '{key}': it was removed ({RETIRED_KEYS[key]}). Delete it."
    with pytest.raises(RecipeError, match=f"--set {key}=x: unknown key '{key}': it was removed"):
        load_config(None, [f"{key}=x"])


# What versions that had each removed key stored in it (model.backbone held a timm ResNet; the rest set nothing)
STORED_BY_OLDER_VERSIONS = {"model.backbone": "resnet50"}


def test_a_checkpoint_of_an_older_version_still_loads_without_its_removed_keys():
    stored = yaml.safe_load(load_config(None, ["train.lr=0.001"]).dump())
    for key in RETIRED_KEYS:
        section, leaf = key.split(".")
        stored[section][leaf] = STORED_BY_OLDER_VERSIONS.get(key, "old")
    assert without_retired(stored) != stored
    cfg = config_from_checkpoint({"config": yaml.safe_dump(stored)})
    assert cfg.train.lr == 0.001 and cfg == load_config(None, ["train.lr=0.001"])


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ({"name": "resnet50_ccsc", "backbone": "resnet18"}, "resnet18_ccsc"),
        ({"backbone": "resnet101"}, "resnet101_ccsc"),  # model.name left at its default, the paper's model
        ({"name": "resnet50_ccsc", "backbone": "resnet50"}, "resnet50_ccsc"),
        ({"name": "osnet_x0_25", "backbone": "resnet50"}, "osnet_x0_25"),  # unused by a zoo model: dropped
    ],
)
def test_an_older_model_backbone_is_read_into_the_model_name(model, name):
    stored = upgraded({"model": {**model, "neck": "none"}, "train": {"lr": 0.001}})
    assert stored == {"model": {"name": name, "neck": "none"}, "train": {"lr": 0.001}}
