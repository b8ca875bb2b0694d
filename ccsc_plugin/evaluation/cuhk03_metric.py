"""CUHK03's classic single-shot CMC, as torchreid's ``evaluate_rank(use_metric_cuhk03=True)`` computes it.

For CUHK03's classic split (``data.cuhk03_classic_split``): for each query, one gallery image of each identity
is drawn at random among the valid ones (the query's identity seen by its own camera is left out, as always),
and the CMC counts the rank of the query's identity in that one-image-per-identity gallery, averaged over
``REPEATS`` draws. mAP and mINP stay those of the whole gallery, as in torchreid.

torchreid draws from numpy's global generator, so its numbers change with whatever drew before. Here a
generator of its own, seeded with ``seed`` (:data:`CUHK03_SEED`), makes the same draws in the same order: every
evaluation of the same distances gives the same CMC, and after ``np.random.seed(seed)`` torchreid's is equal.
Ties are ordered by gallery index, as in :mod:`.metrics`. Past the number of gallery identities the curve stays
at its last value (torchreid's then has a ragged length and fails).
"""

from __future__ import annotations

import numpy as np
import torch

REPEATS = 10  # torchreid's num_repeats
CUHK03_SEED = 0


class SingleShotCMC:
    """Adds up the single-shot CMC over blocks of queries' distances (in query order: the draws follow it)."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray, max_rank: int, seed: int = CUHK03_SEED) -> None:
        self.g_pids, self.g_camids = np.asarray(g_pids), np.asarray(g_camids)
        self.max_rank = max_rank
        self.generator = np.random.RandomState(seed)  # the legacy generator: np.random.choice's draws
        self.hits = np.zeros(max(len(self.g_pids), 1), dtype=np.int64)  # (query, draw)s with the match at rank r + 1
        self.num_valid = 0

    def add(self, distances: torch.Tensor, q_pids: np.ndarray, q_camids: np.ndarray) -> None:
        """Score a block of queries: ``distances`` is (queries, gallery)."""
        order = np.argsort(distances.cpu().numpy(), axis=1, kind="stable")
        for ranking, q_pid, q_camid in zip(order, np.asarray(q_pids), np.asarray(q_camids), strict=True):
            self._add_query(ranking, q_pid, q_camid)

    def _add_query(self, ranking: np.ndarray, q_pid: int, q_camid: int) -> None:
        pids = self.g_pids[ranking]
        pids = pids[(pids != q_pid) | (self.g_camids[ranking] != q_camid)]  # valid items, nearest first
        mine = pids == q_pid
        if not mine.any():
            return  # no valid match: skipped, and torchreid draws nothing for it either
        # identities in order of first appearance (torchreid's dict order), each one's items nearest first
        _, first, group = np.unique(pids, return_index=True, return_inverse=True)
        order_of = np.empty(first.size, dtype=np.int64)
        order_of[np.argsort(first)] = np.arange(first.size)
        group = order_of[group.reshape(-1)]
        counts = np.bincount(group)
        items = np.argsort(group, kind="stable")  # positions, grouped by identity, nearest first within each
        # torchreid: for each draw, for each identity, np.random.choice(its positions): randint(0, count)
        draws = self.generator.randint(0, np.tile(counts, REPEATS)).reshape(REPEATS, -1)
        drawn = items[np.cumsum(counts) - counts + draws]  # (draws, identities): the position drawn for each
        own = drawn[:, group[np.argmax(mine)]]
        rank = (drawn < own[:, None]).sum(1)  # identities drawn before the query's own: its rank - 1
        self.hits += np.bincount(rank, minlength=self.hits.size)
        self.num_valid += 1

    def result(self) -> np.ndarray:
        """The CMC curve (float32, length ``max_rank``) over the valid queries added."""
        if self.num_valid == 0:
            raise ValueError("No query has a valid match in the gallery (same identity, another camera).")
        return (np.cumsum(self.hits)[: self.max_rank] / (REPEATS * self.num_valid)).astype(np.float32)
