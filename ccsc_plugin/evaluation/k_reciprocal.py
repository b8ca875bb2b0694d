"""The steps of torchreid's ``re_ranking`` (Zhong et al., CVPR 2017) on rows of distances made a block at a time.

:mod:`.rerank` gives the entry points and says why. Images are the queries, then the gallery. Row i of torchreid's
``original_dist`` is image i's squared distances to every image over their largest (:class:`DistanceRows`). From
it: each image's nearest images (``initial_rank``, only its first ``max(k1 + 1, k2)``); the weights ``V`` over each
image's expanded k-reciprocal set, as sparse rows; their local query expansion over the k2 nearest; and each
query's Jaccard distance to each gallery image, blended with the original distance by lambda.

Sizes, for :func:`entries_per_row`: ``V``'s row i holds R(i, k1), at most k1 + 1 images, and each candidate c of
it whose R(c, k1/2) (at most k1/2 + 1 images) overlaps R(i, k1) in more than 2/3 of its images adds fewer than a
third of them: at most ceil((k1/2 + 1) / 3) - 1 new images each. Query expansion sums k2 such rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

ROW_BYTES = 64 * 2**20  # a block of distance rows (float32), and of each dense map made beside it
PAIR_STEP = 2**20  # (query weight, gallery weight) pairs per step of the Jaccard distance


def half_width(k1: int) -> int:
    """torchreid's k1 / 2 for expanding k-reciprocal sets: ``np.around``, which rounds half to even."""
    return round(k1 / 2)


def entries_per_row(num_all: int, k1: int, k2: int) -> tuple[int, int]:
    """The most non-zero weights a row of ``V`` holds, before and after query expansion (see the module doc)."""
    added = math.ceil((half_width(k1) + 1) / 3) - 1
    per_row = min(num_all, (k1 + 1) * (1 + added))
    return per_row, (per_row if k2 == 1 else min(num_all, k2 * per_row))


class DistanceRows:
    """Rows of torchreid's normalised ``original_dist``: image i's squared distances to every image (queries
    first, then the gallery), divided by their largest. Subclasses give the distances (``raw``)."""

    num_query: int
    num_all: int

    def raw(self, start: int, stop: int) -> torch.Tensor:
        """Images [start, stop)'s distances to every image (torchreid's: squared euclidean, or cosine)."""
        raise NotImplementedError

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop): squared (in the distances' dtype), then float32 over each row's largest."""
        squared = self.raw(start, stop).square().float()
        return squared / squared.amax(1, keepdim=True)

    def spans(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """Blocks of about ``ROW_BYTES`` of rows in [start, stop), none across the query / gallery border."""
        step = max(1, ROW_BYTES // (4 * self.num_all))
        for first, last in ((start, min(stop, self.num_query)), (max(start, self.num_query), stop)):
            for row in range(first, last, step):
                yield row, min(row + step, last)


@dataclass(frozen=True)
class _Sparse:
    """Sparse rows: row i's columns ``col[crow[i]:crow[i + 1]]`` (ascending) hold ``val[...]``."""

    crow: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor

    @classmethod
    def from_dense(cls, blocks: Iterator[torch.Tensor]) -> _Sparse:
        """From consecutive blocks of dense rows (zeros left out)."""
        counts, cols, vals = [], [], []
        for dense in blocks:
            row, col = dense.nonzero(as_tuple=True)
            counts.append(torch.bincount(row, minlength=dense.size(0)))
            cols.append(col)
            vals.append(dense[row, col])
        crow = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(torch.cat(counts), 0)])
        return cls(crow, torch.cat(cols), torch.cat(vals))

    def entries(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entries of ``rows``, one row after another, and how many each row has."""
        counts = torch.diff(self.crow)[rows]
        return _ranges(self.crow[rows], counts), counts


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``cat([arange(s, s + c) for s, c in zip(starts, counts)])``, without a loop."""
    offsets = torch.cumsum(counts, 0) - counts
    return torch.repeat_interleave(starts - offsets, counts) + torch.arange(int(counts.sum()))


def _neighbours(rows: DistanceRows, width: int) -> torch.Tensor:
    """(images, width): each image's nearest images, nearest first (torchreid's ``initial_rank[:, :width]``)."""
    ranks = torch.empty(rows.num_all, width, dtype=torch.int64)
    for start, stop in rows.spans(0, rows.num_all):
        ranks[start:stop] = torch.topk(rows(start, stop), width, dim=1, largest=False, sorted=True).indices
    return ranks


def _reciprocal(ranks: torch.Tensor, index: torch.Tensor, k: int) -> torch.Tensor:
    """(rows, k + 1): whether image ``index[r]`` is among the first k + 1 of each of its own first k + 1."""
    return (ranks[ranks[index, : k + 1], : k + 1] == index[:, None, None]).any(-1)


def _weight_block(
    new: torch.Tensor, index: torch.Tensor, ranks: torch.Tensor, half_reciprocal: torch.Tensor, k1: int
) -> torch.Tensor:
    """``V``'s rows ``index`` (dense): a Gaussian kernel of the distance over the expanded k-reciprocal set."""
    forward = ranks[index, : k1 + 1]
    reciprocal = _reciprocal(ranks, index, k1)  # the k-reciprocal set R(i, k1) among i's first k1 + 1
    row = torch.arange(index.numel())[:, None].expand_as(forward)
    chosen = torch.zeros(new.shape, dtype=torch.bool)
    chosen[row[reciprocal], forward[reciprocal]] = True
    candidate_sets = ranks[forward, : half_reciprocal.size(1)]  # each candidate's first k1/2 + 1 ...
    candidate_valid = half_reciprocal[forward]  # ... of which these are R(candidate, k1/2)
    inside = chosen.gather(1, candidate_sets.flatten(1)).view_as(candidate_sets) & candidate_valid
    # torchreid: len(intersect1d(R(candidate, k1/2), R(i, k1))) > 2/3 * len(R(candidate, k1/2))
    taken = reciprocal & (inside.sum(-1).double() > (2.0 / 3) * candidate_valid.sum(-1).double())
    added = taken[..., None] & candidate_valid
    chosen[row[..., None].expand_as(candidate_sets)[added], candidate_sets[added]] = True
    entry_row, entry_col = chosen.nonzero(as_tuple=True)
    weight = torch.exp(-new[entry_row, entry_col])
    total = torch.zeros(index.numel()).index_add_(0, entry_row, weight)
    return torch.zeros(new.shape).index_put_((entry_row, entry_col), weight / total[entry_row])


def _weights(rows: DistanceRows, ranks: torch.Tensor, k1: int, progress: Callable[[str], None]) -> _Sparse:
    """torchreid's ``V``: each image's weights over its expanded k-reciprocal neighbours, as sparse rows."""
    everyone, half = torch.arange(rows.num_all), half_width(k1)
    half_reciprocal = torch.cat([_reciprocal(ranks, everyone[a:b], half) for a, b in rows.spans(0, rows.num_all)])

    def blocks() -> Iterator[torch.Tensor]:
        for start, stop in rows.spans(0, rows.num_all):
            progress(f"weights of images {start + 1:,}-{stop:,} of {rows.num_all:,}")
            yield _weight_block(rows(start, stop), everyone[start:stop], ranks, half_reciprocal, k1)

    return _Sparse.from_dense(blocks())


def _expand_queries(weights: _Sparse, ranks: torch.Tensor, k2: int, rows: DistanceRows) -> _Sparse:
    """torchreid's local query expansion: each row of ``V`` becomes the mean of its k2 nearest images' rows."""

    def blocks() -> Iterator[torch.Tensor]:
        for start, stop in rows.spans(0, rows.num_all):
            dense = torch.zeros(stop - start, rows.num_all)
            for j in range(k2):  # summed in neighbour order, as numpy's mean over them
                entry, counts = weights.entries(ranks[start:stop, j])
                row = torch.repeat_interleave(torch.arange(stop - start), counts)
                dense.index_put_((row, weights.col[entry]), weights.val[entry], accumulate=True)
            yield dense.div_(k2)

    return _Sparse.from_dense(blocks())


@dataclass(frozen=True)
class _Columns:
    """The gallery's weights by column: column k's gallery images (``row``, from 0) and weights (``val``)."""

    ccol: torch.Tensor
    row: torch.Tensor
    val: torch.Tensor

    @classmethod
    def of(cls, weights: _Sparse, num_query: int) -> _Columns:
        first = int(weights.crow[num_query])  # the gallery's rows come last: entries [first, end)
        gallery_rows = torch.repeat_interleave(torch.diff(weights.crow[num_query:]))
        col, order = torch.sort(weights.col[first:], stable=True)
        counts = torch.bincount(col, minlength=weights.crow.numel() - 1)
        del col
        ccol = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])
        return cls(ccol, gallery_rows[order], weights.val[first:][order])


def _jaccard(weights: _Sparse, columns: _Columns, start: int, stop: int, num_gallery: int) -> torch.Tensor:
    """(stop - start, gallery): torchreid's Jaccard distances of queries [start, stop) to the gallery.

    For query i and gallery image j, the sum over images k of min(V[i, k], V[j, k]): over the few k with
    V[i, k] > 0 and, for each, the gallery images with V[j, k] > 0, about ``PAIR_STEP`` pairs at a time.
    """
    shared = torch.zeros((stop - start) * num_gallery)
    entries, counts = weights.entries(torch.arange(start, stop))
    entry_row = torch.repeat_interleave(torch.arange(stop - start), counts)
    pairs = torch.diff(columns.ccol)[weights.col[entries]]
    _, sizes = torch.unique_consecutive(torch.cumsum(pairs, 0) // PAIR_STEP, return_counts=True)
    for part in torch.split(torch.arange(entries.numel()), sizes.tolist()):
        entry, count = entries[part], pairs[part]
        other = _ranges(columns.ccol[weights.col[entry]], count)
        target = torch.repeat_interleave(entry_row[part], count) * num_gallery + columns.row[other]
        shared.index_add_(
            0, target, torch.minimum(torch.repeat_interleave(weights.val[entry], count), columns.val[other])
        )
    shared = shared.view(stop - start, num_gallery)
    return 1 - shared / (2.0 - shared)


def rerank_rows(
    rows: DistanceRows, k1: int, k2: int, lambda_value: float, progress: Callable[[str], None]
) -> Iterator[tuple[int, torch.Tensor]]:
    """torchreid's ``re_ranking`` on ``rows``: ``(first query, re-ranked distances to the gallery)`` blocks.

    ``progress`` is called with where the work is before each step.
    """
    num_query, num_all = rows.num_query, rows.num_all
    width = min(num_all, max(k1 + 1, k2))
    progress("nearest neighbours")
    ranks = _neighbours(rows, width)
    weights = _weights(rows, ranks, k1, progress)
    if k2 != 1:
        progress("query expansion")
        weights = _expand_queries(weights, ranks, min(k2, width), rows)
    columns = _Columns.of(weights, num_query)
    for start, stop in rows.spans(0, num_query):
        progress(f"Jaccard distances of queries {start + 1:,}-{stop:,} of {num_query:,}")
        jaccard = _jaccard(weights, columns, start, stop, num_all - num_query)
        original = rows(start, stop)[:, num_query:]
        yield start, jaccard * (1 - lambda_value) + original * lambda_value
