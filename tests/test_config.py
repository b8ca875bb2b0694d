"""Recipes: defaults, _base_ inheritance, --set overrides, strict keys, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccsc_plugin.config import RecipeError, get_default_config, load_config, parse_override

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture
def write(tmp_path):
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


def test_base_recipe_has_paper_settings():
    cfg = load_config(RECIPES / "base.yaml")
    assert (cfg.data.height, cfg.data.width) == (384, 128)
    assert cfg.train.batch_size == 64 and cfg.sampler.num_instances == 4  # P = 16, K = 4
    assert cfg.train.optim == "adam" and cfg.train.max_epoch == 100
    assert (cfg.train.warmup_start_lr, cfg.train.lr, cfg.train.warmup_epochs) == (3.5e-5, 3.5e-4, 5)
    assert list(cfg.train.stepsize) == [35, 55] and cfg.train.gamma == 0.1
    assert cfg.loss.ccsc.weight == 1.5 and cfg.loss.ccsc.cross_camera
    assert cfg.data.transforms == ["random_flip", "random_erase"]
    assert cfg.model.pretrained and cfg.test.dist_metric == "euclidean"


def test_base_is_relative_to_the_recipe_and_child_wins(write):
    write("bases/parent.yaml", "train: {lr: 0.001, max_epoch: 7, warmup_epochs: 1}\n")
    child = write("exp/child.yaml", "_base_: ../bases/parent.yaml\ntrain: {max_epoch: 3}\n")
    cfg = load_config(child)
    assert cfg.train.lr == 0.001 and cfg.train.max_epoch == 3


def test_base_list_merges_in_order(write):
    write("a.yaml", "train: {lr: 0.1}\nloss: {ccsc: {weight: 2.0}}\n")
    write("b.yaml", "train: {lr: 0.2}\n")
    cfg = load_config(write("c.yaml", "_base_: [a.yaml, b.yaml]\n"))
    assert cfg.train.lr == 0.2 and cfg.loss.ccsc.weight == 2.0


def test_overrides_apply_last_and_parse_yaml(write):
    cfg = load_config(write("r.yaml", "train: {lr: 0.1}\n"), ["train.lr=1e-3", "data.sources=[dukemtmcreid]"])
    assert cfg.train.lr == 0.001 and cfg.data.sources == ["dukemtmcreid"]


def test_parse_override_nests_keys():
    assert parse_override("loss.ccsc.cross_camera=false") == {"loss": {"ccsc": {"cross_camera": False}}}


@pytest.mark.parametrize(
    ("text", "unknown", "nearest"),
    [
        ("train: {lrr: 0.1}\n", "train.lrr", "train.lr"),
        ("trian: {lr: 0.1}\n", "trian", "train"),
        ("loss: {ccsc: {wieght: 1}}\n", "loss.ccsc.wieght", "loss.ccsc.weight"),
        ("ccsc: {weight: 1}\n", "ccsc", "loss.ccsc"),
    ],
)
def test_unknown_key_names_it_and_the_nearest(write, text, unknown, nearest):
    with pytest.raises(RecipeError, match=f"unknown key '{unknown}'. Did you mean '{nearest}'"):
        load_config(write("r.yaml", text))


def test_unknown_override_key_is_an_error():
    with pytest.raises(RecipeError, match="Did you mean 'train.max_epoch'"):
        load_config(None, ["train.max_epochs=3"])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=fast", "train.lr"),
        ("train.max_epoch=1.5", "train.max_epoch"),
        ("loss.ccsc.cross_camera=1", "loss.ccsc.cross_camera"),
    ],
)
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(RecipeError, match=key):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.batch_size=30"], "train.batch_size"),
        (["loss.ccsc.weight=-1"], "loss.ccsc.weight"),
        (["train.warmup_epochs=10", "train.max_epoch=5"], "train.warmup_epochs"),
        (["train.amp=fp8"], "train.amp"),
        (["train.lr=0"], "train.lr"),
    ],
)
def test_impossible_values_are_rejected(overrides, key):
    with pytest.raises(RecipeError, match=key):
        load_config(None, overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("test.rerank_k1=0", "test.rerank_k1 must be >= 1, got 0."),
        ("test.rerank_k2=-2", "test.rerank_k2 must be >= 1, got -2."),
        ("test.rerank_k1=2.5", "key 'test.rerank_k1' expects int (default 20), got float 2.5."),
        ("test.rerank_lambda=1.5", "test.rerank_lambda must be in [0, 1] (0 = the Jaccard distance alone"),
        ("test.rerank_lambda=-0.1", "test.rerank_lambda must be in [0, 1]"),
        ("test.rerank_max_mb=0", "test.rerank_max_mb must be > 0, got 0."),
        ("test.use_metric_cuhk03=1", "key 'test.use_metric_cuhk03' expects bool"),
    ],
)
def test_impossible_re_ranking_and_metric_values_are_named(override, message):
    with pytest.raises(RecipeError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_re_ranking_and_the_cuhk03_metric_are_recipe_keys(write):
    recipe = write("r.yaml", "test: {rerank: true, rerank_k1: 10, rerank_lambda: 0, use_metric_cuhk03: true}\n")
    cfg = load_config(recipe)
    assert cfg.test.rerank and cfg.test.use_metric_cuhk03 and cfg.test.rerank_k1 == 10
    assert cfg.test.rerank_lambda == 0 and (cfg.test.rerank_k2, cfg.test.rerank_max_mb) == (6, 8192)


def test_missing_recipe_and_cycle(write):
    with pytest.raises(RecipeError, match="does not exist"):
        load_config("/nonexistent.yaml")
    write("x.yaml", "_base_: y.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_config(write("y.yaml", "_base_: x.yaml\n"))


def test_config_is_frozen_and_defaults_are_fresh():
    cfg = load_config(None)
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0
    assert get_default_config().train.lr == 3.5e-4


def test_yaml_12_booleans_keep_off_a_string(write):
    cfg = load_config(write("r.yaml", "train: {amp: off}\n"), ["loss.ccsc.cross_camera=false"])
    assert cfg.train.amp == "off" and cfg.loss.ccsc.cross_camera is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: {lr: 0.1\n", r"r\.yaml line 2, column 1: invalid YAML"),
        ("train:\n  lr: 0.1\n   max_epoch: 3\n", r"r\.yaml line 3, column 13: invalid YAML"),
        ("_base_: 3\n", "_base_ must be a path or a list of paths .*got 3"),
        ("_base_: {a: 1}\n", r"_base_ must be a path or a list of paths .*got \{'a': 1\}"),
        ("_base_: [base.yaml, 3]\n", r"_base_ must be a path or a list of paths .*got \['base.yaml', 3\]"),
        ("_base_:\n", "_base_ must be a path or a list of paths .*got None"),
    ],
)
def test_recipe_syntax_and_base_errors_name_the_file(write, text, message):
    with pytest.raises(RecipeError, match=message):
        load_config(write("r.yaml", text))


def test_non_utf8_recipe_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("experiment:\n  paper_cell: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin1\.yaml line 2: not UTF-8 text \(byte 0xe9\).*save it as UTF-8"):
        load_config(path)


def test_bad_override_yaml_names_the_option():
    with pytest.raises(RecipeError, match=r"--set train.stepsize=\[1, line 1, column \d+: invalid YAML"):
        load_config(None, ["train.stepsize=[1,"])


@pytest.mark.parametrize(
    ("held", "listed"),
    [
        (["a.yaml", "b.yaml"], "It holds a.yaml, b.yaml."),
        ([], "It holds no .yaml file."),
        ([f"r{i:02d}.yaml" for i in range(12)], "It holds 12 .yaml files, e.g. r00.yaml, r01.yaml, r02.yaml."),
    ],
    ids=["few", "none", "many"],
)
@pytest.mark.parametrize("as_base", [True, False], ids=["base", "recipe"])
def test_a_folder_named_as_a_recipe_says_so_and_lists_its_yaml(write, tmp_path, held, listed, as_base):
    folder = tmp_path / "bases"
    folder.mkdir()
    for name in held:
        write(f"bases/{name}", "train: {max_epoch: 30}\n")
    recipe = write("child.yaml", "_base_: bases\n") if as_base else folder
    with pytest.raises(RecipeError) as error:
        load_config(recipe)
    message = str(error.value)
    assert f"{folder} is a folder, not a recipe" in message and "name a YAML file in it" in message
    assert listed in message and "does not exist" not in message
    assert (f"(the _base_ of {tmp_path / 'child.yaml'})" in message) == as_base


def write_chain(folder: Path, depth: int) -> Path:
    """r0.yaml -> r1.yaml -> ... -> r<depth>.yaml by _base_: ``depth`` bases below the first recipe."""
    for i in range(depth):
        (folder / f"r{i}.yaml").write_text(f"_base_: r{i + 1}.yaml\n")
    (folder / f"r{depth}.yaml").write_text("train: {max_epoch: 30}\n")
    return folder / "r0.yaml"


@pytest.mark.parametrize("depth", [65, 1100])
def test_a_base_chain_deeper_than_the_limit_is_a_recipe_error_naming_its_start(tmp_path, depth):
    start = write_chain(tmp_path, depth)
    with pytest.raises(RecipeError) as error:  # not a RecursionError
        load_config(start)
    message = str(error.value)
    assert message.startswith(f"{start}: the _base_ chain is more than 64 bases deep")
    assert f"{tmp_path / 'r64.yaml'} names {tmp_path / 'r65.yaml'}" in message


def test_a_base_chain_at_the_limit_loads(tmp_path):
    assert load_config(write_chain(tmp_path, 64)).train.max_epoch == 30
