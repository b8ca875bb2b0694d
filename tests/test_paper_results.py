"""``paper_results.yaml`` against the paper's Tables 1-4, read by hand from the paper's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccsc_plugin.cli.recipe_index import list_recipes
from ccsc_plugin.evaluation.tables import load_paper_results

PAPER_RESULTS = Path(__file__).resolve().parents[1] / "ccsc_plugin" / "evaluation" / "paper_results.yaml"
DASH = None  # a "-" cell of the paper

# Read from the paper's printed tables, one cell per line: (table, dataset, method, rank-1, mAP).
READ_BY_HAND = [
    (1, "cuhk03-labeled", "softmax", 63.8, 60.8),
    (1, "msmt17", "softmax+ccsc", 72.7, 45.4),
    (2, "cuhk03-detected", "softmax+ccsc-noconstraint", 67.1, 64.2),
    (2, "market1501", "softmax+ccsc-noconstraint", 91.4, 80.4),
    (3, "dukemtmcreid", "softmax+triplet", 84.0, 69.4),
    (3, "cuhk03-labeled", "softmax+center", 66.1, 62.2),
    (3, "msmt17", "softmax+ccsc+triplet", 72.4, 47.5),
    (4, "market1501", "MGN", 95.7, 86.9),
    (4, "cuhk03-detected", "PCB", 61.3, 54.2),
    (4, "cuhk03-labeled", "IDE", 22.2, 21.0),
    (4, "cuhk03-labeled", "SVDNet", DASH, DASH),
    (4, "msmt17", "BFE", DASH, DASH),
]

# Table 4's compared methods, in the printed order, with the datasets each one has a number for.
TABLE4_OTHERS = {
    "IDE": {"cuhk03-labeled", "cuhk03-detected", "dukemtmcreid", "market1501"},
    "SVDNet": {"cuhk03-detected", "dukemtmcreid", "market1501"},
    "AlignedReID": {"dukemtmcreid", "market1501"},
    "HA-CNN": {"dukemtmcreid", "market1501"},
    "SPReID": {"dukemtmcreid", "market1501"},
    "PCB": {"cuhk03-detected", "dukemtmcreid", "market1501"},
    "PCB + RPP": {"cuhk03-detected", "dukemtmcreid", "market1501"},
    "MGN": {"cuhk03-labeled", "cuhk03-detected", "dukemtmcreid", "market1501"},
    "BFE": {"cuhk03-labeled", "cuhk03-detected", "dukemtmcreid", "market1501"},
}


@pytest.fixture(scope="module")
def paper():
    return load_paper_results()


def cell(paper: dict, table: int, dataset: str, method: str) -> dict:
    """The published {rank1, mAP} of one row of a table: a project method or a Table 4 compared method."""
    spec = paper["tables"][table]
    if method in spec["methods"]:
        return paper["results"][dataset][method]
    others = {other["method"]: other for other in spec.get("others", [])}
    assert method in others, f"Table {table} has no row {method}"
    return others[method]["results"][dataset]


@pytest.mark.parametrize(("table", "dataset", "method", "rank1", "mAP"), READ_BY_HAND)
def test_cells_read_by_hand_from_the_paper(paper, table, dataset, method, rank1, mAP):
    assert cell(paper, table, dataset, method) == {"rank1": rank1, "mAP": mAP}


def test_numbers_the_prose_quotes(paper):
    market, cuhk = paper["results"]["market1501"], paper["results"]["cuhk03-detected"]
    assert market["softmax"] == {"rank1": 91.4, "mAP": 77.9}  # Sec. 3.1
    assert market["softmax+ccsc"] == {"rank1": 92.1, "mAP": 81.8}
    # the abstract and Sec. 4.3: on CUHK03-detected CCSC adds 10.0 rank-1 and 10.2 mAP to the baseline
    assert (cuhk["softmax"], cuhk["softmax+ccsc"]) == ({"rank1": 60.4, "mAP": 56.6}, {"rank1": 70.4, "mAP": 66.8})


def test_tables_have_the_papers_columns_and_rows(paper):
    assert list(paper["datasets"]) == ["cuhk03-labeled", "cuhk03-detected", "dukemtmcreid", "market1501", "msmt17"]
    assert paper["tables"][1]["methods"] == ["softmax", "softmax+ccsc"]
    assert paper["tables"][2]["methods"] == ["softmax+ccsc", "softmax+ccsc-noconstraint"]
    assert paper["tables"][3]["methods"] == [
        "softmax+ccsc",
        "softmax+triplet",
        "softmax+center",
        "softmax",
        "softmax+ccsc+triplet",
    ]
    assert paper["tables"][4]["methods"] == ["softmax", "softmax+ccsc"]
    assert [other["method"] for other in paper["tables"][4]["others"]] == list(TABLE4_OTHERS)


@pytest.mark.parametrize("table", [1, 2, 3, 4])
def test_every_cell_of_a_table_is_present_and_a_percentage(paper, table):
    rows = paper["tables"][table]["methods"] + [o["method"] for o in paper["tables"][table].get("others", [])]
    for method in rows:
        for dataset in paper["datasets"]:
            values = cell(paper, table, dataset, method)
            assert set(values) == {"rank1", "mAP"}, (table, dataset, method)
            printed = method not in TABLE4_OTHERS or dataset in TABLE4_OTHERS[method]
            for value in values.values():
                assert (0 < value <= 100) if printed else value is DASH, (table, dataset, method, values)


def test_results_hold_every_project_method_on_every_dataset(paper):
    assert set(paper["results"]) == set(paper["datasets"])
    for dataset, methods in paper["results"].items():
        assert set(methods) == set(paper["methods"]), dataset


@pytest.mark.parametrize(("table", "row"), [(1, "increment"), (2, "reduction")])
def test_printed_difference_rows_match_the_cells_but_for_the_noted_misprint(paper, table, row):
    """Table 1's "increment" and Table 2's "reduction" rows, as printed, against the rows above them."""
    difference = paper["tables"][table]["difference"]
    assert difference["label"] == row
    assert set(difference["values"]) == set(paper["datasets"])
    misprints = {(m["dataset"], m["metric"]): (m["printed"], m["computed"]) for m in difference.get("misprints", [])}
    for dataset in paper["datasets"]:
        new, old = (cell(paper, table, dataset, method) for method in difference["of"])
        assert set(difference["values"][dataset]) == {"rank1", "mAP"}, dataset
        for metric, printed in difference["values"][dataset].items():
            computed = round(new[metric] - old[metric], 1)
            assert (printed, computed) == misprints.get((dataset, metric), (computed, computed)), (dataset, metric)


def test_the_one_difference_that_does_not_add_up_is_table2_cuhk03_detected_rank1(paper):
    # printed "-3.1" under CUHK03-Detect Rank-1, while 67.1 - 70.4 = -3.3
    assert paper["tables"][2]["difference"]["misprints"] == [
        {"dataset": "cuhk03-detected", "metric": "rank1", "printed": -3.1, "computed": -3.3}
    ]
    assert "misprints" not in paper["tables"][1]["difference"]


def test_null_is_only_the_papers_dash_and_says_so():
    for line in PAPER_RESULTS.read_text().splitlines():
        if "null" in line and not line.lstrip().startswith("#"):
            assert line.rstrip().endswith('# "-" in the paper'), line


def test_compared_methods_name_their_reference(paper):
    refs = {other["method"]: other["ref"] for other in paper["tables"][4]["others"]}
    assert refs == {
        "IDE": 30,
        "SVDNet": 18,
        "AlignedReID": 26,
        "HA-CNN": 12,
        "SPReID": 8,
        "PCB": 19,
        "PCB + RPP": 19,
        "MGN": 22,
        "BFE": 4,
    }
    assert all(other["venue"] for other in paper["tables"][4]["others"])


RECIPES_WITH_A_CELL = [info for info in list_recipes() if info.paper_cell != "-"]


@pytest.mark.parametrize("info", RECIPES_WITH_A_CELL, ids=lambda info: f"{info.path.parent.name}/{info.path.stem}")
def test_recipe_paper_cell_names_a_published_cell_of_its_own_dataset_and_method(paper, info):
    table, dataset_label, method_label = info.paper_cell.split(" / ")
    number = int(table.removeprefix("Table "))
    datasets = {label: key for key, label in paper["datasets"].items()}
    methods = {label: key for key, label in paper["methods"].items()}
    assert dataset_label in datasets, f"{info.path}: {dataset_label!r} is not a dataset of paper_results.yaml"
    assert method_label in methods, f"{info.path}: {method_label!r} is not a method of paper_results.yaml"
    assert (datasets[dataset_label], methods[method_label]) == (info.dataset, info.method)
    assert info.method in paper["tables"][number]["methods"], f"{info.path}: Table {number} has no {method_label}"
    assert None not in cell(paper, number, info.dataset, info.method).values()
