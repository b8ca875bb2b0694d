"""k-reciprocal re-ranking (Zhong et al., CVPR 2017): torchreid's ``re_ranking``, in bounded memory.

torchreid's ``utils/rerank.py`` holds the (Q+G) x (Q+G) distance matrix, its full argsort and two dense weight
matrices at once: about 20 bytes per pair of images, 7.4 GB for Market-1501 (19,281 images) and 176 GB for
MSMT17 (93,820). Its result needs far less: an image's k-reciprocal neighbours come from the first ``k1 + 1``
entries of the rankings, its weights ``V`` are sparse (a few dozen images), and the re-ranked distances are
scored one block of queries at a time. Here rows of the distance matrix are made a block at a time (once for
the neighbour table, once for the weights, once more for the queries' rows), ``V`` is kept as sparse rows,
and the re-ranked query x gallery distances are handed out in blocks. :func:`memory_bytes` bounds the memory.

The distances are those torchreid's ``Engine._evaluate`` gives ``re_ranking``: ``test.dist_metric``'s
(``euclidean`` is squared), squared again inside and divided by each image's largest, as there. The result
equals torchreid's (``tests/test_rerank.py``, to 1e-5 on random problems). Which of exactly tied neighbours
(duplicate images) comes first is left to ``torch.topk``, as torchreid leaves it to numpy's ``argsort``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ccsc_plugin.errors import RecipeError
from ccsc_plugin.evaluation.k_reciprocal import (
    PAIR_STEP,
    ROW_BYTES,
    DistanceRows,
    entries_per_row,
    half_width,
    rerank_rows,
)
from ccsc_plugin.evaluation.metrics import check_features, distance_matrix

DEFAULT_MAX_MB = 8192  # test.rerank_max_mb: twice MSMT17's bound (93,820 images, 2048-d: 4,121 MB)
_ENTRY_BYTES = 12  # a sparse weight: int64 column, float32 value
_EXPANDED_ENTRY_BYTES = 60  # one after query expansion: by row and by column, and sorting it into columns


class RerankMemoryError(RecipeError):
    """Re-ranking would need more memory than the limit (``test.rerank_max_mb``); the message says what to do."""


@dataclass(frozen=True)
class RerankSettings:
    """Zhong et al.'s k1 (neighbours), k2 (query expansion) and lambda (weight of the original distance), and
    the memory limit in MB (2**20 bytes). The defaults are the paper's and torchreid's."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    max_mb: float = DEFAULT_MAX_MB

    def __post_init__(self) -> None:
        bad = [
            f"{name}={getattr(self, name)!r} must be a whole number >= 1"
            for name in ("k1", "k2")
            if not _count(self, name)
        ]
        if isinstance(self.lambda_value, bool) or not 0 <= self.lambda_value <= 1:
            bad.append(f"lambda_value={self.lambda_value!r} must be in [0, 1]")
        if isinstance(self.max_mb, bool) or not self.max_mb > 0:
            bad.append(f"max_mb={self.max_mb!r} must be > 0")
        if bad:
            raise ValueError(f"Re-ranking settings: {'; '.join(bad)} (the paper's: k1=20, k2=6, lambda_value=0.3).")

    def record(self) -> dict[str, object]:
        """What ``result.json`` records of a re-ranked evaluation."""
        return {"used": True, "k1": int(self.k1), "k2": int(self.k2), "lambda": float(self.lambda_value)}


def _count(settings: RerankSettings, name: str) -> bool:
    value = getattr(settings, name)
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


def memory_bytes(num_query: int, num_gallery: int, feature_dim: int, settings: RerankSettings) -> int:
    """At most how many bytes :func:`rerank_blocks` holds beyond the features it is given.

    The sparse weights at their most (``k_reciprocal.entries_per_row``), with what building them by column
    takes; the features side by side; the neighbour table; and the blocks of rows and of pairs.
    """
    n = num_query + num_gallery
    per_row, expanded = entries_per_row(n, settings.k1, settings.k2)
    weights = n * (per_row * _ENTRY_BYTES + expanded * _EXPANDED_ENTRY_BYTES)
    table = n * (min(n, max(settings.k1 + 1, settings.k2)) * 8 + half_width(settings.k1) + 1)
    blocks = 8 * min(ROW_BYTES, 4 * n * n) + 64 * PAIR_STEP  # rows, dense maps and their temporaries; pairs
    return weights + n * feature_dim * 4 + table + blocks


def check_memory(num_query: int, num_gallery: int, feature_dim: int, settings: RerankSettings) -> int:
    """:func:`memory_bytes`, or :class:`RerankMemoryError` when it exceeds ``settings.max_mb``."""
    needed = memory_bytes(num_query, num_gallery, feature_dim, settings)
    if needed > settings.max_mb * 2**20:
        raise RerankMemoryError(
            f"Re-ranking {num_query:,} queries and {num_gallery:,} gallery images needs up to {needed / 2**20:,.0f} "
            f"MB, over the limit of {settings.max_mb:,g} MB (test.rerank_max_mb). Raise test.rerank_max_mb if this "
            "machine has the memory, score a smaller gallery, or evaluate without re-ranking (test.rerank=false)."
        )
    return needed


class _FeatureRows(DistanceRows):
    def __init__(self, qf: torch.Tensor, gf: torch.Tensor, metric: str) -> None:
        self.features, self.metric = torch.cat([qf, gf]), metric
        self.num_query, self.num_all = qf.size(0), self.features.size(0)

    def raw(self, start: int, stop: int) -> torch.Tensor:
        return distance_matrix(self.features[start:stop], self.features, self.metric)


class _MatrixRows(DistanceRows):
    """From torchreid's arguments: row i is column i of [[q_q, q_g], [q_g.T, g_g]] (squared in their dtype)."""

    def __init__(self, q_g_dist, q_q_dist, g_g_dist) -> None:
        dtype = np.result_type(*(np.asarray(m).dtype for m in (q_g_dist, q_q_dist, g_g_dist)))
        self.q_g, self.q_q, self.g_g = (
            torch.as_tensor(np.asarray(m, dtype=dtype)) for m in (q_g_dist, q_q_dist, g_g_dist)
        )
        self.num_query, self.num_all = self.q_g.shape[0], sum(self.q_g.shape)

    def raw(self, start: int, stop: int) -> torch.Tensor:
        q = self.num_query
        if stop <= q:
            return torch.cat([self.q_q[:, start:stop].T, self.q_g[start:stop]], 1)
        return torch.cat([self.q_g[:, start - q : stop - q].T, self.g_g[:, start - q : stop - q].T], 1)


def _quiet(where: str) -> None:
    """No progress to report."""


def rerank_blocks(
    qf: torch.Tensor,
    gf: torch.Tensor,
    metric: str = "euclidean",
    settings: RerankSettings = RerankSettings(),
    progress: Callable[[str], None] = _quiet,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Re-ranked query x gallery distances of the features, ``(first query, block)`` at a time.

    ``progress`` is called with where the work is before each step (the engine checks for a stop signal
    there). Memory is bounded by :func:`memory_bytes`; :func:`check_memory` first refuses what is too much.
    """
    qf, gf = check_features(qf, gf)
    yield from rerank_rows(_FeatureRows(qf, gf, metric), settings.k1, settings.k2, settings.lambda_value, progress)


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """torchreid's ``re_ranking``: same arguments (numpy distance matrices), same result (float32 query x gallery).

    Its memory is the three matrices plus :func:`memory_bytes` (no limit is applied here).
    """
    rows = _MatrixRows(q_g_dist, q_q_dist, g_g_dist)
    RerankSettings(k1, k2, lambda_value)  # checks them
    blocks = [block for _, block in rerank_rows(rows, k1, k2, lambda_value, _quiet)]
    return torch.cat(blocks).numpy()
