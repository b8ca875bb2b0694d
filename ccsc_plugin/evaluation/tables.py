"""``ccsc-reid table``: the paper's Tables 1-3 in Markdown, published and measured side by side.

Published numbers come from ``paper_results.yaml`` (package data: the paper's Tables 1-4). Measured
numbers come from the ``result.json`` files of training runs (:mod:`ccsc_plugin.evaluation.results`), matched to a
cell by their ``dataset`` and ``method``; several runs of one cell are averaged. CPU-scale runs on real
people (the ``csv`` dataset tested on a CUHK03-detected folder, ``benchmarks/real_tables.py``) get a table of
their own beside the paper's cell of that setting, labelled as such. Test results
(``ccsc-reid test``, ``kind: test``) are listed in a table of their own, each under the dataset it scored.
Results ranked otherwise than the paper's (re-ranked, or CUHK03's single-shot CMC: ``results.ranking``) are
never averaged into those: they get a table of their own, labelled with how they were ranked. mINP is shown
beside each measured rank-1 and mAP (the paper gives none). Last, each run's camera gap (``camera_gap`` in
``result.json``, see :mod:`~ccsc_plugin.evaluation.camera_gap`).

A row holding a run whose ``result.json`` carries ``warnings`` (text that qualifies its score, e.g. that the
scored identities were seen in training) has its method marked ``†``; a footnote under that table lists each
marked row's warnings once, with the runs that carry each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ccsc_plugin.evaluation.results import (
    RESULT_FILE,
    ResultFileError,
    check_result,
    ranking,
    read_result,
    result_files,
)

RENDERED_TABLES = (1, 2, 3)
METRICS = ("rank1", "mAP")
TABLE_KEYS = ("dataset", "method", *METRICS, "epochs")  # what a row needs from a result.json
METRIC_LABELS = {"rank1": "R-1", "mAP": "mAP"}
MINP = "mINP"  # measured only: results written before it was recorded show –
# Real-data runs at CPU scale (``dataset: csv``), by the folder name their ``test_set`` starts with: shown beside
# the paper's cell of that setting, labelled as a CPU-scale run, never averaged into it.
CPU_SCALE_TEST_SETS = {"cuhk03-detected": "cuhk03-detected"}
WARNING_MARK = "†"  # after the method of a row with a run whose result.json carries warnings
GAP_COLUMNS = {"same_camera": "Same camera", "cross_camera": "Cross-camera", "different_person": "Other people"}


def load_paper_results() -> dict[str, Any]:
    """The published numbers, datasets, methods and table layout (``paper_results.yaml``)."""
    text = resources.files("ccsc_plugin.evaluation").joinpath("paper_results.yaml").read_text()
    return yaml.safe_load(text)


def find_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every result in ``paths``: files, or folders searched recursively for ``result.json`` and ``tests/*.json``.

    Each is checked (:func:`~ccsc_plugin.evaluation.results.check_result`) before any is returned, so an
    impossible metric stops the table with the file and key before anything is printed or written.
    """
    found: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; give run folders (data.save_dir) or result.json files.")
        files = [path] if path.is_file() else result_files(path)
        if not files:
            raise FileNotFoundError(f"No {RESULT_FILE} under {path}; train a recipe first (ccsc-reid train RECIPE).")
        for file in files:
            result = read_result(file)
            missing = [key for key in TABLE_KEYS if key not in result]
            if missing:
                raise ResultFileError(
                    f"{file} lacks {', '.join(missing)}: not a result.json of `ccsc-reid train` or `test`. "
                    "Leave it out of the table's RUN_DIRs, or train the run again."
                )
            check_result(result, file)  # every file, before anything is rendered
            result.setdefault("save_dir", str(file.parent))
            found.append(result)
    return found


def check_output(path: str | Path, example: str = "tables.md") -> Path:
    """The file ``--output`` names, checked before anything is rendered (not a folder; its folder exists)."""
    path = Path(path)
    if path.is_dir():
        raise ResultFileError(f"--output {path} is a folder; give a file name, e.g. --output {path / example}.")
    if not path.parent.is_dir():
        raise ResultFileError(
            f"--output {path}: the folder {path.parent} does not exist; create it (mkdir -p {path.parent}) "
            "or write the file elsewhere."
        )
    return path


def _mean_percent(runs: Sequence[dict[str, Any]], metric: str) -> float | None:
    values = [run[metric] for run in runs if run.get(metric) is not None]
    return 100.0 * sum(values) / len(values) if values else None


def _fmt(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.1f}"


def _delta(measured: float | None, paper: float | None) -> str:
    return "–" if measured is None or paper is None else f"{measured - paper:+.1f}"


class _Marks:
    """The rows of one table with runs that carry ``warnings``: marks their method cell, then writes the footnote."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, list[str]]] = {}  # row name -> warning -> the runs carrying it

    def method(self, label: str, dataset_label: str, runs: Sequence[dict[str, Any]]) -> str:
        """``label``, marked when a run of the row carries a warning (which the footnote then lists)."""
        warned = [run for run in runs if run.get("warnings")]
        for run in warned:
            for warning in dict.fromkeys(run["warnings"]):
                self.rows.setdefault(f"{dataset_label} · {label}", {}).setdefault(warning, []).append(
                    str(run.get("save_dir"))
                )
        return f"{label} {WARNING_MARK}" if warned else label

    def under(self, lines: list[str]) -> list[str]:
        """``lines`` (a table), then the footnote when a row is marked."""
        if not self.rows:
            return lines
        notes = [f"{WARNING_MARK} Runs with warnings that qualify their scores:"]
        for name, warnings in self.rows.items():
            notes += [f"- {name}: {warning} ({', '.join(runs)})" for warning, runs in warnings.items()]
        return [*lines, "", *notes]


def render_table(number: int, paper: dict[str, Any], measured: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    """One table: a row per dataset and method; paper, measured and difference for rank-1 and mAP."""
    spec = paper["tables"][number]
    header = ["Dataset", "Method"]
    for metric in METRICS:
        label = METRIC_LABELS[metric]
        header += [f"Paper {label}", f"Measured {label}", f"Δ {label}"]
    header += ["Measured mINP", "Runs", "Epochs"]
    lines = [f"### {spec['title']}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    marks = _Marks()
    for dataset, dataset_label in paper["datasets"].items():
        for method in spec["methods"]:
            runs = measured.get((dataset, method), [])
            row = [dataset_label, marks.method(paper["methods"][method], dataset_label, runs)]
            published = paper["results"][dataset][method]
            for metric in METRICS:
                ours = _mean_percent(runs, metric)
                row += [_fmt(published[metric], "-"), _fmt(ours, "not run"), _delta(ours, published[metric])]
            epochs = sorted({str(run.get("epochs")) for run in runs})
            row += [_fmt(_mean_percent(runs, MINP), "–"), str(len(runs)) if runs else "–"]
            row.append(", ".join(epochs) if runs else "–")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(marks.under(lines))


def cpu_scale_setting(result: dict[str, Any]) -> str | None:
    """The paper's dataset setting a CPU-scale real-data run is shown beside, or None for other results."""
    test_set = str(result.get("test_set", ""))
    if result.get("dataset") != "csv":
        return None
    return next((setting for prefix, setting in CPU_SCALE_TEST_SETS.items() if test_set.startswith(prefix)), None)


def render_cpu_scale(runs: Sequence[dict[str, Any]], paper: dict[str, Any]) -> str:
    """CPU-scale real-data runs, one row per test set and method (mean over runs), beside the paper's cell."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[(str(run.get("test_set")), str(run.get("method")))].append(run)
    lines = [
        "### CPU-scale runs on real people (not a reproduction: the paper's cell is its own setting, ResNet-50 from "
        "ImageNet at 384x128 on CUHK03's 767/700 split)",
        "",
        "| Test set | Method | Paper setting | Paper R-1 | Paper mAP | Measured R-1 | Measured mAP | Measured mINP "
        "| Runs | Epochs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    marks = _Marks()
    for (test_set, method), group in sorted(grouped.items()):
        setting = cpu_scale_setting(group[0])
        published = paper["results"][setting].get(method, {}) if method in paper["methods"] else {}
        row = [
            test_set,
            marks.method(paper["methods"].get(method, method), test_set, group),
            paper["datasets"][setting],
        ]
        row += [_fmt(published.get(metric), "-") for metric in METRICS]
        row += [_fmt(_mean_percent(group, metric), "–") for metric in (*METRICS, MINP)]
        row += [str(len(group)), ", ".join(sorted({str(run.get("epochs")) for run in group}))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(marks.under(lines))


def render_tests(tests: Sequence[dict[str, Any]], paper: dict[str, Any]) -> str:
    """Test results, one row each under the dataset it scored, with the checkpoint it scored."""
    lines = [
        "### Tests of trained weights (ccsc-reid test; not averaged into the tables)",
        "",
        "| Dataset | Method | Checkpoint | R-1 | mAP | mINP |",
        "|---|---|---|---|---|---|",
    ]
    marks = _Marks()
    for test in tests:
        dataset, method = test.get("dataset"), test.get("method")
        dataset_label = paper["datasets"].get(dataset, str(dataset))
        row = [dataset_label, marks.method(paper["methods"].get(method, str(method)), dataset_label, [test])]
        row += [str(test.get("checkpoint")), *(_fmt(_mean_percent([test], metric), "–") for metric in (*METRICS, MINP))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(marks.under(lines))


def render_other_rankings(results: Sequence[dict[str, Any]], paper: dict[str, Any]) -> str:
    """Results ranked otherwise than the paper's (``results.ranking``), one row each, labelled with how."""
    lines = [
        "### Re-ranked and other rankings (not comparable with the paper's cells; never averaged into them)",
        "",
        "| Dataset | Method | Kind | Ranking | Run | R-1 | mAP | mINP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    marks = _Marks()
    for result in results:
        dataset_label = paper["datasets"].get(result.get("dataset"), str(result.get("dataset")))
        method = marks.method(
            paper["methods"].get(result.get("method"), str(result.get("method"))), dataset_label, [result]
        )
        row = [dataset_label, method, result.get("kind", "train"), str(ranking(result))]
        row += [str(result.get("checkpoint") if result.get("kind") == "test" else result.get("save_dir"))]
        row += [_fmt(_mean_percent([result], metric), "–") for metric in (*METRICS, MINP)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(marks.under(lines))


def render_camera_gaps(results: Sequence[dict[str, Any]], paper: dict[str, Any]) -> str:
    """Each run's mean cosine similarities on the test people and its camera gap (same camera - cross-camera)."""
    header = ["Dataset", "Method", "Kind", "Run", *GAP_COLUMNS.values(), "Gap"]
    lines = [
        "### Camera gap: mean cosine similarity of test-image pairs (same person same camera, same person across "
        "cameras, different people); gap = same camera - cross-camera",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    marks = _Marks()
    for result in results:
        gap = result["camera_gap"]
        row = [paper["datasets"].get(result.get("dataset"), str(result.get("dataset")))]
        method = paper["methods"].get(result.get("method"), str(result.get("method")))
        row += [marks.method(method, row[0], [result]), result.get("kind", "train")]
        row += [str(result.get("save_dir"))]
        row += ["–" if gap.get(key) is None else f"{gap[key]:.3f}" for key in GAP_COLUMNS]
        row.append("–" if gap.get("gap") is None else f"{gap['gap']:+.3f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(marks.under(lines))


def render_tables(results: Sequence[dict[str, Any]], tables: Sequence[int] = RENDERED_TABLES) -> str:
    """Markdown for ``tables`` from the training results, with a legend, the runs that match no cell, the tests
    and the camera gaps."""
    paper = load_paper_results()
    measured: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    unmatched, cpu_scale = [], []
    others = [result for result in results if ranking(result) is not None]  # re-ranked, CUHK03's CMC
    paper_ranked = [result for result in results if ranking(result) is None]
    tests = [result for result in paper_ranked if result.get("kind") == "test"]  # no kind: a training run
    for result in (result for result in paper_ranked if result.get("kind") != "test"):
        key = (result.get("dataset"), result.get("method"))
        if key[0] in paper["datasets"] and key[1] in paper["methods"]:
            measured[key].append(result)
        elif cpu_scale_setting(result) is not None:
            cpu_scale.append(result)
        else:
            unmatched.append(result)
    parts = [render_table(number, paper, measured) for number in tables]
    parts.append(
        "Numbers are %. Paper: the published value (the paper's Tables 1-4, as transcribed in "
        "ccsc_plugin/evaluation/paper_results.yaml). Measured: mean over the matching result.json files "
        "(not run = none given). Δ = measured - paper. mINP: measured only."
    )
    if cpu_scale:
        parts.append(render_cpu_scale(cpu_scale, paper))
    if unmatched:
        listed = ", ".join(
            f"{r.get('save_dir')} ({r.get('dataset')}, {r.get('method')}"
            + (f"; {WARNING_MARK} {'; '.join(dict.fromkeys(r['warnings']))})" if r.get("warnings") else ")")
            for r in unmatched
        )
        parts.append(f"Not in Tables {', '.join(map(str, tables))}: {listed}.")
    if tests:
        parts.append(render_tests(tests, paper))
    if others:
        parts.append(render_other_rankings(others, paper))
    with_gap = [result for result in results if isinstance(result.get("camera_gap"), dict)]  # older runs lack it
    if with_gap:
        parts.append(render_camera_gaps(with_gap, paper))
    return "\n\n".join(parts) + "\n"
