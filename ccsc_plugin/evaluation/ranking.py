"""One query's gallery ranking as the metrics score it, and the top-k of chosen queries during an evaluation.

:func:`valid_order` ranks by distance, equal distances by gallery index (a stable sort: the tie rule of
:mod:`.metrics`), and leaves out the gallery items of the query's identity seen by the query's camera (the
evaluation protocol, torchreid's and ``metrics.evaluate_rank``'s). The demo's top-5
(``serve.retrieval.rank_gallery``) and the rank lists of ``ccsc-reid test --visrank`` both rank with it.

:class:`TopKCollector` is handed each block of distances that :func:`.metrics.evaluate_features` scores
(its ``on_block``), so rank lists are drawn from the very distances behind the reported CMC and mAP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def valid_order(
    distances: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    q_pid: int | None = None,
    q_camid: int | None = None,
) -> np.ndarray:
    """Gallery indices, nearest first (ties by index), without the query's identity from the query's camera.

    With ``q_pid`` or ``q_camid`` None (an unlabelled query) nothing is left out.
    """
    order = np.argsort(distances, kind="stable")
    if q_pid is None or q_camid is None:
        return order
    return order[~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))]


@dataclass(frozen=True)
class TopK:
    """One query's first ``k`` valid gallery items: their indices and distances, nearest first."""

    indices: np.ndarray
    distances: np.ndarray


class TopKCollector:
    """The top-``topk`` of the ``queries`` (query indices), read from blocks of query x gallery distances."""

    def __init__(self, q_pids, q_camids, g_pids, g_camids, topk: int, queries: Sequence[int]) -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}.")
        self.q_pids, self.q_camids = np.asarray(q_pids), np.asarray(q_camids)
        self.g_pids, self.g_camids = np.asarray(g_pids), np.asarray(g_camids)
        self.topk = topk
        self.queries = np.unique(np.asarray(queries, dtype=np.int64))
        self.found: dict[int, TopK] = {}

    def add(self, start: int, distances: torch.Tensor) -> None:
        """Keep the top-k of the chosen queries among rows ``start`` .. ``start + len(distances) - 1``."""
        chosen = self.queries[(self.queries >= start) & (self.queries < start + distances.shape[0])]
        if not len(chosen):
            return
        rows = distances[torch.as_tensor(chosen - start, device=distances.device)].cpu().numpy()
        for query, row in zip(chosen.tolist(), rows, strict=True):
            order = valid_order(row, self.g_pids, self.g_camids, self.q_pids[query], self.q_camids[query])
            self.found[query] = TopK(order[: self.topk], row[order[: self.topk]])
