"""Tables 1-3 on real people: the six methods trained on CUHK03 crops at CPU scale, over seeds.

Trains the six recipes of ``recipes/cpu_cuhk03/`` (743 people of ``../shared/data/cuhk03-detected-train``)
and scores each on the 100 other people of ``../shared/data/cuhk03-detected-mini`` (one query per camera
and person), and BoT's baseline without and with CCSC. Softmax and softmax + CCSC train on every ``--seeds``
seed, the others on ``--other-seeds`` (both 1, 2, 3 by default).
Prints, and writes to ``--output``, the paper's Tables 1-3 in its layout: mean ± sample standard deviation
over seeds of rank-1 and mAP, the paired per-seed difference CCSC - baseline, runs and minutes per run, with
the paper's CUHK03-detected column beside (its own setting: not a reproduction); then the camera gap.

    python benchmarks/real_tables.py                          # from the checkout root
    python benchmarks/real_tables.py --validation --set train.max_epoch=8    # choose settings on held-out ids
    python benchmarks/real_tables.py --only softmax --only softmax_ccsc --seeds 1 2 3 4 5

Each run has its own folder, ``<runs-dir>/<recipe>/seed-<N>/``. A folder whose ``result.json`` is of the same
recipe, seed and settings is read back, not retrained; one with checkpoints but no ``result.json`` (an
interrupted run) is resumed from its last checkpoint; one that holds a run with other settings stops the
benchmark before anything trains (a finished run is never overwritten). Every finished run's result.json is also
kept in ``benchmarks/results/real_tables/<recipe>/seed-<N>/`` (``--records-dir``), which git tracks: on a fresh
clone, or a new machine, those are read back (``--report-only`` rebuilds the tables) and nothing is retrained.
``--validation`` holds out the last 100 training identities as the test set (``data.csv.val_ids=100``, no test
CSV) and uses its own runs and records folders, so that sizes and hyperparameters are chosen without the test people.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import command, format_mean_sd, log, machine, mean_sd
from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin import pipeline
from ccsc_plugin.cli import USER_ERRORS
from ccsc_plugin.cli.options import add_set_option
from ccsc_plugin.config import load_config
from ccsc_plugin.engine.interrupt import TrainingInterrupted
from ccsc_plugin.evaluation.machine import describe
from ccsc_plugin.evaluation.results import RESULT_FILE, read_result, write_result
from ccsc_plugin.evaluation.tables import check_output, load_paper_results
from ccsc_plugin.pipeline.run_folder import RunFolderTaken
from ccsc_plugin.pipeline.trained import config_from_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = REPO_ROOT / "recipes" / "cpu_cuhk03"
FIGURE_SCRIPT = REPO_ROOT / "benchmarks" / "camera_gap_figure.py"
# recipe file stem -> the method key of paper_results.yaml (the row of the paper's tables)
METHODS = {
    "softmax": "softmax",
    "softmax_ccsc": "softmax+ccsc",
    "softmax_ccsc_noconstraint": "softmax+ccsc-noconstraint",
    "softmax_triplet": "softmax+triplet",
    "softmax_center": "softmax+center",
    "softmax_ccsc_triplet": "softmax+ccsc+triplet",
}
# Rows none of the paper's tables has: BoT's strong baseline (Luo et al. 2019) without and with CCSC
BEYOND_PAPER = {
    "bot": "BoT baseline (softmax + label smoothing + hard triplet, BNNeck)",
    "bot_ccsc": "BoT + CCSC",
}
ALL_METHODS = [*METHODS, *BEYOND_PAPER]  # every recipe of recipes/cpu_cuhk03/, in table order
BASELINE, CCSC, NOCONSTRAINT = "softmax", "softmax_ccsc", "softmax_ccsc_noconstraint"
TRIPLET, CENTER, CCSC_TRIPLET, BOT, BOT_CCSC = (
    "softmax_triplet",
    "softmax_center",
    "softmax_ccsc_triplet",
    "bot",
    "bot_ccsc",
)
MULTI_SEED = (BASELINE, CCSC)  # trained on every --seeds seed; the others on --other-seeds
PAPER_DATASET = "cuhk03-detected"  # the paper's column shown beside the measured one
VAL_IDS = 100  # --validation: the last 100 training identities are the test set
RUNS_DIR, VAL_RUNS_DIR = Path("runs/real_tables"), Path("runs/real_tables_val")
# Every finished run's result.json is also kept here, in git (checkpoints stay in the runs folder, ignored by git),
# so that a fresh clone rebuilds the tables with --report-only and never retrains what was reported.
RECORDS_DIR, VAL_RECORDS_DIR = Path("benchmarks/results/real_tables"), Path("benchmarks/results/real_tables_val")
OUTPUT, FIGURE = Path("docs/real_tables.md"), Path("docs/camera_gap.png")
IGNORED_KEYS = ("data.save_dir", "model.resume")  # where a run lives and how it was continued, not what it is
METRICS = {"rank1": "R-1", "mAP": "mAP"}
CAMERA_GAP_KEYS = ("same_camera", "cross_camera", "gap", "different_person")
TABLE_HEADER = ["Method", "R-1 (%)", "mAP (%)", "Runs", "Seeds", "Min/run", "Paper (CUHK03-detected) R-1", "Paper mAP"]
DONE, RECORDED, RESUME, START = "done", "recorded", "resume", "start"  # RECORDED: only its kept result.json


@dataclass(frozen=True)
class Run:
    """One training run of the benchmark: a recipe, a seed and its own folder."""

    name: str  # recipe stem, one of ALL_METHODS
    seed: int
    folder: Path
    recipe: Path
    overrides: tuple[str, ...]
    record: Path | None = None  # where its result.json is kept (RECORDS_DIR), if anywhere

    @property
    def label(self) -> str:
        """The recipe as result.json records it: its path from the checkout root when it lies inside."""
        path = self.recipe.resolve()
        return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)

    def config(self, *extra: str) -> CN:
        return load_config(self.recipe, [*self.overrides, *extra])


def validation_overrides(val_ids: int = VAL_IDS) -> list[str]:
    """``--validation``: hold out the last ``val_ids`` training identities as the test set, drop the test CSV."""
    return [f"data.csv.val_ids={val_ids}", "data.csv.test_path="]


def plan(
    methods: Sequence[str],
    seeds: Sequence[int],
    other_seeds: Sequence[int],
    runs_dir: Path,
    overrides: Sequence[str] = (),
    validation: bool = False,
    recipes_dir: Path = RECIPES_DIR,
    records_dir: Path | None = None,
) -> list[Run]:
    """The runs to train or read back, seed by seed (every method's first seed first, for early tables).

    With ``records_dir`` each run's result.json is also kept at ``<records_dir>/<recipe>/seed-<N>/result.json``.

    Overrides apply in this order: ``--validation``'s, the user's ``--set``, then the run's seed and folder.
    """
    shared = [*(validation_overrides() if validation else []), *overrides]
    runs = []
    for seed in sorted({*seeds, *other_seeds}):
        for name in methods:
            if seed not in (seeds if name in MULTI_SEED else other_seeds):
                continue
            folder = runs_dir / name / f"seed-{seed}"
            own = (f"train.seed={seed}", f"data.save_dir={folder}")
            record = records_dir / name / f"seed-{seed}" / RESULT_FILE if records_dir else None
            runs.append(Run(name, seed, folder, recipes_dir / f"{name}.yaml", (*shared, *own), record))
    return runs


def flat(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 3.5e-4, ...}``: every leaf key of a config."""
    items: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            items.update(flat(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def config_differences(stored: CN, planned: CN) -> list[str]:
    """``"train.lr: 0.001 there, 0.00035 here"`` for each key the two configs set differently."""
    there, here = flat(stored), flat(planned)
    keys = sorted((there.keys() | here.keys()) - set(IGNORED_KEYS))
    return [
        f"{key}: {there.get(key)!r} there, {here.get(key)!r} here" for key in keys if there.get(key) != here.get(key)
    ]


def _taken(run: Run, differences: Sequence[str]) -> RunFolderTaken:
    return RunFolderTaken(
        f"{run.folder} holds another run than {run.name} seed {run.seed} with these settings "
        f"({'; '.join(differences)}). A finished or interrupted run is never retrained over or overwritten: "
        "give another --runs-dir for these settings, or move that folder away (or delete it) to train it again."
    )


def result_differences(run: Run, result: Mapping[str, Any], cfg: CN, origin: str) -> list[str]:
    """How a finished run's ``result.json`` differs from ``run`` with ``cfg``: recipe, seed, epochs, settings.

    A result that stores no ``config`` (written before results recorded their settings) cannot be matched.
    """
    wanted = {"recipe": run.label, "seed": cfg.train.seed, "epochs": cfg.train.max_epoch}
    differences = [
        f"{key}: {result.get(key)!r} there, {value!r} here" for key, value in wanted.items() if result.get(key) != value
    ]
    if "config" not in result:
        return [*differences, "config: its result.json records no settings, so they cannot be compared"]
    return [*differences, *config_differences(config_from_checkpoint(result, origin=origin), cfg)]


def run_state(run: Run, cfg: CN) -> str:
    """``done`` (its result.json is of this run: read back), ``resume`` (checkpoints, no result) or ``start``.

    A folder holding a run of another recipe, seed, epoch count or setting raises :class:`RunFolderTaken`: the
    settings are compared with the full recipe stored in ``result.json`` (``config``), checkpoints or not, and in
    its last checkpoint.
    """
    checkpoints = ckpt.epoch_checkpoints(run.folder)
    result_file = run.folder / RESULT_FILE
    if result_file.is_file():
        differences = result_differences(run, read_result(result_file), cfg, str(result_file))
        if differences:
            raise _taken(run, differences)
    if checkpoints:
        state = ckpt.load_checkpoint(checkpoints[-1])
        differences = config_differences(config_from_checkpoint(state, origin=str(checkpoints[-1])), cfg)
        if differences:
            raise _taken(run, differences)
    if result_file.is_file():
        return DONE
    if checkpoints:
        return RESUME
    if run.record is not None and run.record.is_file():  # trained elsewhere (another machine): its kept result
        differences = result_differences(run, read_result(run.record), cfg, str(run.record))
        if differences:
            raise RunFolderTaken(
                f"{run.record} keeps a result of {run.name} seed {run.seed} with other settings "
                f"({'; '.join(differences)}). Give another --records-dir for these settings, or move it away "
                "to train the run again."
            )
        return RECORDED
    return START


def kept_result(run: Run, state: str) -> dict[str, Any]:
    """The result of a finished run: its folder's result.json, else the one kept in ``run.record``."""
    return read_result(run.record if state == RECORDED else run.folder)


def keep(run: Run, result: Mapping[str, Any]) -> None:
    """Keep ``result`` at ``run.record`` (for git), unless it is already there unchanged."""
    if run.record is not None and (not run.record.is_file() or read_result(run.record) != result):
        write_result(run.record, dict(result))


def check_data(cfg: CN) -> None:
    """Stop before the first run when a CSV the recipe names is missing (paths are relative to the current folder)."""
    for key in ("path", "test_path"):
        value = cfg.data.csv.get(key, "")
        if value and not Path(value).is_file():
            raise FileNotFoundError(
                f"data.csv.{key}: {value} does not exist (relative to {Path.cwd()}). Run the benchmark from the "
                "checkout root with ../shared/data beside the checkout, or name the file: "
                f"--set data.csv.{key}=PATH."
            )


def eta(seconds_per_run: Sequence[float], runs_left: int) -> str:
    """``"ETA 42 min (3 runs left at 14.0 min)"``, from the runs timed so far; unknown before the first."""
    if not seconds_per_run:
        return f"{runs_left} runs left, ETA after the first"
    per_run = sum(seconds_per_run) / len(seconds_per_run) / 60
    return f"ETA {per_run * runs_left:.0f} min ({runs_left} runs left at {per_run:.1f} min)"


def prepare(runs: Sequence[Run], report_only: bool = False) -> list[tuple[Run, str]]:
    """Every run's state, checked before anything trains: bad overrides, missing data and taken folders stop here.

    ``report_only`` reads no images, so it needs no data: a clone without ``../shared/data`` still rebuilds the tables.
    """
    states = []
    for run in runs:
        cfg = run.config()
        if not report_only:
            check_data(cfg)
        states.append((run, run_state(run, cfg)))
    return states


def run_all(states: Sequence[tuple[Run, str]], report_only: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Train, resume or read back every run; return the results per recipe, in seed order.

    ``report_only`` reads back the finished runs and trains nothing: the others are reported as not run.
    """
    results: dict[str, list[dict[str, Any]]] = {}
    recorded = (kept_result(run, state).get("wall_time_s") for run, state in states if state in (DONE, RECORDED))
    timed = [seconds for seconds in recorded if seconds is not None]  # the estimate starts from the finished runs
    left, start = sum(state not in (DONE, RECORDED) for _, state in states), time.time()
    for index, (run, state) in enumerate(states, 1):
        where = f"[{index}/{len(states)}] {run.name}, seed {run.seed}"
        if state in (DONE, RECORDED):
            log(f"{where}: done, read back from {run.record if state == RECORDED else run.folder / RESULT_FILE}")
            result = kept_result(run, state)
        elif report_only:
            log(f"{where}: not finished, left out of the tables (--report-only)")
            continue
        else:
            verb = "resuming from its last checkpoint" if state == RESUME else "training"
            log(f"{where}: {verb} in {run.folder}; {(time.time() - start) / 60:.0f} min so far, {eta(timed, left)}")
            began = time.time()
            cfg = run.config(f"model.resume={run.folder}") if state == RESUME else run.config()
            result = pipeline.train(cfg, recipe=run.label)
            timed.append(time.time() - began)
            left -= 1
        keep(run, result)
        results.setdefault(run.name, []).append(result)
    log(f"All {len(states)} runs done ({(time.time() - start) / 60:.0f} min in this session)")
    return results


def by_seed(runs: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    return {int(run["seed"]): run[metric] for run in runs if run.get(metric) is not None}


def paired(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    """``first - second`` seed by seed, over the seeds both have (fractions, like the results)."""
    a, b = by_seed(first, metric), by_seed(second, metric)
    return {seed: a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())}


def _values(runs: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    return [run[metric] for run in runs if run.get(metric) is not None]


def _cell(runs: Sequence[Mapping[str, Any]], metric: str) -> str:
    values = _values(runs, metric)
    return format_mean_sd(values) if values else "not run"


def _seeds(runs: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(str(seed) for seed in sorted(int(run["seed"]) for run in runs)) or "–"


def _minutes(runs: Sequence[Mapping[str, Any]]) -> str:
    times = [run["wall_time_s"] / 60 for run in runs if run.get("wall_time_s") is not None]
    return f"{sum(times) / len(times):.1f}" if times else "–"


def _paper(paper: Mapping[str, Any], method: str, metric: str) -> str:
    return f"{paper['results'][PAPER_DATASET][method][metric]:.1f}"


def label(paper: Mapping[str, Any], name: str) -> str:
    """A recipe's row label: the paper's name of its method, or the name of a row beyond the paper."""
    return paper["methods"][METHODS[name]] if name in METHODS else BEYOND_PAPER[name]


def _method_row(paper: Mapping[str, Any], name: str, runs: Sequence[Mapping[str, Any]], note: str = "") -> str:
    published = [_paper(paper, METHODS[name], m) for m in METRICS] if name in METHODS else ["–", "–"]
    cells = [label(paper, name) + note, _cell(runs, "rank1"), _cell(runs, "mAP"), str(len(runs))]
    return "| " + " | ".join([*cells, _seeds(runs), _minutes(runs), *published]) + " |"


def _mean_difference(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]], metric: str) -> str:
    a, b = _values(first, metric), _values(second, metric)
    return f"{100 * (mean_sd(a)[0] - mean_sd(b)[0]):+.1f}" if a and b else "–"


def _difference_row(paper: Mapping[str, Any], number: int, results: Mapping[str, Sequence]) -> str:
    """The paper's last row of Table 1 (increment) or 2 (reduction): difference of the means, paper's beside."""
    spec = paper["tables"][number]["difference"]
    first, second = (_name(method) for method in spec["of"])
    printed = spec["values"][PAPER_DATASET]
    cells = [spec["label"], *(_mean_difference(results.get(first, []), results.get(second, []), m) for m in METRICS)]
    cells += ["", "", "", *(f"{printed[metric]:+.1f}" for metric in METRICS)]
    return "| " + " | ".join(cells) + " |"


def _name(method: str) -> str:
    return next(name for name, key in METHODS.items() if key == method)


def paired_line(paper: Mapping[str, Any], first: str, second: str, results: Mapping[str, Sequence]) -> str:
    """The per-seed difference ``first - second``: mean ± sd and each seed's value, rank-1 and mAP."""
    labels = [label(paper, name) for name in (first, second)]
    parts = []
    for metric, metric_label in METRICS.items():
        differences = paired(results.get(first, []), results.get(second, []), metric)
        if not differences:
            return f"Paired by seed, {labels[0]} - {labels[1]}: no seed has both runs."
        each = ", ".join(f"seed {seed}: {100 * value:+.1f}" for seed, value in differences.items())
        above = sum(value > 0 for value in differences.values())
        summary = format_mean_sd(list(differences.values()), signed=True)
        parts.append(f"{metric_label} {summary} ({each}; higher on {above} of {len(differences)})")
    return f"Paired by seed, {labels[0]} - {labels[1]}, in points: " + "; ".join(parts) + "."


def render_table(number: int, paper: Mapping[str, Any], results: Mapping[str, Sequence]) -> str:
    """One of Tables 1-3 in the paper's row order, with its difference row and the paired per-seed lines.

    Table 2 also shows the baseline (after the paper's rows) and whether the paper's ordering holds.
    """
    spec = paper["tables"][number]
    lines = [f"### {spec['title']}", "", "| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += [_method_row(paper, _name(method), results.get(_name(method), [])) for method in spec["methods"]]
    if "difference" in spec:
        lines.append(_difference_row(paper, number, results))
    if number == 1:
        lines += ["", paired_line(paper, CCSC, BASELINE, results)]
    elif number == 2:
        lines.append(_method_row(paper, BASELINE, results.get(BASELINE, []), " (not in the paper's Table 2)"))
        lines += ["", paired_line(paper, NOCONSTRAINT, CCSC, results), "", ordering_line(paper, results)]
    else:
        for first, second in ((CCSC, TRIPLET), (CCSC, CENTER), (CCSC_TRIPLET, TRIPLET), (TRIPLET, BASELINE)):
            lines += ["", paired_line(paper, first, second, results)]
    return "\n".join(lines)


def beyond_paper_table(paper: Mapping[str, Any], results: Mapping[str, Sequence]) -> str:
    """BoT's strong baseline without and with CCSC, beside the paper's baseline and CCSC rows."""
    lines = [
        "### Beyond the paper: CCSC on BoT's strong baseline (BNNeck, label smoothing, hard triplet)",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
    ]
    lines += [_method_row(paper, name, results.get(name, [])) for name in (BOT, BOT_CCSC, BASELINE, CCSC)]
    lines += ["", paired_line(paper, BOT_CCSC, BOT, results), "", paired_line(paper, BOT, BASELINE, results)]
    return "\n".join(lines)


def ordering_line(paper: Mapping[str, Any], results: Mapping[str, Sequence]) -> str:
    """Whether the paper's Table 2 ordering (with > without constraint > baseline) holds on the mean mAP."""
    names = (CCSC, NOCONSTRAINT, BASELINE)
    found = [_values(results.get(name, []), "mAP") for name in names]
    if not all(found):
        return "The paper's ordering (with > without constraint > baseline, on the mean mAP): not all three were run."
    means = [100 * mean_sd(values)[0] for values in found]
    listed = " > ".join(f"{label(paper, name)} {mean:.1f}" for name, mean in zip(names, means, strict=True))
    verdict = "holds" if means[0] > means[1] > means[2] else "does not hold"
    return f"The paper's ordering on the mean mAP, {listed}: {verdict}."


def _camera_gap_row(paper: Mapping[str, Any], name: str, gaps: Sequence[Mapping[str, Any]]) -> str:
    cells = [label(paper, name)]
    cells += [format_mean_sd([gap[key] for gap in gaps], scale=1.0, digits=3) for key in CAMERA_GAP_KEYS]
    per_pair: dict[str, list[float]] = {}
    for gap in gaps:
        for pair, rank1 in sorted(gap.get("rank1_by_camera_pair", {}).items()):
            per_pair.setdefault(pair, []).append(rank1)
    cells.append(", ".join(f"{pair}: {format_mean_sd(values)}" for pair, values in per_pair.items()) or "–")
    return "| " + " | ".join([*cells, str(len(gaps))]) + " |"


def camera_gap_table(paper: Mapping[str, Any], results: Mapping[str, Sequence]) -> str:
    """Each method's camera gap on the test people, mean over the seeds whose result.json has one."""
    rows = []
    for name in ALL_METHODS:
        gaps = [run["camera_gap"] for run in results.get(name, []) if run.get("camera_gap")]
        if gaps:
            rows.append(_camera_gap_row(paper, name, gaps))
    if not rows:
        return "Camera gap: no result.json here holds a camera_gap."
    header = (
        "| Method | Same person, same camera | Same person, cross camera | Gap (same - cross) | Different person "
        "| R-1 by camera pair (query->gallery, %) | Runs |"
    )
    title = "### Camera gap on the test people (mean cosine similarity of features over pairs; mean ± sd over seeds)"
    return "\n".join([title, "", header, "|" + "---|" * 7, *rows])


def describe_setting(cfg: CN) -> str:
    """What a run trained and where it was tested, in one line (the tables' caption)."""
    init = "ImageNet init" if cfg.model.pretrained else "random init"
    k = cfg.sampler.num_instances
    training = (
        f"{cfg.model.name} ({init}), {cfg.data.height}x{cfg.data.width}, {cfg.train.max_epoch} epochs, batch "
        f"{cfg.train.batch_size} (P={cfg.train.batch_size // k} x K={k}), {cfg.train.optim} lr {cfg.train.lr:g}"
    )
    val_ids, test_path = cfg.data.csv.get("val_ids", 0), cfg.data.csv.get("test_path", "")
    if val_ids:
        data = (
            f"trained on {cfg.data.csv.path} but its last {val_ids} identities, tested on those {val_ids} "
            "(validation: no test person used)"
        )
    elif test_path:
        data = f"trained on {cfg.data.csv.path}, tested on {test_path} (one query per camera and person)"
    else:
        data = f"trained and tested on {cfg.data.csv.path or ', '.join(cfg.data.sources)}"
    return f"{training}; {data}"


def precision(run: Mapping[str, Any]) -> str:
    """The arithmetic a run trained in, as its ``result.json`` records it: ``bf16 (train.amp=auto)``."""
    amp = run.get("amp")
    if not amp:
        return "precision not recorded"
    return f"{'float32' if amp['used'] == 'off' else amp['used']} (train.amp={amp['requested']})"


def run_machines(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Where and in what precision the runs were measured: each machine and ``train.amp`` outcome their
    ``result.json`` records, with its run count (a wall time means little without them)."""
    counts: dict[str, int] = {}
    for runs in results.values():
        for run in runs:
            name = describe(run["machine"]) if run.get("machine") else "not recorded (results before 2026-12-07)"
            name = f"{name}, {precision(run)}"
            counts[name] = counts.get(name, 0) + 1
    if not counts:
        return "Runs measured on: no run finished."
    return "Runs measured on: " + "; ".join(f"{name} ({count} runs)" for name, count in counts.items()) + "."


def render_report(results: Mapping[str, Sequence], settings: Sequence[str], validation: bool = False) -> str:
    """The whole Markdown: caption, Tables 1-3, the camera gap, machine and command."""
    paper = load_paper_results()
    title = "Tables 1-3 on real people: CUHK03 crops at CPU scale"
    paper_label = paper["datasets"][PAPER_DATASET]
    parts = [
        f"## {title}{' (VALIDATION split, for choosing settings)' if validation else ''}",
        "Setting: " + "; or ".join(sorted(set(settings))) + ".",
        "Numbers are %. Measured: mean ± sample standard deviation over seeds (one seed: no deviation). "
        f"Paper: the paper's {paper_label} column (ResNet-50 from ImageNet, 384x128, 100 epochs, "
        "767 training and 700 test people): the paper's setting, beside for scale, not a reproduction. "
        "Increment / reduction: difference of the means. Min/run: wall-clock minutes per run.",
        *(render_table(number, paper, results) for number in (1, 2, 3)),
        beyond_paper_table(paper, results),
        camera_gap_table(paper, results),
        run_machines(results),
        f"Tables written on {machine()}. Command: `{command()}`.",
    ]
    return "\n\n".join(parts) + "\n"


def write_figure(results: Mapping[str, Sequence], seed: int, figure: Path) -> str:
    """Draw the camera-gap figure from the baseline and CCSC runs of ``seed``; return the line that says so."""
    runs = {name: next((r for r in results.get(name, []) if r.get("seed") == seed), None) for name in (BASELINE, CCSC)}
    if None in runs.values():
        return f"Camera-gap figure: skipped (it needs the {BASELINE} and {CCSC} runs of seed {seed})."
    if not FIGURE_SCRIPT.is_file():
        return f"Camera-gap figure: skipped ({FIGURE_SCRIPT.relative_to(REPO_ROOT)} is not in this checkout)."
    missing = [run["save_dir"] for run in runs.values() if not ckpt.epoch_checkpoints(run["save_dir"])]
    if missing:
        return f"Camera-gap figure: skipped (no checkpoints in {', '.join(missing)} on this machine; the figure stays)."
    labels = [label(load_paper_results(), name) for name in runs]
    call = [sys.executable, str(FIGURE_SCRIPT), *(run["save_dir"] for run in runs.values())]
    call += ["--labels", *labels, "--output", str(figure)]
    returncode = subprocess.run(call, check=False).returncode
    if returncode:
        return f"Camera-gap figure: not written, {shlex.join(call)} exited with {returncode}."
    return f"Camera-gap figure (seed {seed}): {figure}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's command line (``--set`` as ``ccsc-reid``'s: :func:`ccsc_plugin.cli.options.add_set_option`)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of softmax and softmax+CCSC")
    parser.add_argument("--other-seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of the other methods")
    parser.add_argument(
        "--only",
        action="append",
        choices=ALL_METHODS,
        metavar="METHOD",
        help=f"train and tabulate only this recipe (repeatable): {', '.join(ALL_METHODS)}",
    )
    add_set_option(parser, scope=" in every run")
    parser.add_argument(
        "--validation",
        action="store_true",
        help=f"test on the last {VAL_IDS} training identities instead of the test people",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"where the runs live (default: {RUNS_DIR}, with --validation {VAL_RUNS_DIR})",
    )
    parser.add_argument(
        "--records-dir",
        type=Path,
        default=None,
        help=f"where each finished run's result.json is kept for git (default: {RECORDS_DIR}, with --validation "
        f"{VAL_RECORDS_DIR}; with --runs-dir: RUNS_DIR-results beside it)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="tabulate the finished runs, train nothing (the rest: not run)"
    )
    parser.add_argument("--recipes", type=Path, default=RECIPES_DIR, help="folder of the six recipes")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"Markdown file for the tables (default: {OUTPUT}, with --validation RUNS_DIR/tables.md)",
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help=f"camera-gap figure (default: {FIGURE}, with --validation RUNS_DIR/camera_gap.png)",
    )
    return parser


def default_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The runs folder, tables file and figure: the given ones, else the defaults of the mode.

    Validation runs, tables and figure stay under ``runs/real_tables_val/``: they are not the README's.
    """
    runs_dir = args.runs_dir or (VAL_RUNS_DIR if args.validation else RUNS_DIR)
    output = args.output or (runs_dir / "tables.md" if args.validation else OUTPUT)
    figure = args.figure or (runs_dir / "camera_gap.png" if args.validation else FIGURE)
    return runs_dir, output, figure


def records_dir(args: argparse.Namespace, runs_dir: Path) -> Path:
    """Where the finished runs' result.json files are kept: the given folder, the repository's, or beside --runs-dir."""
    if args.records_dir is not None:
        return args.records_dir
    if args.runs_dir is not None:  # runs elsewhere (a test, a trial): never into the repository's records
        return runs_dir.with_name(f"{runs_dir.name}-results")
    return REPO_ROOT / (VAL_RECORDS_DIR if args.validation else RECORDS_DIR)


def benchmark(args: argparse.Namespace) -> None:
    """Plan and check every run, train what is missing, print and write the tables and the figure."""
    runs_dir, output, figure = default_paths(args)
    if args.validation and args.output is None:
        runs_dir.mkdir(parents=True, exist_ok=True)  # the default --output lives there
    output = check_output(output)
    methods = [name for name in ALL_METHODS if not args.only or name in args.only]
    records = records_dir(args, runs_dir)
    runs = plan(methods, args.seeds, args.other_seeds, runs_dir, args.overrides, args.validation, args.recipes, records)
    states = prepare(runs, args.report_only)
    counts = {state: sum(found == state for _, found in states) for state in (DONE, RESUME, START)}
    done = counts[DONE] + sum(found == RECORDED for _, found in states)
    log(
        f"{len(runs)} runs in {runs_dir} (results kept in {records}): {done} done, {counts[RESUME]} to resume, "
        f"{counts[START]} to train"
    )
    results = run_all(states, args.report_only)
    report = render_report(results, [describe_setting(run.config()) for run in runs], args.validation)
    print(report)
    output.write_text(report)
    print(f"Tables written to {output}")
    print(write_figure(results, args.seeds[0], figure))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        benchmark(args)
    except USER_ERRORS as error:
        print(f"real_tables.py: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        print(f"real_tables.py: stopped by {stop}.\nRun the same command again to resume it.", file=sys.stderr)
        return stop.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
