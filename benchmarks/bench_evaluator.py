"""Evaluator speed on a Market-1501-sized problem: ccsc_plugin.evaluation.metrics against torchreid's evaluators.

Peers: torchreid's compiled Cython ``evaluate_rank`` (from the ``pyppbox-torchreid`` wheel: ``pip install
'.[bench]'``) and torchreid's Python ``evaluate_rank`` (timed on a subset of queries and scaled, as it takes
minutes at full size). CMC and mAP are checked against both. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import inspect

import numpy as np
import torch
from _common import HEADER, alternate, log, row, timed

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.evaluation import metrics

MARKET = {"num_query": 3368, "num_gallery": 15913, "num_distractors": 2798, "ids": 750, "cams": 6, "dim": 512}


def cython_evaluator():
    """pyppbox-torchreid's evaluate_rank, after checking that its compiled rank_cy is what it runs."""
    try:
        from pyppbox_torchreid.metrics import rank
        from pyppbox_torchreid.metrics.rank_cylib import rank_cy
    except ImportError as error:
        raise SystemExit(f"The Cython peer is missing ({error}): pip install 'ccsc-reid[bench]'.") from error
    if not (rank.IS_CYTHON_AVAI and rank_cy.__file__.endswith(".so") and rank.evaluate_cy is rank_cy.evaluate_cy):
        raise SystemExit("pyppbox_torchreid's compiled rank_cy is not in use; reinstall pyppbox-torchreid.")
    log(f"Cython peer: {rank_cy.__file__}")

    def evaluate(*args):
        return rank.evaluate_rank(*args, max_rank=50, use_cython=True)

    return evaluate


def market_like_problem(seed: int = 0, noise: float = 1.5):
    """Features with identity and camera structure, Market-1501's sizes, and a distractor set."""
    m = MARKET
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((m["ids"] + 1, m["dim"])).astype(np.float32)
    camera_shift = 0.5 * rng.standard_normal((m["cams"], m["dim"])).astype(np.float32)
    num_real = m["num_gallery"] - m["num_distractors"]
    q_pids = rng.integers(1, m["ids"] + 1, m["num_query"])
    g_pids = np.concatenate([rng.integers(1, m["ids"] + 1, num_real), np.zeros(m["num_distractors"], np.int64)])
    q_camids = rng.integers(0, m["cams"], m["num_query"])
    g_camids = rng.integers(0, m["cams"], m["num_gallery"])

    def features(pids, camids):
        noise_part = noise * rng.standard_normal((len(pids), m["dim"])).astype(np.float32)
        return torch.from_numpy(centres[pids] * (pids > 0)[:, None] + camera_shift[camids] + noise_part)

    qf, gf = features(q_pids, q_camids), features(g_pids, g_camids)
    distmat = metrics.distance_matrix(qf, gf).numpy()
    return distmat, q_pids, g_pids, q_camids, g_camids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each fast evaluator (median)")
    parser.add_argument("--python-queries", type=int, default=300, help="queries timed for torchreid's Python one")
    args = parser.parse_args()

    cython = cython_evaluator()
    log("building a Market-1501-sized distance matrix ...")
    problem = market_like_problem()
    ours_result = metrics.evaluate_rank(*problem)
    cy_result = cython(*problem)
    medians = alternate(args.runs, ours=lambda: metrics.evaluate_rank(*problem), cython=lambda: cython(*problem))

    n = args.python_queries
    subset = (problem[0][:n], problem[1][:n], problem[2], problem[3][:n], problem[4])
    log(f"timing torchreid's Python evaluator on {n} queries ...")
    assert "use_cython" in inspect.signature(torchreid.metrics.evaluate_rank).parameters
    python_seconds, python_result = timed(lambda: torchreid.metrics.evaluate_rank(*subset, use_cython=False))
    ours_subset_seconds, ours_subset = timed(lambda: metrics.evaluate_rank(*subset))
    python_full = python_seconds * len(problem[1]) / n

    cmc_diff = float(np.abs(ours_result[0] - cy_result[0]).max())
    map_diff = abs(ours_result[1] - cy_result[1])
    py_cmc_diff = float(np.abs(ours_subset[0] - python_result[0]).max())
    py_map_diff = abs(ours_subset[1] - python_result[1])
    shape = f"{len(problem[1])} x {len(problem[2])}"
    print(HEADER)
    print(
        row(
            f"evaluate_rank, Market-1501 size ({shape})",
            f"{medians['ours']:.2f} s",
            "torchreid Cython evaluate_rank (pyppbox-torchreid)",
            f"{medians['cython']:.2f} s",
            f"{medians['cython'] / medians['ours']:.1f}x faster",
        )
    )
    print(
        row(
            f"evaluate_rank, Market-1501 size ({shape})",
            f"{medians['ours']:.2f} s",
            f"torchreid Python evaluate_rank ({n} queries timed: {python_seconds:.1f} s, scaled)",
            f"{python_full:.0f} s",
            f"{python_full / medians['ours']:.0f}x faster",
        )
    )
    print(
        row(
            "max CMC / mAP difference vs Cython (all 50 ranks)",
            f"{cmc_diff:.1e} / {map_diff:.1e}",
            "torchreid Cython evaluate_rank",
            "0",
            "<= 1e-6" if max(cmc_diff, map_diff) <= 1e-6 else "EXCEEDS 1e-6",
        )
    )
    print(
        row(
            f"max CMC / mAP difference vs Python ({n} queries)",
            f"{py_cmc_diff:.1e} / {py_map_diff:.1e}",
            "torchreid Python evaluate_rank",
            "0",
            "<= 1e-6" if max(py_cmc_diff, py_map_diff) <= 1e-6 else "EXCEEDS 1e-6",
        )
    )
    log(f"rank-1 {ours_result[0][0]:.4f}, mAP {ours_result[1]:.4f}; ours on the subset {ours_subset_seconds:.2f} s")


if __name__ == "__main__":
    main()
