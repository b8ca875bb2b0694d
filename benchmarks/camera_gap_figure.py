"""The camera gap as a figure: similarity histograms of the three kinds of test-image pair, one panel per run.

    python benchmarks/camera_gap_figure.py RUN_A RUN_B --labels baseline CCSC --output docs/camera_gap.png

Each RUN is a run folder or a result file (``result.json``, ``tests/*.json``); only its ``camera_gap`` block
is read (written by every evaluation, see ``ccsc_plugin/camera_gap.py``), so no model or data is needed. A
panel draws the cosine similarities of same-person same-camera pairs, same-person cross-camera pairs and
different-person pairs of the test images as densities (counts / (pairs x bin width)), so kinds with very
different numbers of pairs share one axis. The paper's claim (Fig. 1, Table 2) reads off it: for the
baseline the cross-camera curve lies left of the same-camera one; CCSC moves it right, towards it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from ccsc_plugin.evaluation.camera_gap import KINDS  # noqa: E402
from ccsc_plugin.evaluation.results import ResultFileError, read_result  # noqa: E402
from ccsc_plugin.evaluation.tables import check_output  # noqa: E402

STYLE = {  # kind -> (legend label, colour)
    "same_camera": ("same person, same camera", "tab:blue"),
    "cross_camera": ("same person, other camera", "tab:orange"),
    "different_person": ("different people", "tab:gray"),
}


def load_gap(run: str | Path) -> dict:
    """The ``camera_gap`` block of a run folder or result file, or a ``ResultFileError`` naming the file."""
    path = Path(run)
    if not path.exists():
        raise ResultFileError(f"{path} does not exist; give run folders (data.save_dir) or result.json files.")
    result = read_result(path)
    gap = result.get("camera_gap")
    if not isinstance(gap, dict) or not {"histogram", *KINDS} <= set(gap):
        raise ResultFileError(
            f"{path} has no camera_gap: it was written before evaluations measured it. Evaluate its checkpoint "
            "again (ccsc-reid test RECIPE --weights RUN) and give the test result (RUN/tests/*.json)."
        )
    return gap


def densities(counts: list[int], edges: list[float]) -> list[float]:
    """Counts per bin as a density: the histogram's area is 1 (all zeros when there are no pairs)."""
    total = sum(counts)
    return [
        count / (total * (hi - lo)) if total else 0.0
        for count, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True)
    ]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def draw(gaps: list[dict], labels: list[str], output: Path) -> Path:
    """One panel per run, side by side on a shared y axis, written to ``output`` (PNG or any matplotlib format)."""
    figure, axes = plt.subplots(1, len(gaps), figsize=(5.5 * len(gaps), 4), sharey=True, squeeze=False)
    for axis, gap, label in zip(axes[0], gaps, labels, strict=True):
        edges = gap["histogram"]["edges"]
        for kind in KINDS:
            name, colour = STYLE[kind]
            values = densities(gap["histogram"][kind], edges)
            text = f"{name} (mean {_fmt(gap[kind])})" if gap["pairs"][kind] else f"{name} (no pairs)"
            axis.stairs(values, edges, color=colour, fill=True, alpha=0.3)
            axis.stairs(values, edges, color=colour, label=text)
        gap_text = "n/a" if gap.get("gap") is None else f"{gap['gap']:+.3f}"
        axis.set_title(f"{label}: camera gap {gap_text}")
        axis.set_xlabel("cosine similarity of a pair of test images")
        axis.set_xlim(-1, 1)
        axis.legend(loc="upper left", fontsize="small")
    axes[0][0].set_ylabel("density")
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or result.json files, one panel each")
    parser.add_argument("--labels", nargs="+", help="panel titles, one per run (default: the folder names)")
    parser.add_argument("--output", default="docs/camera_gap.png", help="image file to write")
    args = parser.parse_args(argv)
    labels = args.labels or [Path(run).name if Path(run).is_dir() else Path(run).parent.name for run in args.runs]
    try:
        if len(labels) != len(args.runs):
            raise ResultFileError(f"{len(args.runs)} runs but {len(labels)} labels: give --labels one per run.")
        output = check_output(args.output, example="camera_gap.png")
        gaps = [load_gap(run) for run in args.runs]
    except ResultFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Camera-gap figure written to {draw(gaps, labels, output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
