"""``ccsc-reid table``: the paper's numbers beside measured ones from real ``result.json`` files."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest
import torch

from ccsc_plugin.cli import main
from ccsc_plugin.evaluation.camera_gap import camera_gap_report
from ccsc_plugin.evaluation.results import check_result, read_result
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
def runs_dir(miniature_root, module_tmp) -> Path:
    """Two short real training runs of shipped recipes on the miniature benchmarks."""
    root, _ = miniature_root
    runs = module_tmp("runs")
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
    assert cells[6] == f"{100 * base['mAP']:.1f}" and cells[8:] == [f"{100 * base['mINP']:.1f}", "1", "1"]
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
    assert math.isclose(float(cells[3]), round(100 * 0.75 * real["rank1"], 1), abs_tol=0.051) and cells[9] == "2"
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
        "–",  # no mINP recorded
        "2",
        "15",
    ]
    assert row(section, "cuhk03-detected-mini", "Softmax + CCSC")[3:7] == ["70.4", "66.8", "30.0", "20.0"]
    assert "runs/mine" in markdown.split("Not in Tables")[1]
    with pytest.raises(AssertionError, match="no row my-own-photos"):
        row(section, "my-own-photos", "Softmax (baseline)")
    assert "not run" in row(table_sections(markdown)["Table 1"], "CUHK03-detected", "Softmax (baseline)")


# ------------------------------------------------------------------------------ impossible metrics

GAP = gap_block(0.8, 0.5, 0.1)
RERANKED = {"used": True, "k1": 20, "k2": 6, "lambda": 0.3}
BAD_METRICS = {  # id -> (the result's changed keys, the key the error names, the value as the file shows it, fix)
    "nan-rank1": ({"rank1": math.nan}, "rank1", "NaN", "not a finite number"),
    "inf-map": ({"mAP": math.inf}, "mAP", "Infinity", "not a finite number"),
    "negative": ({"rank1": -0.1}, "rank1", "-0.1", "fractions in [0, 1]"),
    "percent": ({"rank1": 92.3}, "rank1", "92.3", "Was it written in percent? Divide it by 100."),
    "above-1": ({"mAP": 1.5}, "mAP", "1.5", "Was it written in percent?"),
    "far-above": ({"mAP": 512.0}, "mAP", "512.0", "fractions in [0, 1]"),
    "bool": ({"rank1": True}, "rank1", "true", "(a boolean), not a number"),
    "null-rank1": ({"rank1": None}, "rank1", "null", "(null), not a number"),
    "null-map": ({"mAP": None}, "mAP", "null", "(null), not a number"),
    "string-map": ({"mAP": "0.4"}, "mAP", '"0.4"', "(a string), not a number"),
    "rank5-percent": ({"rank5": 97.0}, "rank5", "97.0", "Was it written in percent?"),
    "rank10-nan": ({"rank10": math.nan}, "rank10", "NaN", "not a finite number"),
    "minp-negative": ({"mINP": -1}, "mINP", "-1", "fractions in [0, 1]"),
    "string-epochs": ({"epochs": "1"}, "epochs", '"1"', "a whole number >= 1"),
    "zero-epochs": ({"epochs": 0}, "epochs", "0", "a whole number >= 1"),
    "float-epochs": ({"epochs": 1.5}, "epochs", "1.5", "a whole number >= 1"),
    "bool-epochs": ({"epochs": True}, "epochs", "true", "a whole number >= 1"),
    "negative-test-epochs": ({"kind": "test", "epochs": -1}, "epochs", "-1", "a whole number >= 0"),
    "gap-string": ({"camera_gap": dict(GAP, same_camera="0.8")}, "camera_gap.same_camera", '"0.8"', "not a number"),
    "gap-above-1": ({"camera_gap": dict(GAP, cross_camera=1.5)}, "camera_gap.cross_camera", "1.5", "in [-1, 1]"),
    "gap-nan": ({"camera_gap": dict(GAP, different_person=math.nan)}, "camera_gap.different_person", "NaN", "finite"),
    "gap-not-difference": ({"camera_gap": dict(GAP, gap=0.9)}, "camera_gap.gap", "0.9", "same_camera - cross_camera"),
    "gap-without-means": ({"camera_gap": dict(GAP, cross_camera=None)}, "camera_gap.gap", "0.3", "is null"),
    "gap-not-object": ({"camera_gap": "high"}, "camera_gap", '"high"', "not an object"),
    "gap-pairs": ({"camera_gap": dict(GAP, pairs={"same_camera": -3})}, "camera_gap.pairs.same_camera", "-3", "count"),
    "gap-rank1-pair": (
        {"camera_gap": dict(GAP, rank1_by_camera_pair={"0->1": 3})},
        "camera_gap.rank1_by_camera_pair.0->1",
        "3",
        "a fraction in [0, 1]",
    ),
    "warnings-text": ({"warnings": "seen in training"}, "warnings", '"seen in training"', "not a list of text"),
    "rerank-bool": ({"rerank": True}, "rerank", "true", "not an object whose used is true or false"),
    "rerank-used-text": ({"rerank": {"used": "yes"}}, "rerank", '{"used": "yes"}', "whose used is true or false"),
    "rerank-k1-0": ({"rerank": dict(RERANKED, k1=0)}, "rerank.k1", "0", "not a whole number >= 1"),
    "rerank-k2-float": ({"rerank": dict(RERANKED, k2=6.5)}, "rerank.k2", "6.5", "not a whole number >= 1"),
    "rerank-lambda": ({"rerank": dict(RERANKED, **{"lambda": 30})}, "rerank.lambda", "30", "outside [0, 1]"),
    "cuhk03-text": ({"use_metric_cuhk03": "yes"}, "use_metric_cuhk03", '"yes"', "not true or false"),
}


def write_runs(folder: Path, **bad) -> Path:
    """A folder with a good run and a run whose result.json holds A_RESULT changed by ``bad``; the bad file."""
    good, worse = folder / "good" / "result.json", folder / "bad" / "result.json"
    for path, result in ((good, A_RESULT), (worse, dict(A_RESULT, **bad))):
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(result))  # NaN and Infinity as Python's json writes them
    return worse


@pytest.mark.parametrize(("changed", "key", "shown", "fix"), list(BAD_METRICS.values()), ids=list(BAD_METRICS))
def test_table_with_an_impossible_metric_exits_2_naming_file_key_value_and_fix(
    tmp_path, capsys, changed, key, shown, fix
):
    bad = write_runs(tmp_path / "runs", **changed)
    output = tmp_path / "tables.md"
    assert main(["table", str(tmp_path / "runs"), "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert f"{bad}: {key} is {shown}" in captured.err, captured.err
    assert fix in captured.err and "ccsc-reid train" in captured.err
    assert "Traceback" not in captured.err and not captured.out and not output.exists()


@pytest.mark.parametrize(
    "changed",
    [
        {"rank1": 1, "mAP": 0},  # whole numbers at the ends of [0, 1]
        {"rank5": None, "rank10": None, "mINP": None},  # a gallery smaller than 5 images
        {"rank5": 0.7, "rank10": 0.8, "mINP": 0.2},
        {"kind": "test", "epochs": 0},  # a test of weights saved within their first epoch
        {"camera_gap": gap_block(1.0, None, -1.0)},
        {"camera_gap": None, "warnings": []},
        {"rerank": {"used": False}, "use_metric_cuhk03": False},
        {"rerank": RERANKED, "use_metric_cuhk03": True},
    ],
    ids=["ends", "null-ranks", "all-metrics", "test-epoch-0", "gap-ends", "nulls", "plain-ranking", "other-ranking"],
)
def test_table_accepts_every_value_a_run_can_measure(tmp_path, capsys, changed):
    write_runs(tmp_path / "runs", **changed)
    assert main(["table", str(tmp_path / "runs")]) == 0
    assert "Table 1" in capsys.readouterr().out


# ------------------------------------------------------------------------------ runs with warnings

SEEN = "the scored identities were seen in training: rank-1 and mAP are not re-ID of new people"


@pytest.fixture
def warned_results() -> list[dict]:
    """Two runs of one cell carrying the same warning, a clean cell, a warned test and a warned CPU-scale run."""
    return [
        dict(A_RESULT, save_dir="runs/s1", warnings=[SEEN]),
        dict(A_RESULT, save_dir="runs/s2", warnings=[SEEN, "only 2 cameras"]),
        dict(A_RESULT, method="softmax+ccsc", save_dir="runs/ccsc", warnings=[]),
        dict(A_RESULT, kind="test", save_dir="runs/t", checkpoint="epoch-001.pt", warnings=[SEEN]),
        dict(A_RESULT, dataset="csv", test_set="cuhk03-detected-mini", save_dir="runs/real", warnings=[SEEN]),
        dict(A_RESULT, dataset="synthcam", save_dir="runs/quick", warnings=[SEEN, SEEN]),
        dict(
            A_RESULT, dataset="dukemtmcreid", method="softmax+ccsc", save_dir="runs/gap", camera_gap=GAP, warnings=["x"]
        ),
    ]


def footnote(section: str) -> list[str]:
    """The lines under a section's table (after its rows)."""
    return [line for line in section.split("\n\n", 2)[-1].splitlines() if line and not line.startswith("|")]


def test_rows_of_runs_with_warnings_are_marked_and_their_warnings_listed_once(warned_results):
    sections = table_sections(render_tables(warned_results))
    table1 = sections["Table 1"]
    cells = row(table1, "Market-1501", "Softmax (baseline) †")
    assert cells[3] == "50.0" and cells[9] == "2"  # still the mean of both runs
    assert row(table1, "Market-1501", "Softmax + CCSC")  # no warning: no mark
    notes = "\n".join(footnote(table1))
    assert notes.count(SEEN) == 1 and notes.count("only 2 cameras") == 1
    assert f"Market-1501 · Softmax (baseline): {SEEN} (runs/s1, runs/s2)" in notes
    assert "only 2 cameras (runs/s2)" in notes and "runs/ccsc" not in notes
    tests = sections["Tests of trained weights (ccsc-reid test; not averaged into the tables)"]
    assert row(tests, "Market-1501", "Softmax (baseline) †")[2] == "epoch-001.pt"
    assert SEEN in "\n".join(footnote(tests))
    real = sections["CPU-scale runs on real people (not a reproduction"]
    assert row(real, "cuhk03-detected-mini", "Softmax (baseline) †") and SEEN in "\n".join(footnote(real))
    gaps = sections["Camera gap"]
    assert row(gaps, "DukeMTMC-reID", "Softmax + CCSC †")[3] == "runs/gap"
    assert footnote(gaps)[1:] == ["- DukeMTMC-reID · Softmax + CCSC: x (runs/gap)"]
    markdown = render_tables(warned_results)
    assert f"runs/quick (synthcam, softmax; † {SEEN})" in markdown.split("Not in Tables")[1]


def test_tables_without_warnings_carry_no_mark_or_footnote():
    markdown = render_tables([dict(A_RESULT, save_dir="runs/a", warnings=[]), dict(A_RESULT, save_dir="runs/b")])
    assert "†" not in markdown


def test_the_cli_table_marks_a_warned_run(tmp_path, capsys):
    write_runs(tmp_path / "runs", warnings=[SEEN])
    assert main(["table", str(tmp_path / "runs")]) == 0
    sections = table_sections(capsys.readouterr().out)
    for table in ("Table 1", "Table 3"):  # the baseline row is in both: each table has its own footnote
        assert row(sections[table], "Market-1501", "Softmax (baseline) †") and sections[table].count(SEEN) == 1
    assert "†" not in sections["Table 2"]  # no baseline row there


def test_a_measured_camera_gap_passes_the_check(tmp_path):
    generator = torch.Generator().manual_seed(0)
    qf, gf = torch.randn(12, 16, generator=generator), torch.randn(30, 16, generator=generator)
    q_pids, g_pids = torch.arange(12) % 6, torch.arange(30) % 6
    gap = camera_gap_report(qf, gf, q_pids, g_pids, torch.arange(12) % 2, torch.arange(30) % 3)
    result = json.loads(json.dumps(dict(A_RESULT, rank5=None, rank10=0.9, camera_gap=gap, warnings=[])))
    check_result(result, tmp_path / "result.json")  # what a run writes, read back from JSON


# ------------------------------------------------------------------------------ re-ranked and CUHK03-metric results

OTHER_RANKINGS = "Re-ranked and other rankings (not comparable with the paper's cells; never averaged into them)"


def test_re_ranked_and_cuhk03_metric_results_get_their_own_labelled_table_never_the_papers_cells():
    results = [
        dict(A_RESULT, save_dir="runs/plain", mINP=0.2, rerank={"used": False}, use_metric_cuhk03=False),
        dict(A_RESULT, save_dir="runs/older"),  # written before rankings were recorded: ranked as the paper
        dict(A_RESULT, save_dir="runs/rr", rank1=0.9, mAP=0.8, mINP=0.6, rerank=RERANKED),
        dict(A_RESULT, kind="test", save_dir="runs/c", checkpoint="runs/c/epoch-001.pt", use_metric_cuhk03=True),
        dict(A_RESULT, kind="test", save_dir="runs/t", checkpoint="runs/t/epoch-001.pt", mINP=0.1),
    ]
    sections = table_sections(render_tables(results))
    cells = row(sections["Table 1"], "Market-1501", "Softmax (baseline)")
    assert cells[3] == "50.0" and cells[8:] == ["20.0", "2", "1"]  # the two paper-ranked runs; mINP of the one with it
    tests = sections["Tests of trained weights (ccsc-reid test; not averaged into the tables)"]
    assert [line for line in tests.splitlines() if "Market-1501" in line] == [
        "| Market-1501 | Softmax (baseline) | runs/t/epoch-001.pt | 50.0 | 40.0 | 10.0 |"
    ]
    others = [line for line in sections[OTHER_RANKINGS].splitlines() if "Market-1501" in line]
    assert others == [
        "| Market-1501 | Softmax (baseline) | train | re-ranked (k1=20, k2=6, λ=0.3) | runs/rr | 90.0 | 80.0 | 60.0 |",
        "| Market-1501 | Softmax (baseline) | test | CUHK03 single-shot CMC | runs/c/epoch-001.pt | 50.0 | 40.0 | – |",
    ]
    assert OTHER_RANKINGS not in render_tables(results[:2])


def test_a_result_both_re_ranked_and_cuhk03_ranked_says_both():
    result = dict(A_RESULT, save_dir="runs/both", rerank=dict(RERANKED, k1=10), use_metric_cuhk03=True)
    section = table_sections(render_tables([result]))[OTHER_RANKINGS]
    assert "| train | re-ranked (k1=10, k2=6, λ=0.3), CUHK03 single-shot CMC | runs/both |" in section
