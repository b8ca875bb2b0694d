"""A miniature of the paper's Tables 1-3 on the generated SynthCam set, over several seeds.

Trains every method of Tables 1-3 with the same short recipe (``recipes/synthetic_tables.yaml``:
the quickstart's model, input and schedule shape), once per seed; each seed draws a new SynthCam set
(``data.synthcam.seed``) and a new initialisation and sampling order (``train.seed``). Prints, and
writes to ``<out>/table.md``, the mean and standard deviation of rank-1 and mAP per method.

    python benchmarks/synthetic_tables.py                     # 6 methods x 3 seeds
    python benchmarks/synthetic_tables.py --seeds 0 1 2 3 4 --set train.max_epoch=12

A run whose ``result.json`` already exists under ``--out`` is read back, not retrained, so an
interrupted benchmark resumes where it stopped (delete ``--out`` to start over).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import format_mean_sd

from ccsc_plugin import pipeline
from ccsc_plugin.cli.options import add_set_option
from ccsc_plugin.config import load_config
from ccsc_plugin.evaluation.results import RESULT_FILE, read_result

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "synthetic_tables.yaml"

# The rows of the paper's Tables 1-3: (table, method) -> recipe overrides.
METHODS: dict[tuple[str, str], list[str]] = {
    ("1", "softmax"): ["loss.ccsc.weight=0"],
    ("1", "softmax + CCSC"): ["loss.ccsc.weight=1.5", "loss.ccsc.cross_camera=true"],
    ("2", "softmax + CCSC without constraint"): ["loss.ccsc.weight=1.5", "loss.ccsc.cross_camera=false"],
    ("3", "softmax + triplet"): ["loss.ccsc.weight=0", "loss.triplet.weight=1", "loss.triplet.margin=0.3"],
    ("3", "softmax + center"): ["loss.ccsc.weight=0", "loss.center.weight=0.003", "loss.center.alpha=0.5"],
    ("3", "softmax + CCSC + triplet"): ["loss.ccsc.weight=1.5", "loss.triplet.weight=1", "loss.triplet.margin=0.3"],
}


def run_dir(out: Path, method: str, seed: int) -> Path:
    slug = method.replace(" + ", "+").replace(" ", "-").lower()
    return out / f"{slug}/seed{seed}"


def run_all(recipe: Path, seeds: list[int], overrides: list[str], out: Path) -> dict[str, list[dict]]:
    """Train (or read back) every method for every seed; return the results per method."""
    results: dict[str, list[dict]] = {}
    total, done, start = len(METHODS) * len(seeds), 0, time.time()
    for seed in seeds:
        for (_, method), method_overrides in METHODS.items():
            done += 1
            folder = run_dir(out, method, seed)
            if (folder / RESULT_FILE).is_file():
                result = read_result(folder)
                print(f"[{done}/{total}] {method}, seed {seed}: read back from {folder}")
            else:
                print(f"[{done}/{total}] {method}, seed {seed}: training ({time.time() - start:.0f}s elapsed)")
                extra = [f"data.synthcam.seed={seed}", f"train.seed={seed}", f"data.save_dir={folder}"]
                cfg = load_config(recipe, [*overrides, *method_overrides, *extra])
                result = pipeline.train(cfg, recipe=str(recipe))
            results.setdefault(method, []).append(result)
    print(f"All {total} runs done in {time.time() - start:.0f}s")
    return results


def format_table(results: dict[str, list[dict]], seeds: list[int]) -> str:
    """Markdown: one row per method, mean ± sample std over seeds of rank-1 and mAP (in %)."""
    lines = [
        f"| paper table | method | rank-1 (%) | mAP (%) | runs (seeds {', '.join(map(str, seeds))}) |",
        "|---|---|---|---|---|",
    ]
    for (table, method), _ in METHODS.items():
        runs = results[method]
        rank1 = format_mean_sd([r["rank1"] for r in runs])
        mean_ap = format_mean_sd([r["mAP"] for r in runs])
        lines.append(f"| {table} | {method} | {rank1} | {mean_ap} | {len(runs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_set_option(parser, scope=" in every run")
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic_tables"))
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("give at least 2 seeds: the table reports a standard deviation over seeds")
    results = run_all(args.recipe, args.seeds, args.overrides, args.out)
    table = format_table(results, args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print(table)


if __name__ == "__main__":
    main()
