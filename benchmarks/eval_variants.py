"""Evaluation as papers report it, on real people: plain, + flip, + re-ranking, + both, for trained checkpoints.

Scores the seed-N checkpoints of the real-data benchmark (``benchmarks/real_tables.py``; by default the baseline
and softmax + CCSC of seed 1) on the 100 test people of ``../shared/data/cuhk03-detected-mini`` four ways:
the plain test feature, the flip-averaged one (``test.flip``), k-reciprocal re-ranking (``test.rerank``, k1=20,
k2=6, lambda=0.3) and both, each through ``ccsc-reid test`` (``pipeline.evaluate``). Prints and writes a
Markdown table of rank-1, mAP and mINP with each variant's difference from the plain one, and copies one
rank-list strip (``--visrank``) of the plain CCSC test to ``--strip``.

    python benchmarks/eval_variants.py                  # from the checkout root, after real_tables.py's seed-1 runs
    python benchmarks/eval_variants.py --report-only    # the table from the kept test results, nothing scored

Every test's result JSON is kept in ``benchmarks/results/eval_variants/<recipe>/seed-<N>/<variant>.json`` (git
tracks it), so the table rebuilds on a fresh clone without the checkpoints. A kept result is scored again only
when the checkpoint it scored (its SHA-256) is on this machine and differs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _common import command, log, machine

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin import pipeline
from ccsc_plugin.cli import USER_ERRORS
from ccsc_plugin.config import load_config
from ccsc_plugin.evaluation.results import read_result, write_result

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = REPO_ROOT / "recipes" / "cpu_cuhk03"
RUNS_DIR = Path("runs/real_tables")
RECORDS_DIR = REPO_ROOT / "benchmarks" / "results" / "eval_variants"
OUTPUT, STRIP = Path("docs/eval_variants.md"), Path("docs/rank_list.jpg")
LABELS = {"softmax": "Softmax (baseline)", "softmax_ccsc": "Softmax + CCSC"}
# variant -> its recipe overrides (re-ranking with its defaults: k1=20, k2=6, lambda=0.3)
VARIANTS = {
    "plain": ["test.flip=false", "test.rerank=false"],
    "flip": ["test.flip=true", "test.rerank=false"],
    "rerank": ["test.flip=false", "test.rerank=true"],
    "flip+rerank": ["test.flip=true", "test.rerank=true"],
}
METRICS = {"rank1": "R-1", "mAP": "mAP", "mINP": "mINP"}
STRIP_QUERIES = 20  # rank lists drawn for the plain CCSC test: the first queries, in query order


def record_path(records: Path, method: str, seed: int, variant: str) -> Path:
    return records / method / f"seed-{seed}" / f"{variant}.json"


def score(method: str, seed: int, variant: str, runs_dir: Path, visrank: bool) -> dict[str, Any]:
    """``ccsc-reid test`` of the run's latest checkpoint with the variant's settings (rank lists if ``visrank``)."""
    folder = runs_dir / method / f"seed-{seed}"
    weights = ckpt.latest_checkpoint(folder, f"{folder} holds no checkpoint: run benchmarks/real_tables.py first.")
    cfg = load_config(RECIPES_DIR / f"{method}.yaml", [*VARIANTS[variant], f"data.save_dir={folder}"])
    recipe = str((RECIPES_DIR / f"{method}.yaml").relative_to(REPO_ROOT))
    if not visrank:
        return pipeline.evaluate(cfg, weights, recipe)
    return pipeline.evaluate(cfg, weights, recipe, visrank=10, visrank_queries=STRIP_QUERIES)


def kept_or_scored(
    method: str, seed: int, variant: str, runs_dir: Path, records: Path, report_only: bool
) -> dict[str, Any] | None:
    """The kept result when it scored this run's checkpoint (or no checkpoint is here), else a new test."""
    kept = record_path(records, method, seed, variant)
    checkpoints = ckpt.epoch_checkpoints(runs_dir / method / f"seed-{seed}")
    if kept.is_file():
        result = read_result(kept)
        if report_only or not checkpoints or result.get("checkpoint_sha256") == ckpt.file_sha256(checkpoints[-1]):
            log(f"{method} seed {seed} {variant}: read back from {kept}")
            return result
    if report_only or not checkpoints:
        log(f"{method} seed {seed} {variant}: not scored (no kept result, no checkpoint here)")
        return None
    log(f"{method} seed {seed} {variant}: scoring {checkpoints[-1]}")
    result = score(method, seed, variant, runs_dir, visrank=(method == "softmax_ccsc" and variant == "plain"))
    write_result(kept, result)
    return result


def _cell(result: Mapping[str, Any] | None, plain: Mapping[str, Any] | None, metric: str) -> str:
    if result is None or result.get(metric) is None:
        return "not scored"
    value = f"{100 * result[metric]:.1f}"
    if plain is None or result is plain or plain.get(metric) is None:
        return value
    return f"{value} ({100 * (result[metric] - plain[metric]):+.1f})"


def render(results: Mapping[str, Mapping[str, Mapping[str, Any] | None]], seed: int) -> str:
    """The Markdown table: a row per method and variant, each metric with its difference from the plain test."""
    header = ["Method", "Test", *(f"{label} (%)" for label in METRICS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, variants in results.items():
        plain = variants.get("plain")
        for variant, result in variants.items():
            cells = [LABELS.get(method, method), variant, *(_cell(result, plain, metric) for metric in METRICS)]
            lines.append("| " + " | ".join(cells) + " |")
    caption = (
        f"Seed-{seed} checkpoints of `benchmarks/real_tables.py`, tested on the 100 people of "
        "`../shared/data/cuhk03-detected-mini` (one query per camera and person). flip: `test.flip=true`; "
        "rerank: `test.rerank=true` (k1=20, k2=6, lambda=0.3). In brackets: the difference from the plain test, "
        "in points."
    )
    return "\n".join([caption, "", *lines, "", f"Tables written on {machine()}. Command: `{command()}`.", ""])


def copy_strip(result: Mapping[str, Any] | None, strip: Path) -> str:
    """Copy the first rank-list strip of ``result``'s test to ``strip``; say what was copied."""
    folders = [Path(t["rank_lists"]) for t in (result or {}).get("targets", {}).values() if t.get("rank_lists")]
    images = sorted(image for folder in folders if folder.is_dir() for image in folder.glob("q*.jpg"))
    if not images:
        return f"Rank-list strip: kept as it is ({strip}); no rank lists of the plain CCSC test on this machine."
    strip.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(images[0], strip)
    return f"Rank-list strip: {images[0]} -> {strip}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="the seed of the real_tables.py runs to test")
    parser.add_argument("--methods", nargs="+", default=list(LABELS), choices=list(LABELS), metavar="METHOD")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR, help=f"real_tables.py's runs (default {RUNS_DIR})")
    parser.add_argument("--records-dir", type=Path, default=RECORDS_DIR, help="where test results are kept for git")
    parser.add_argument("--report-only", action="store_true", help="tabulate the kept results, score nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"Markdown table (default {OUTPUT})")
    parser.add_argument("--strip", type=Path, default=STRIP, help=f"rank-list strip copied here (default {STRIP})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = {
            method: {
                variant: kept_or_scored(method, args.seed, variant, args.runs_dir, args.records_dir, args.report_only)
                for variant in VARIANTS
            }
            for method in args.methods
        }
    except USER_ERRORS as error:
        print(f"eval_variants.py: error: {error}", file=sys.stderr)
        return 2
    report = render(results, args.seed)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"Table written to {args.output}")
    if not args.report_only:
        print(copy_strip(results.get("softmax_ccsc", {}).get("plain"), args.strip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
