"""Rank lists on disk (``ccsc-reid test --visrank K``): each query's top-K as an image strip, and one ``ranks.csv``.

Set ``engine.rank_lists = RankListOptions(topk, folder, max_queries)`` before ``test``: each target's evaluation
then keeps the top-K of its first ``max_queries`` queries (all when None) from the very distance blocks the
metrics score (:class:`~ccsc_plugin.evaluation.ranking.TopKCollector`: same distances, same tie rule, the
gallery items of the query's identity from the query's camera left out) and writes ``folder/<target>/``:

- ``q<index>_<query file stem>.jpg``: the query (blue frame) and its top-K left to right, green frames for
  its identity and red for another, captioned with rank, distance and camera (the demo's frames,
  :mod:`ccsc_plugin.evaluation.strips`). The query's index in the query set leads the name, zero-padded, so
  strips sort in query order and two queries with one file name (torchreid's issues #210 and #366) stay apart;
- ``ranks.csv``: ``query_path, rank, gallery_path, distance, correct``, K rows per query, in query order.

A target's folder is written beside its old one and renamed into place, so it never mixes two tests' lists.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ccsc_plugin.data.images import read_image
from ccsc_plugin.errors import RecipeError
from ccsc_plugin.evaluation.ranking import TopKCollector
from ccsc_plugin.evaluation.strips import rank_strip

CSV_NAME = "ranks.csv"
CSV_COLUMNS = ("query_path", "rank", "gallery_path", "distance", "correct")


@dataclass(frozen=True)
class RankListOptions:
    """Draw each query's ``topk`` (>= 1) into ``folder``, for the first ``max_queries`` queries (None: all)."""

    topk: int
    folder: Path
    max_queries: int | None = None

    def __post_init__(self) -> None:
        if self.topk < 1:
            raise RecipeError(f"--visrank K must be >= 1 (the matches drawn per query), got {self.topk}.")
        if self.max_queries is not None and self.max_queries < 1:
            raise RecipeError(f"--visrank-queries N must be >= 1 (or left out: all queries), got {self.max_queries}.")

    def collector(self, q_pids, q_camids, g_pids, g_camids) -> TopKCollector:
        """A collector of the top-``topk`` of the first ``max_queries`` queries."""
        count = len(q_pids) if self.max_queries is None else min(self.max_queries, len(q_pids))
        return TopKCollector(q_pids, q_camids, g_pids, g_camids, self.topk, range(count))


def strip_name(index: int, path: str, num_query: int) -> str:
    """``q<index>_<file stem>.jpg``, the index zero-padded to the width of the largest query index."""
    return f"q{index:0{len(str(max(num_query - 1, 0)))}d}_{Path(path).stem}.jpg"


def write_rank_lists(
    options: RankListOptions,
    target: str,
    query: Sequence[tuple],
    gallery: Sequence[tuple],
    top: TopKCollector,
    check_stop: Callable[[str], None] | None = None,
) -> Path:
    """Write ``target``'s strips and ``ranks.csv`` from ``top``; ``query`` / ``gallery`` are torchreid's items.

    ``check_stop(where)`` is called before each query (a stop signal ends the evaluation there).
    """
    if len(query) != len(top.q_pids) or len(gallery) != len(top.g_pids):
        raise ValueError(f"{target}: {len(query)} query / {len(gallery)} gallery items for the features' shapes.")
    folder = options.folder / target
    built = folder.with_name(f".{target}.new-{os.getpid()}")
    shutil.rmtree(built, ignore_errors=True)  # what a killed run of this process id left
    built.mkdir(parents=True)
    try:
        rows = []
        for index in tqdm(sorted(top.found), desc=f"{target} rank lists", unit="query"):
            if check_stop is not None:
                check_stop(f"rank list {index + 1}/{len(query)}")
            rows += _draw_query(built, index, query, gallery, top)
        with open(built / CSV_NAME, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
        _replace(folder, built)
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return folder


def _draw_query(
    built: Path, index: int, query: Sequence[tuple], gallery: Sequence[tuple], top: TopKCollector
) -> list[tuple]:
    """Save query ``index``'s strip in ``built``; return its ``ranks.csv`` rows."""
    q_path, q_pid, q_camid = query[index][:3]
    found = top.found[index]
    rows, matches = [], []
    ranked = zip(found.indices.tolist(), found.distances.tolist(), strict=True)
    for rank, (g_index, distance) in enumerate(ranked, start=1):
        g_path, g_pid, g_camid = gallery[g_index][:3]
        correct = bool(g_pid == q_pid)
        rows.append((q_path, rank, g_path, f"{distance:.7g}", correct))
        matches.append((read_image(g_path), f"#{rank} d={distance:.3f} cam {g_camid}", correct))
    strip = rank_strip(read_image(q_path), f"query id {q_pid} cam {q_camid}", matches)
    strip.save(built / strip_name(index, q_path, len(query)), quality=92)
    return rows


def _replace(folder: Path, built: Path) -> None:
    """Move ``built`` to ``folder``; an old ``folder`` is renamed aside first and removed after."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    built.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
