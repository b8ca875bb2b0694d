"""The main job on the embedded default: baseline vs CCSC on the generated SynthCam set, optionally on real crops.

``ccsc-reid quickstart`` (``make quickstart``) trains the softmax baseline (lambda = 0) and softmax + CCSC
with ``recipes/quickstart.yaml``, evaluates both on SynthCam's held-out identities and prints a
Table-1-style comparison. With ``--real-set FOLDER`` (a folder with ``labels.csv``, read through the
``csv`` dataset; ``make quickstart`` passes ``../shared/data/cuhk03-detected-mini`` where it exists) it
also evaluates the same two models on those real crops: a cross-domain check, expected near chance since
the models saw generated people only, and labelled so. The package itself never looks outside the
checkout for data. The checkpoints land in ``runs/quickstart/baseline`` and ``runs/quickstart/ccsc``,
where the demo looks by default. Those two folders are the quickstart's own: each run replaces its
previous runs there (``overwrite``, said on the console), and every row of the comparison scores the
checkpoint the run just trained.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from yacs.config import CfgNode as CN

from ccsc_plugin import pipeline
from ccsc_plugin.config import load_config
from ccsc_plugin.data.csv_dataset import read_rows, split_rows
from ccsc_plugin.pipeline.run_folder import run_files
from ccsc_plugin.shipped import recipe

DEFAULT_RECIPE = recipe("quickstart.yaml")
# label -> (run folder beside the recipe's data.save_dir, CCSC weight; None keeps the recipe's lambda)
RUNS = {"softmax (baseline)": ("baseline", 0.0), "softmax + CCSC": ("ccsc", None)}


def run_folders(cfg: CN) -> dict[str, Path]:
    """label -> the folder that model is trained in: beside ``cfg``'s ``data.save_dir`` (``runs/quickstart/*``
    for the shipped recipe, where ``ccsc-reid demo`` looks by default)."""
    return {label: Path(cfg.data.save_dir).parent / folder for label, (folder, _) in RUNS.items()}


def run_quickstart(
    recipe: str | Path | None = None, overrides: Sequence[str] = (), real_set: str | Path | None = None
) -> dict[str, dict[str, dict]]:
    """Train and evaluate both models; return ``{dataset: {method label: result}}`` and print the table.

    ``real_set`` is a folder with ``labels.csv`` (path,pid,camid) evaluated cross-domain, checked before
    any training; None skips that step with a message.
    """
    start = time.time()
    recipe = Path(recipe or DEFAULT_RECIPE)
    cfg = load_config(recipe, overrides)
    labels_csv = real_set_csv(real_set) if real_set is not None else None
    trained_on = ", ".join(cfg.data.sources)
    note = cross_domain_note(labels_csv, trained_on) if labels_csv else None
    results: dict[str, dict[str, dict]] = {}
    trained: dict[str, tuple[Path, str]] = {}  # label -> (run folder, the checkpoint just trained there)
    for step, (label, run_dir) in enumerate(run_folders(cfg).items(), start=1):
        ccsc_weight = RUNS[label][1]
        extra = [f"data.save_dir={run_dir}"]
        if ccsc_weight is not None:
            extra.append(f"loss.ccsc.weight={ccsc_weight}")
        if run_files(run_dir):
            print(f"=== quickstart: replacing its previous run in {run_dir} ===")
        print(f"=== quickstart {step}/{len(RUNS)}: training {label} on the generated set ({_elapsed(start)}) ===")
        result = pipeline.train(load_config(recipe, [*overrides, *extra]), recipe=str(recipe), overwrite=True)
        results.setdefault(result["dataset"], {})[label] = result
        trained[label] = (run_dir, result["checkpoint"])
    if labels_csv is not None:
        name = labels_csv.parent.name
        print(f"=== quickstart: cross-domain check on real crops: {note} ===")
        for label, (run_dir, checkpoint) in trained.items():
            print(f"=== quickstart: evaluating {label} on real crops {labels_csv.parent} ({_elapsed(start)}) ===")
            real = [f"data.save_dir={run_dir}", "data.targets=[csv]", f"data.csv.path={labels_csv}"]
            result = pipeline.evaluate(load_config(recipe, [*overrides, *real]), checkpoint, recipe=str(recipe))
            results.setdefault(name, {})[label] = {**result, "dataset": cross_domain_label(name, trained_on)}
    else:
        print(
            "=== quickstart: real-crop step skipped: pass --real-set FOLDER (a folder with labels.csv, e.g. "
            "../shared/data/cuhk03-detected-mini) to evaluate both models on real people, cross-domain ==="
        )
    folders = ", ".join(str(run_dir) for run_dir, _ in trained.values())
    print(f"\nquickstart finished in {_elapsed(start)}; checkpoints in {folders}\n")
    print(format_comparison(results))
    if note:
        print(f"\nReal crops: {note}. Models trained on real people: benchmarks/real_tables.py.")
    return results


def real_set_csv(folder: str | Path) -> Path:
    """``FOLDER/labels.csv`` of ``--real-set``, or an error (before any training) saying what to pass."""
    labels_csv = Path(folder).expanduser() / "labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(
            f"--real-set {folder}: there is no {labels_csv}. Pass a folder holding labels.csv (path,pid,camid), "
            "e.g. --real-set ../shared/data/cuhk03-detected-mini, or leave --real-set out to skip the real-crop step."
        )
    return labels_csv


def cross_domain_label(name: str, trained_on: str) -> str:
    """The comparison's dataset cell for a real-crop row: what was evaluated, from what, and what to expect."""
    return f"{name}, cross-domain from {trained_on}: expected near chance"


def cross_domain_note(labels_csv: Path, trained_on: str) -> str:
    """What the real-crop step shows, with the chance level of this set under the evaluation protocol."""
    rows, has_split = read_rows(labels_csv)
    _, query, gallery = split_rows(rows, has_split)
    people = len({pid for _, pid, _ in query})
    return (
        f"the models were trained on generated people only ({trained_on}), so on the real crops of "
        f"{labels_csv.parent.name} ({people} people) this is a cross-domain check, expected near chance "
        f"(a random ranking scores {100 * chance_rank1(query, gallery):.1f} % rank-1 here): it shows the "
        "real-image path working end to end, not how well the models recognise real people"
    )


def chance_rank1(query: Sequence[tuple], gallery: Sequence[tuple]) -> float:
    """Expected rank-1 of a random ranking under torchreid's protocol: per query, the share of its scored
    gallery (same identity and camera skipped) that shows its identity, averaged over queries."""
    shares = []
    for _, pid, camid in query:
        scored = [g_pid for _, g_pid, g_camid in gallery if not (g_pid == pid and g_camid == camid)]
        shares.append(scored.count(pid) / len(scored) if scored else 0.0)
    return sum(shares) / len(shares) if shares else 0.0


def _elapsed(start: float) -> str:
    seconds = int(time.time() - start)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def format_comparison(results: dict[str, dict[str, dict]]) -> str:
    """Markdown table of rank-1 and mAP per dataset and method, as in the paper's Table 1."""
    lines = ["| dataset | method | rank-1 (%) | mAP (%) |", "|---|---|---|---|"]
    for by_method in results.values():
        for label, result in by_method.items():
            rank1, mean_ap = 100 * result["rank1"], 100 * result["mAP"]
            lines.append(f"| {result['dataset']} | {label} | {rank1:.1f} | {mean_ap:.1f} |")
    return "\n".join(lines)
