"""The main job on the embedded default: baseline vs CCSC on the generated SynthCam set, then on real crops.

``ccsc-reid quickstart`` (``make quickstart``) trains the softmax baseline (lambda = 0) and softmax + CCSC
with ``recipes/quickstart.yaml``, evaluates both on SynthCam's held-out identities, then evaluates the
same two models on ``../shared/data/cuhk03-detected-mini`` (real CUHK03 crops, read through the ``csv``
dataset) when that folder exists, and prints a Table-1-style comparison. The checkpoints land in
``runs/quickstart/baseline`` and ``runs/quickstart/ccsc``, where the demo looks by default. Those two
folders are the quickstart's own: each run replaces its previous runs there (``overwrite``, said on the
console), and every row of the comparison scores the checkpoint the run just trained.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from . import pipeline
from .config import load_config
from .run_folder import run_files

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "quickstart.yaml"
REAL_SET = REPO_ROOT.parent / "shared" / "data" / "cuhk03-detected-mini"
REAL_SET_NAME = "cuhk03-detected-mini"
# label -> (run folder under runs/quickstart, CCSC weight; None keeps the recipe's lambda)
RUNS = {"softmax (baseline)": ("baseline", 0.0), "softmax + CCSC": ("ccsc", None)}


def run_quickstart(
    recipe: str | Path | None = None, overrides: Sequence[str] = (), real_set: str | Path | None = REAL_SET
) -> dict[str, dict[str, dict]]:
    """Train and evaluate both models; return ``{dataset: {method label: result}}`` and print the table.

    ``real_set`` is a folder with ``labels.csv`` (path,pid,camid) evaluated cross-domain; None or an
    absent folder skips that step with a message.
    """
    start = time.time()
    recipe = Path(recipe or DEFAULT_RECIPE)
    runs_root = Path(load_config(recipe, overrides).data.save_dir).parent
    results: dict[str, dict[str, dict]] = {}
    trained: dict[str, tuple[Path, str]] = {}  # label -> (run folder, the checkpoint just trained there)
    for step, (label, (folder, ccsc_weight)) in enumerate(RUNS.items(), start=1):
        run_dir = runs_root / folder
        extra = [f"data.save_dir={run_dir}"]
        if ccsc_weight is not None:
            extra.append(f"loss.ccsc.weight={ccsc_weight}")
        if run_files(run_dir):
            print(f"=== quickstart: replacing its previous run in {run_dir} ===")
        print(f"=== quickstart {step}/{len(RUNS)}: training {label} on the generated set ({_elapsed(start)}) ===")
        result = pipeline.train(load_config(recipe, [*overrides, *extra]), recipe=str(recipe), overwrite=True)
        results.setdefault(result["dataset"], {})[label] = result
        trained[label] = (run_dir, result["checkpoint"])
    labels_csv = Path(real_set) / "labels.csv" if real_set else None
    if labels_csv is not None and labels_csv.is_file():
        for label, (run_dir, checkpoint) in trained.items():
            print(f"=== quickstart: evaluating {label} on real crops {labels_csv.parent} ({_elapsed(start)}) ===")
            real = [f"data.save_dir={run_dir}", "data.targets=[csv]", f"data.csv.path={labels_csv}"]
            result = pipeline.evaluate(load_config(recipe, [*overrides, *real]), checkpoint, recipe=str(recipe))
            results.setdefault(REAL_SET_NAME, {})[label] = {**result, "dataset": f"{REAL_SET_NAME} (cross-domain)"}
    else:
        print(f"=== quickstart: real-image evaluation skipped: {real_set}/labels.csv is absent ===")
    folders = ", ".join(str(run_dir) for run_dir, _ in trained.values())
    print(f"\nquickstart finished in {_elapsed(start)}; checkpoints in {folders}\n")
    print(format_comparison(results))
    return results


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
