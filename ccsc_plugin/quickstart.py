"""The main job on the embedded default: baseline vs CCSC on the generated SynthCam set, then on real crops.

``ccsc-reid quickstart`` (``make quickstart``) trains the softmax baseline (lambda = 0) and softmax + CCSC
with ``recipes/quickstart.yaml``, evaluates both on SynthCam's held-out identities, then evaluates the
same two models on ``../shared/data/cuhk03-detected-mini`` (real CUHK03 crops, read through the ``csv``
dataset) when that folder exists, and prints a Table-1-style comparison. The checkpoints land in
``runs/quickstart/baseline`` and ``runs/quickstart/ccsc``, where the demo looks by default.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from . import pipeline
from .checkpoint import latest_checkpoint
from .config import load_config

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
    run_dirs = {}
    for step, (label, (folder, ccsc_weight)) in enumerate(RUNS.items(), start=1):
        run_dirs[label] = runs_root / folder
        extra = [f"data.save_dir={run_dirs[label]}"]
        if ccsc_weight is not None:
            extra.append(f"loss.ccsc.weight={ccsc_weight}")
        print(f"=== quickstart {step}/{len(RUNS)}: training {label} on the generated set ({_elapsed(start)}) ===")
        result = pipeline.train(load_config(recipe, [*overrides, *extra]), recipe=str(recipe))
        results.setdefault(result["dataset"], {})[label] = result
    labels_csv = Path(real_set) / "labels.csv" if real_set else None
    if labels_csv is not None and labels_csv.is_file():
        for label, run_dir in run_dirs.items():
            print(f"=== quickstart: evaluating {label} on real crops {labels_csv.parent} ({_elapsed(start)}) ===")
            cfg = load_config(
                recipe,
                [
                    *overrides,
                    f"data.save_dir={run_dir / REAL_SET_NAME}",
                    "data.targets=[csv]",
                    f"data.csv.path={labels_csv}",
                ],
            )
            result = pipeline.evaluate(cfg, latest_checkpoint(run_dir), recipe=str(recipe))
            results.setdefault(REAL_SET_NAME, {})[label] = {**result, "dataset": f"{REAL_SET_NAME} (cross-domain)"}
    else:
        print(f"=== quickstart: real-image evaluation skipped: {real_set}/labels.csv is absent ===")
    print(f"\nquickstart finished in {_elapsed(start)}; checkpoints in {', '.join(map(str, run_dirs.values()))}\n")
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
