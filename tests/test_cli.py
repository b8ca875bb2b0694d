"""``ccsc-reid`` from the command line: train, test, and errors a user can act on."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccsc_plugin.cli import build_parser, main
from ccsc_plugin.cli.options import add_set_option
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.evaluation.tables import find_results, render_tables

REPO = Path(__file__).resolve().parents[1]
BASE = str(REPO / "recipes" / "base.yaml")


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
    (written,) = (test_dir / "tests").glob("*.json")
    evaluated = read_result(written)
    assert evaluated["kind"] == "test" and evaluated["checkpoint"].endswith("epoch-002.pt")
    assert evaluated["rank1"] == pytest.approx(trained["rank1"]) and evaluated["mAP"] == pytest.approx(trained["mAP"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_training_into_a_folder_holding_a_run_stops_until_overwritten(tiny_overrides, tmp_path, capsys):
    run = tmp_path / "run"  # tiny_overrides' data.save_dir
    assert main(["train", BASE, *as_args(tiny_overrides)]) == 0  # 2 epochs
    killed_save = run / "checkpoints" / ".epoch-003.pt.k1ll3d00.tmp"  # what a SIGKILL in atomic_write leaves
    killed_save.write_bytes(b"half a checkpoint")
    old_test = run / "tests" / "market1501-epoch-002-0123abcd.json"  # a test result of the old run
    old_test.parent.mkdir()
    old_test.write_text("{}")
    before = files(run)
    capsys.readouterr()

    one_epoch = [*as_args(tiny_overrides), "--set", "train.max_epoch=1", "--set", "train.warmup_epochs=0"]
    assert main(["train", BASE, *one_epoch]) == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a run" in err and "checkpoints/epoch-002.pt" in err and "result.json" in err
    assert "--set data.save_dir=NEW_FOLDER" in err and f"--resume {run}" in err and "--overwrite" in err
    assert files(run) == before  # nothing written, removed or logged

    assert main(["train", BASE, *one_epoch, "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert f"removed the previous run in {run}" in out
    for gone in ("checkpoints/epoch-002.pt", "result.json", "train.log", "events.out.tfevents", old_test.name):
        assert gone in out
    assert killed_save.name in out and not killed_save.exists() and not old_test.exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-001.pt"]
    assert len(list(run.glob("events.out.tfevents*"))) == 1
    assert (run / "train.log").read_text().count("=> Start training") == 1
    result = read_result(run)
    final = run / "checkpoints" / "epoch-001.pt"
    assert result["epochs"] == 1 and result["kind"] == "train"
    assert result["checkpoint"] == str(final.resolve()) and result["checkpoint_sha256"] == sha256(final)


@pytest.mark.slow
def test_test_writes_beside_the_training_result_and_the_table_files_each_under_its_dataset(
    tiny_overrides, market_csv, tmp_path
):
    run = tmp_path / "run"  # tiny_overrides' data.save_dir: test writes into the training run's folder
    overrides = as_args([*tiny_overrides, "test.eval_freq=1"])  # epoch-001.pt and epoch-002.pt
    assert main(["train", BASE, *overrides]) == 0
    trained = (run / "result.json").read_bytes()
    csv_target = ["--set", "data.targets=[csv]", "--set", f"data.csv.path={market_csv / 'labels.csv'}"]
    same = ["--weights", str(run)]
    for weights_and_target in (same, ["--weights", str(run / "checkpoints" / "epoch-001.pt")], [*same, *csv_target]):
        assert main(["test", BASE, *overrides, *weights_and_target]) == 0
    assert main(["test", BASE, *overrides, *same]) == 0  # a repeated identical test replaces its own result

    assert (run / "result.json").read_bytes() == trained
    tests = [read_result(path) for path in sorted((run / "tests").glob("*.json"))]
    assert sorted((test["dataset"], Path(test["checkpoint"]).name) for test in tests) == [
        ("csv", "epoch-002.pt"),
        ("market1501", "epoch-001.pt"),
        ("market1501", "epoch-002.pt"),
    ]
    for test in tests:
        assert test["kind"] == "test" and test["checkpoint_sha256"] == sha256(Path(test["checkpoint"]))

    markdown = render_tables(find_results([run]))
    table_1 = markdown.split("### ")[1]
    assert next(line for line in table_1.splitlines() if "| Market-1501 | Softmax + CCSC |" in line).endswith(
        "| 1 | 2 |"
    )  # one training run of 2 epochs: tests are not averaged in
    assert "Not in Tables" not in markdown
    test_rows = markdown.split("### Tests of trained weights")[1].split("### ")[0]  # up to the camera-gap table
    assert f"| csv | Softmax + CCSC | {(run / 'checkpoints' / 'epoch-002.pt').resolve()} |" in test_rows
    assert test_rows.count("| Market-1501 | Softmax + CCSC |") == 2


def set_option(parser: argparse.ArgumentParser) -> argparse.Action:
    """``parser``'s ``--set`` declaration."""
    (action,) = [action for action in parser._actions if "--set" in action.option_strings]
    return action


def parser_of(command: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser of a ``ccsc-reid`` sub-command, or of ``benchmarks/real_tables.py``."""
    if command == "benchmarks/real_tables.py":
        monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the scripts import _common
        return importlib.import_module("real_tables").build_parser()
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[command]


# every command line that overrides recipe keys -> what else it needs to parse
TAKES_OVERRIDES = {
    "train": ["RECIPE"],
    "test": ["RECIPE", "--weights", "RUN"],
    "export": ["RECIPE", "--onnx", "out.onnx"],
    "quickstart": [],
    "benchmarks/real_tables.py": [],
}


@pytest.mark.parametrize("command", TAKES_OVERRIDES)
def test_every_command_line_declares_set_as_the_one_helper_does(command, monkeypatch):
    parser = parser_of(command, monkeypatch)
    action, helper = set_option(parser), add_set_option(argparse.ArgumentParser())
    fields = ("option_strings", "dest", "metavar", "default", "nargs", "type", "required")
    assert type(action) is type(helper)
    assert {f: getattr(action, f) for f in fields} == {f: getattr(helper, f) for f in fields}
    head, tail = helper.help.split(", e.g.")  # the help may say where the overrides apply, in between
    assert action.help.startswith(head) and action.help.endswith(f", e.g.{tail}"), action.help
    args = parser.parse_args([*TAKES_OVERRIDES[command], "--set", "train.lr=0.1", "--set", "train.lr=0.2"])
    assert args.overrides == ["train.lr=0.1", "train.lr=0.2"]  # repeatable, in order: the last one wins


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
    "latin-1": ("experiment: {paper_cell: caf\xe9}\n".encode("latin-1"), [], r"r\.yaml line 1: not UTF-8.*as UTF-8"),
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


RERANKED = {"used": True, "k1": 20, "k2": 6, "lambda": 0.3}


def test_test_with_re_ranking_and_the_cuhk03_metric_records_them_and_the_table_keeps_them_apart(
    tiny_checkpoint, tiny_overrides, tmp_path, capsys
):
    test_dir = tmp_path / "eval"
    command = ["test", BASE, "--weights", str(tiny_checkpoint), *as_args(tiny_overrides)]
    command += ["--set", f"data.save_dir={test_dir}"]
    assert main(command) == 0
    assert main([*command, "--set", "test.rerank=true"]) == 0
    out = capsys.readouterr().out
    announced = (
        r"=> Re-ranking market1501 \(k1=20, k2=6, lambda=0.3\): 18 queries, 18 gallery images, at most [\d,]+ MB"
    )
    assert re.search(announced + r" \(limit 8,192 MB: test.rerank_max_mb\)", out)
    assert "re-ranked (k1=20, k2=6, lambda=0.3)) **" in out and re.search(r"mINP: [\d.]+%", out)
    assert main([*command, "--set", "test.use_metric_cuhk03=true"]) == 0
    results = {path: read_result(path) for path in (test_dir / "tests").glob("*.json")}
    by_ranking = {(r["rerank"]["used"], r["use_metric_cuhk03"]): r for r in results.values()}
    assert sorted(by_ranking) == [(False, False), (False, True), (True, False)]  # three results, none replaced
    reranked, plain = by_ranking[True, False], by_ranking[False, False]
    assert reranked["rerank"] == reranked["targets"]["market1501"]["rerank"] == RERANKED
    assert plain["rerank"] == {"used": False} and 0 < plain["mINP"] <= 1
    assert reranked["mINP"] == reranked["targets"]["market1501"]["mINP"]

    markdown = render_tables(find_results([test_dir]))
    tests_table = markdown.split("### Tests of trained weights")[1].split("### ")[0]
    assert tests_table.count("| Market-1501 |") == 1  # the plain test only
    others = markdown.split("### Re-ranked and other rankings")[1].split("### ")[0]
    assert "| test | re-ranked (k1=20, k2=6, λ=0.3) |" in others and "| test | CUHK03 single-shot CMC |" in others
    assert f"{100 * reranked['mINP']:.1f} |" in others


def test_test_refuses_re_ranking_beyond_its_memory_limit(tiny_checkpoint, tiny_overrides, tmp_path, capsys):
    test_dir = tmp_path / "eval"
    overrides = [*tiny_overrides, f"data.save_dir={test_dir}", "test.rerank=true", "test.rerank_max_mb=1"]
    assert main(["test", BASE, "--weights", str(tiny_checkpoint), *as_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"gallery images needs up to [\d,]+ MB, over the limit of 1 MB \(test.rerank_max_mb\)", err)
    assert "Raise test.rerank_max_mb" in err and "test.rerank=false" in err and "Traceback" not in err
    assert not list(test_dir.glob("tests/*.json"))
