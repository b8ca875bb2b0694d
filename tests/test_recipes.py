"""The 30 paper recipes: each resolves to the paper's Sec. 4.2 settings and names the cell it reproduces.

Each is its dataset lines over two bases: ``../base.yaml`` (Sec. 4.2) and ``../methods/<method>.yaml`` (the losses).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ccsc_plugin.cli import main
from ccsc_plugin.cli.recipe_index import METHODS_FOLDER, list_recipes
from ccsc_plugin.config import load_config
from ccsc_plugin.config.loading import parse_yaml
from ccsc_plugin.data.registry import dataset_setting
from ccsc_plugin.evaluation.tables import load_paper_results
from ccsc_plugin.pipeline import method_name
from ccsc_plugin.shipped import recipes_dir

SETTINGS = ("market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "msmt17")
METHODS = (
    "softmax",
    "softmax_ccsc",
    "softmax_ccsc_noconstraint",
    "softmax_triplet",
    "softmax_center",
    "softmax_ccsc_triplet",
)
BOT_METHODS = {"bot": "bot", "bot_ccsc": "bot+ccsc"}  # file stem -> the name it gives, one the code does not derive
RECIPE_DIR = recipes_dir()
PAPER_RECIPES = [RECIPE_DIR / setting / f"{method}.yaml" for setting in SETTINGS for method in METHODS]
CPU_RECIPES = [RECIPE_DIR / "cpu_cuhk03" / f"{method}.yaml" for method in (*METHODS, *BOT_METHODS)]
METHOD_FILES = sorted((RECIPE_DIR / METHODS_FOLDER).glob("*.yaml"))
# a paper recipe's own keys: its dataset, run folder and cell (the CUHK03 flags on the cuhk03 settings only)
DATASET_KEYS = {"sources", "save_dir", "cuhk03_labeled", "cuhk03_classic_split"}


def recipe_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def own_keys(path: Path) -> dict:
    """A recipe file's own mapping, ``_base_`` included, without its bases."""
    return parse_yaml(path.read_text(encoding="utf-8"), str(path))


def method_file(path: Path) -> Path:
    return RECIPE_DIR / METHODS_FOLDER / path.name


def test_there_is_one_recipe_per_cell():
    assert len(set(PAPER_RECIPES)) == 30 and all(path.is_file() for path in PAPER_RECIPES)


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=recipe_id)
def test_recipe_resolves_to_the_papers_settings(path):
    cfg = load_config(path)
    assert (cfg.data.height, cfg.data.width) == (384, 128)
    assert cfg.train.batch_size == 64 and cfg.sampler.num_instances == 4  # P=16 x K=4
    assert cfg.sampler.train_sampler == "RandomIdentitySampler"
    assert cfg.train.optim == "adam" and cfg.train.lr == pytest.approx(3.5e-4)
    assert cfg.train.lr_scheduler == "warmup_multistep" and cfg.train.warmup_epochs == 5
    assert cfg.train.warmup_start_lr == pytest.approx(3.5e-5)
    assert list(cfg.train.stepsize) == [35, 55] and cfg.train.gamma == pytest.approx(0.1)
    assert cfg.train.max_epoch == 100
    assert cfg.model.name == "resnet50_ccsc" and cfg.model.pretrained and not cfg.model.allow_random_init
    assert list(cfg.data.transforms) == ["random_flip", "random_erase"]
    assert cfg.loss.softmax.weight == 1.0 and not cfg.loss.softmax.label_smooth
    ccsc_on = "ccsc" in path.stem
    assert cfg.loss.ccsc.weight == (1.5 if ccsc_on else 0.0)
    assert cfg.loss.ccsc.cross_camera == ("noconstraint" not in path.stem)
    assert (cfg.loss.triplet.weight, cfg.loss.triplet.margin) == ((1.0, 0.3) if "triplet" in path.stem else (0.0, 0.3))
    assert cfg.loss.center.weight == (0.003 if "center" in path.stem else 0.0) and cfg.loss.center.alpha == 0.5


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=recipe_id)
def test_recipe_names_its_dataset_method_cell_and_own_run_folder(path):
    cfg = load_config(path)
    setting, stem = path.parent.name, path.stem
    assert dataset_setting(cfg.data.sources[0], cfg.data.cuhk03_labeled, cfg.data.cuhk03_classic_split) == (
        setting.replace("_", "-")
    )
    assert not cfg.data.cuhk03_classic_split  # CUHK03 runs the 767/700 protocol
    derived = cfg.clone()
    derived.defrost()
    derived.experiment.method = ""
    assert cfg.experiment.method == method_name(derived)  # the declared method is what the losses compute
    assert cfg.data.save_dir == f"runs/{setting}/{stem}"
    paper = load_paper_results()
    table, dataset_label, method_label = cfg.experiment.paper_cell.split(" / ")
    assert dataset_label == paper["datasets"][setting.replace("_", "-")]
    assert method_label == paper["methods"][cfg.experiment.method]
    assert cfg.experiment.method in paper["tables"][int(table.split()[1])]["methods"]
    method_text = method_file(path).read_text()  # the method's sources are said once, in its method file
    if "triplet" in stem:
        assert "Hermans" in method_text and "margin 0.3" in method_text
    if "center" in stem:
        assert "Wen et al." in method_text and "0.003" in method_text


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=recipe_id)
def test_paper_recipe_is_its_dataset_lines_over_base_and_its_method_file(path):
    own = own_keys(path)
    assert own.pop("_base_") == ["../base.yaml", f"../{METHODS_FOLDER}/{path.name}"]
    assert own == {"experiment": {"paper_cell": own["experiment"]["paper_cell"]}, "data": own["data"]}
    assert set(own["data"]) <= DATASET_KEYS and ("cuhk03" in path.parent.name) == ("cuhk03_labeled" in own["data"])


@pytest.mark.parametrize("path", CPU_RECIPES, ids=recipe_id)
def test_cpu_recipe_is_its_run_folder_over_the_cpu_base_and_its_method_file(path):
    own = own_keys(path)
    assert own == {
        "_base_": ["base.yaml", f"../{METHODS_FOLDER}/{path.name}"],
        "data": {"save_dir": f"runs/cpu_cuhk03/{path.stem}"},
    }


def test_there_is_one_method_file_per_method():
    assert [path.stem for path in METHOD_FILES] == sorted([*METHODS, *BOT_METHODS])


@pytest.mark.parametrize("path", METHOD_FILES, ids=lambda path: path.stem)
def test_method_file_names_the_method_its_losses_give_unless_the_code_cannot(path):
    cfg = load_config(path)
    derived = cfg.clone()
    derived.defrost()
    derived.experiment.method = ""
    if path.stem in BOT_METHODS:  # BoT's names say more than the loss terms: kept, as the code does not derive them
        assert cfg.experiment.method == BOT_METHODS[path.stem] != method_name(derived)
    else:
        assert cfg.experiment.method == method_name(derived)


def test_every_table_cell_has_exactly_one_recipe():
    paper = load_paper_results()
    cells = [(info.dataset, info.method) for info in list_recipes() if info.paper_cell != "-"]
    assert len(cells) == len(set(cells)) == 30
    wanted = {(d, m) for d in paper["datasets"] for n in (1, 2, 3) for m in paper["tables"][n]["methods"]}
    assert set(cells) == wanted


def test_recipes_command_prints_one_line_per_recipe_and_none_per_method_file(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(list(RECIPE_DIR.rglob("*.yaml"))) - len(METHOD_FILES) and METHOD_FILES
    assert not [line for line in lines if f"/{METHODS_FOLDER}/" in line.split()[0]]
    line = next(line for line in lines if "cuhk03_detected/softmax_ccsc_noconstraint.yaml " in line)
    assert line.split()[1:3] == ["cuhk03-detected", "softmax+ccsc-noconstraint"]
    assert line.endswith("Table 2 / CUHK03-detected / Softmax + CCSC w/o cross-camera constraint")


def test_recipes_command_on_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["recipes", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_recipes_command_lists_a_users_folder(tmp_path, capsys):
    (tmp_path / "mine.yaml").write_text(
        f"_base_: {RECIPE_DIR / 'base.yaml'}\nexperiment: {{paper_cell: mine}}\nloss: {{triplet: {{weight: 1.0}}}}\n"
    )
    assert main(["recipes", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split()[1:] == ["market1501", "softmax+ccsc+triplet", "mine"]
