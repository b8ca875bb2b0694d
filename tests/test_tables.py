"""``ccsc-reid table``: the paper's numbers beside measured ones from real ``result.json`` files."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from ccsc_plugin.cli import main
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.evaluation.tables import find_results, load_paper_results, render_tables
from ccsc_plugin.shipped import recipes_dir

TRAINED = {  # recipe -> the (dataset, method) its result.json must carry
    "market1501/softmax": ("market1501", "softmax"),
    "cuhk03_detected/softmax_ccsc": ("cuhk03-detected", "softmax+ccsc"),
}

RECIPE_DIR = recipes_dir()


def table_sections(markdown: str) -> dict[str, str]:
    return {part.split("\n", 1)[0].split(":")[0]: part for part in markdown.split("### ")[1:]}


def row(section: str, dataset: str, method: str) -> list[str]:
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[:2] == [dataset, method]:
            return cells
    raise AssertionError(f"no row {dataset} / {method} in\n{section}")


@pytest.fixture(scope="module")
def runs_dir(miniature_root, tmp_path_factory) -> Path:
    """Two short real training runs of shipped recipes on the miniature benchmarks."""
    root, _ = miniature_root
    runs = tmp_path_factory.mktemp("runs")
    tiny = [
        f"data.root={root}",
        "data.height=64",
        "data.width=32",
        "data.workers=0",
        "model.pretrained=false",
        "train.batch_size=16",
        "train.max_epoch=1",
        "train.warmup_epochs=0",
        "train.stepsize=[1]",
        "train.print_freq=100",
        "test.batch_size=32",
    ]
    for recipe in TRAINED:
        overrides = [*tiny, f"data.save_dir={runs / recipe}"]
        assert main(["train", str(RECIPE_DIR / f"{recipe}.yaml"), *[a for o in overrides for a in ("--set", o)]]) == 0
    return runs


def test_table_without_runs_shows_every_paper_cell_and_marks_it_not_run():
    paper = load_paper_results()
    sections = table_sections(render_tables([]))
    assert list(sections) == ["Table 1", "Table 2", "Table 3"]
    for number in (1, 2, 3):
        section, methods = sections[f"Table {number}"], paper["tables"][number]["methods"]
        lines = [line for line in section.splitlines() if line.startswith("| ")]
        assert len(lines) == 1 + len(paper["datasets"]) * len(methods)  # the header, then a row per cell
        for dataset, dataset_label in paper["datasets"].items():
            for method in methods:
                cells = row(section, dataset_label, paper["methods"][method])
                published = paper["results"][dataset][method]
                assert cells[2:5] == [f"{published['rank1']:.1f}", "not run", "–"]
                assert cells[5:8] == [f"{published['mAP']:.1f}", "not run", "–"]
    assert row(sections["Table 1"], "Market-1501", "Softmax (baseline)")[2:8:3] == ["91.4", "77.9"]
    noconstraint = row(sections["Table 2"], "MSMT17", "Softmax + CCSC w/o cross-camera constraint")
    assert noconstraint[2:8:3] == ["71.3", "43.1"]


@pytest.mark.slow
def test_runs_write_result_json_with_dataset_setting_and_method(runs_dir):
    for recipe, (dataset, method) in TRAINED.items():
        result = read_result(runs_dir / recipe)
        assert (result["dataset"], result["method"]) == (dataset, method)
        assert result["recipe"].endswith(f"{recipe}.yaml") and result["epochs"] == 1 and result["seed"] == 1
        assert result["wall_time_s"] > 0 and "git_commit" in result
        assert 0 <= result["rank1"] <= 1 and 0 < result["mAP"] <= 1
        assert (runs_dir / recipe / "checkpoints").is_dir()


@pytest.mark.slow
def test_table_puts_measured_runs_beside_the_paper(runs_dir, tmp_path, capsys):
    output = tmp_path / "tables.md"
    assert main(["table", str(runs_dir), "--output", str(output)]) == 0
    markdown = capsys.readouterr().out
    assert output.read_text() == markdown
    sections = table_sections(markdown)
    base = read_result(runs_dir / "market1501/softmax")
    cells = row(sections["Table 1"], "Market-1501", "Softmax (baseline)")
    measured = 100 * base["rank1"]
    assert cells[2:5] == ["91.4", f"{measured:.1f}", f"{measured - 91.4:+.1f}"]
    assert cells[6] == f"{100 * base['mAP']:.1f}" and cells[8:] == ["1", "1"]
    cuhk = read_result(runs_dir / "cuhk03_detected/softmax_ccsc")
    for table in ("Table 1", "Table 2", "Table 3"):  # the CCSC row appears in all three tables
        cells = row(sections[table], "CUHK03-detected", "Softmax + CCSC")
        assert cells[2:4] == ["70.4", f"{100 * cuhk['rank1']:.1f}"]
    assert row(sections["Table 1"], "CUHK03-labeled", "Softmax + CCSC")[3] == "not run"
    assert row(sections["Table 3"], "Market-1501", "Softmax + hard triplet")[2:4] == ["91.8", "not run"]


@pytest.mark.slow
def test_table_averages_runs_of_one_cell_and_lists_runs_outside_the_tables(runs_dir, tmp_path):
    real = json.loads((runs_dir / "market1501/softmax/result.json").read_text())
    second = dict(real, rank1=real["rank1"] / 2, save_dir=str(tmp_path / "seed2"))
    other = dict(real, dataset="synthcam", save_dir=str(tmp_path / "quick"))
    for name, result in (("seed2", second), ("quick", other)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(result))
    markdown = render_tables(find_results([runs_dir, tmp_path / "seed2", tmp_path / "quick" / "result.json"]))
    cells = row(table_sections(markdown)["Table 1"], "Market-1501", "Softmax (baseline)")
    assert math.isclose(float(cells[3]), round(100 * 0.75 * real["rank1"], 1), abs_tol=0.051) and cells[8] == "2"
    assert "synthcam" in markdown.rsplit("Not in Tables", 1)[1]


def test_table_on_a_folder_without_results_exits_2(tmp_path, capsys):
    assert main(["table", str(tmp_path)]) == 2
    assert "No result.json" in capsys.readouterr().err
    assert main(["table", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_paper_results_ship_as_package_data():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "paper_results.yaml" in pyproject["tool"]["setuptools"]["package-data"]["ccsc_plugin.evaluation"]


A_RESULT = {"dataset": "market1501", "method": "softmax", "rank1": 0.5, "mAP": 0.4, "epochs": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a JSON result file"),
        (b"\xff\xfe{}", "is not a JSON result file"),
        ("[1, 2]", "holds a JSON list, not a result object"),
        (json.dumps({k: v for k, v in A_RESULT.items() if k not in ("mAP", "epochs")}), "lacks mAP, epochs"),
    ],
    ids=["not-json", "not-utf8", "list", "missing-keys"],
)
def test_table_with_a_malformed_result_exits_2_naming_the_file(tmp_path, capsys, content, message):
    good, bad = tmp_path / "good" / "result.json", tmp_path / "bad" / "result.json"
    for path, text in ((good, json.dumps(A_RESULT)), (bad, content)):
        path.parent.mkdir()
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["table", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert f"{bad} {message}" in captured.err and "Traceback" not in captured.err and not captured.out


@pytest.mark.parametrize(
    ("output", "message"),
    [(".", "is a folder; give a file name, e.g. --output"), ("absent/tables.md", "absent does not exist; create it")],
)
def test_table_output_that_cannot_be_written_exits_2_before_rendering(tmp_path, capsys, output, message):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "result.json").write_text(json.dumps(A_RESULT))
    assert main(["table", str(tmp_path / "run"), "--output", str(tmp_path / output)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err and not captured.out
    assert not (tmp_path / "absent").exists()


def gap_block(same: float, cross: float | None, other: float) -> dict:
    gap = None if cross is None else same - cross
    return {"same_camera": same, "cross_camera": cross, "different_person": other, "gap": gap}


def test_table_lists_the_camera_gap_of_each_run_that_has_one():
    results = [
        dict(A_RESULT, save_dir="runs/base", camera_gap=gap_block(0.81, 0.52, 0.1)),
        dict(A_RESULT, save_dir="runs/older"),  # written before the camera gap: left out of that table
        dict(A_RESULT, method="softmax+ccsc", kind="test", save_dir="runs/t", camera_gap=gap_block(0.9, None, -0.02)),
    ]
    sections = table_sections(render_tables(results))
    assert list(sections) == [
        "Table 1",
        "Table 2",
        "Table 3",
        "Tests of trained weights (ccsc-reid test; not averaged into the tables)",
        "Camera gap",
    ]
    gaps = sections["Camera gap"]
    assert row(gaps, "Market-1501", "Softmax (baseline)")[2:] == [
        "train",
        "runs/base",
        "0.810",
        "0.520",
        "0.100",
        "+0.290",
    ]
    assert row(gaps, "Market-1501", "Softmax + CCSC")[2:] == ["test", "runs/t", "0.900", "–", "-0.020", "–"]
    assert "runs/older" not in gaps
    assert "Camera gap" not in render_tables([dict(A_RESULT, save_dir="runs/older")])


def test_cpu_scale_real_runs_sit_beside_the_papers_cell_labelled_as_such():
    real = dict(A_RESULT, dataset="csv", test_set="cuhk03-detected-mini", epochs=15)
    results = [
        dict(real, rank1=0.10, mAP=0.12, save_dir="runs/a"),
        dict(real, rank1=0.20, mAP=0.14, save_dir="runs/b"),
        dict(real, method="softmax+ccsc", rank1=0.3, mAP=0.2, save_dir="runs/c"),
        dict(A_RESULT, dataset="csv", test_set="my-own-photos", save_dir="runs/mine"),  # no paper setting
    ]
    markdown = render_tables(results)
    section = table_sections(markdown)["CPU-scale runs on real people (not a reproduction"]
    assert row(section, "cuhk03-detected-mini", "Softmax (baseline)")[2:] == [
        "CUHK03-detected",
        "60.4",
        "56.6",
        "15.0",
        "13.0",
        "2",
        "15",
    ]
    assert row(section, "cuhk03-detected-mini", "Softmax + CCSC")[3:7] == ["70.4", "66.8", "30.0", "20.0"]
    assert "runs/mine" in markdown.split("Not in Tables")[1]
    with pytest.raises(AssertionError, match="no row my-own-photos"):
        row(section, "my-own-photos", "Softmax (baseline)")
    assert "not run" in row(table_sections(markdown)["Table 1"], "CUHK03-detected", "Softmax (baseline)")
