"""Retrieval metrics: CMC, mAP and mINP with torchreid's semantics, without sorting the gallery.

``evaluate_rank`` keeps torchreid's signature and return value ``(cmc, mAP)``: gallery items with the
query's identity *and* camera are ignored, and queries with no valid match are skipped.
:class:`RankAccumulator` also gives mINP (Ye et al., "Deep Learning for Person Re-identification: A Survey
and Outlook"): per query, its true matches over the rank of the last (hardest) one, averaged over queries.

Neither metric needs the full ranking. The rank of a true match is one plus the number of valid gallery
items before it, so for each query only its few true matches are sorted. Every gallery item then gets a
bucket from a monotone map of its distance (a few element-wise passes and one ``bincount``): items in a
lower bucket than a match come before it, items in a higher one after it, and only the few items that share
a match's bucket are compared exactly. That is O(gallery) per query instead of the O(gallery log gallery)
argsort of torchreid, vectorised over chunks of queries.

Tie rule: equal distances are ordered by gallery index (the order of a stable sort). torchreid's
unstable ``argsort`` leaves that order to chance, so on ties only this rule is reproducible.

``evaluate_features`` computes distances one block of queries at a time, so memory stays bounded at MSMT17
scale (11,659 x 82,161), where a full distance matrix and its argsort need more than 10 GB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ccsc_plugin._torchreid import torchreid

DIST_METRICS = ("euclidean", "cosine")  # torchreid's compute_distance_matrix metrics; every valid test.dist_metric
DISTANCE_BYTES = 256 * 2**20  # distance block of evaluate_features (query rows x gallery, float32)
SCORE_BYTES = 16 * 2**20  # working set of one scoring step: small enough to stay in cache
BUCKETS = 4096  # distance buckets per query between its nearest and farthest true match
_BYTES_PER_PAIR = 24  # a distance, its float bucket, its int64 key and a flag per (query, gallery) pair
_EXACT_PAIRS = 2**22  # (gallery item, true match) exact comparisons per step


@dataclass(frozen=True)
class Scores:
    """What one evaluation measured: the CMC curve (``cmc[r - 1]`` is rank-r), mAP and mINP, as fractions."""

    cmc: np.ndarray
    mAP: float
    mINP: float


def _as_tensor(array, name: str) -> torch.Tensor:
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {tensor.dtype}.")
    return tensor


def as_ids(array, name: str, length: int, device: torch.device) -> torch.Tensor:
    """``array`` (numpy or torch) as int64 ids on ``device``; wrong length or non-integer ids are errors."""
    ids = _as_tensor(array, name).reshape(-1)
    if ids.numel() != length:
        raise ValueError(f"{name} has {ids.numel()} entries but the distance matrix implies {length}.")
    if ids.is_floating_point():
        raise TypeError(f"{name} must hold integer ids, got dtype {ids.dtype}.")
    return ids.to(device=device, dtype=torch.int64)


def rows_per_chunk(num_gallery: int, chunk_bytes: int, bytes_per_pair: int = _BYTES_PER_PAIR) -> int:
    """Query rows per chunk so that one chunk's working memory stays near ``chunk_bytes``."""
    return max(1, chunk_bytes // (bytes_per_pair * max(num_gallery, 1)))


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Score on one CPU thread: the steps are small and cache-bound, so thread hand-offs cost more than
    they save (much more when other processes share the cores)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class RankAccumulator:
    """Sums first-match ranks (CMC), average precisions (mAP) and inverse negative penalties (mINP) over
    blocks of queries.

    A query's same-identity gallery items are few, so they are gathered sparsely (from the gallery
    sorted by identity) instead of comparing the identities of every pair.
    """

    def __init__(self, g_pids: torch.Tensor, g_camids: torch.Tensor, max_rank: int, rows: int | None = None) -> None:
        self.g_camids, self.max_rank = g_camids, max_rank
        self.g_by_pid = torch.sort(g_pids, stable=True)  # identities sorted; gallery order within each
        self.rows = min(rows or rows_per_chunk(g_pids.numel(), SCORE_BYTES), 2**23 // (BUCKETS + 2))
        self.first_hits = torch.zeros(max_rank + 1, dtype=torch.int64)
        self.ap_sum = 0.0
        self.inp_sum = 0.0
        self.num_valid = 0

    def add(self, distances: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        """Score a block of queries: ``distances`` is (queries, gallery), ids are on its device."""
        if not torch.isfinite(distances.sum()) and not torch.isfinite(distances).all():  # one pass when clean
            raise ValueError("The distance matrix holds NaN or inf; check the features for NaN or inf values.")
        with _one_thread(distances.device):
            for start in range(0, distances.size(0), self.rows):
                stop = start + self.rows
                self._add_chunk(distances[start:stop], q_pids[start:stop], q_camids[start:stop])

    def _same_identity(self, q_pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(queries, K) gallery indices with each query's identity in gallery order, and which slots are real."""
        sorted_pids, order = self.g_by_pid
        lo = torch.searchsorted(sorted_pids, q_pids)
        count = torch.searchsorted(sorted_pids, q_pids, right=True) - lo
        slots = torch.arange(max(int(count.max()), 1), device=q_pids.device)
        real = slots[None, :] < count[:, None]
        return order[(lo[:, None] + slots[None, :]).clamp_max(order.numel() - 1)], real

    def _add_chunk(self, distances: torch.Tensor, q_pids: torch.Tensor, q_camids: torch.Tensor) -> None:
        num_q, num_g = distances.shape
        device = distances.device
        same_index, same_real = self._same_identity(q_pids)
        match = same_real & (self.g_camids[same_index] != q_camids[:, None])  # same identity, other camera
        num_match = match.sum(1)
        valid = num_match > 0  # queries without a true match are skipped, as in torchreid
        if not bool(valid.any()):
            return
        width = int(num_match.max())
        # true matches first (gallery order), then sorted by distance (stable: ties keep gallery order)
        first = torch.sort((~match).to(torch.uint8), dim=1, stable=True).indices[:, :width]
        match_index = same_index.gather(1, first)
        in_row = torch.arange(width, device=device)[None, :] < num_match[:, None]
        match_dist = distances.gather(1, match_index).masked_fill(~in_row, float("inf"))
        match_dist, order = torch.sort(match_dist, dim=1, stable=True)
        match_index = match_index.gather(1, order)

        before = self._count_before(distances, match_dist, match_index, in_row, num_match)
        # take back out the same-identity items (other matches, ignored same-camera ones) before each match
        same_dist = distances.gather(1, same_index)[:, :, None]
        same_before = _precedes(same_dist, same_index[:, :, None], match_dist[:, None], match_index[:, None])
        before -= (same_before & same_real[:, :, None]).sum(1)
        # rank (1-based) of the j-th true match = other identities before it + j + 1
        positions = torch.arange(1, width + 1, device=device)
        ranks = (before + positions).to(torch.float64)
        precision = positions.to(torch.float64) / ranks
        self.ap_sum += float((precision.where(in_row, 0).sum(1)[valid] / num_match[valid]).sum())
        last_rank = ranks.gather(1, (num_match - 1).clamp_min(0)[:, None])[:, 0]  # the hardest true match
        self.inp_sum += float((num_match[valid] / last_rank[valid]).sum())
        first_rank = ranks[valid, 0].to(torch.int64).clamp_max(self.max_rank + 1) - 1
        self.first_hits += torch.bincount(first_rank.cpu(), minlength=self.max_rank + 1)
        self.num_valid += int(valid.sum())

    @staticmethod
    def _count_before(distances, match_dist, match_index, in_row, num_match) -> torch.Tensor:
        """(queries, width): how many gallery items (any identity) come before each true match."""
        num_q, num_g = distances.shape
        device = distances.device
        span_rows = BUCKETS + 2
        # a monotone map from distance to bucket: nearest match -> 0, farthest -> BUCKETS - 1
        lo = torch.where(num_match > 0, match_dist[:, 0], 0)
        hi = match_dist.gather(1, (num_match - 1).clamp_min(0)[:, None])[:, 0].where(num_match > 0, 1)
        span = (hi - lo).where(hi > lo, lo.abs() * 2**-10).clamp_min(1e-30)
        keys = distances - lo[:, None]
        keys.mul_(((BUCKETS - 1) / span)[:, None]).clamp_(-1, BUCKETS)
        row_base = torch.arange(num_q, device=device) * span_rows
        keys.add_((row_base + 1).to(keys.dtype)[:, None])  # exact integers: rows never share a key
        keys = keys.to(torch.int64)
        # items in a lower bucket than a match come before it
        hist = torch.bincount(keys.view(-1), minlength=num_q * span_rows).view(num_q, span_rows)
        below = torch.cumsum(hist, 1) - hist
        match_key = keys.gather(1, match_index) - row_base[:, None]
        before = below.gather(1, match_key)
        # items sharing a match's bucket are compared exactly
        shared = torch.zeros(num_q, span_rows, dtype=torch.bool, device=device)
        match_rows = torch.arange(num_q, device=device)[:, None].expand_as(match_key)
        shared[match_rows[in_row], match_key[in_row]] = True
        rows, cols = torch.take(shared.view(-1), keys).nonzero(as_tuple=True)
        step = max(1, _EXACT_PAIRS // match_dist.size(1))
        for start in range(0, rows.numel(), step):
            r, c = rows[start : start + step], cols[start : start + step]
            same_bucket = (match_key[r] == (keys[r, c] - row_base[r])[:, None]) & in_row[r]
            earlier = _precedes(distances[r, c, None], c[:, None], match_dist[r], match_index[r]) & same_bucket
            before.index_add_(0, r, earlier.to(before.dtype))
        return before

    def result(self) -> Scores:
        """The scores of every query added so far; an error when none had a valid match."""
        if self.num_valid == 0:
            raise ValueError(
                "No query has a valid match in the gallery (same identity, another camera): "
                "check that query and gallery share identities and that camera ids are right."
            )
        cmc = torch.cumsum(self.first_hits[: self.max_rank], 0).to(torch.float64) / self.num_valid
        return Scores(cmc.numpy().astype(np.float32), self.ap_sum / self.num_valid, self.inp_sum / self.num_valid)


def _precedes(dist, index, other_dist, other_index) -> torch.Tensor:
    """Whether (dist, index) ranks before (other_dist, other_index): the tie rule, broadcast."""
    return (dist < other_dist) | ((dist == other_dist) & (index < other_index))


def clip_rank(max_rank: int, num_gallery: int) -> int:
    """The CMC curve's length: ``max_rank``, never longer than the gallery (as torchreid); < 1 is an error."""
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}.")
    return min(max_rank, num_gallery)  # as torchreid: the CMC curve is never longer than the gallery


def evaluate_rank(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, chunk_size: int | None = None
) -> tuple[np.ndarray, float]:
    """CMC curve (length ``min(max_rank, num_gallery)``, float32) and mAP, as torchreid's ``evaluate_rank``.

    Accepts numpy arrays or torch tensors (a CUDA ``distmat`` is scored on its device). Equal distances are
    ordered by gallery index. ``chunk_size`` (queries per scoring step) defaults to about ``SCORE_BYTES``
    of work; it changes speed, never the result. :func:`rank_scores` adds mINP.
    """
    scores = rank_scores(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, chunk_size)
    return scores.cmc, scores.mAP


def rank_scores(
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, chunk_size: int | None = None
) -> Scores:
    """:func:`evaluate_rank`'s CMC and mAP, and mINP."""
    distmat = _as_tensor(distmat, "distmat")
    if distmat.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(distmat.shape)}.")
    if distmat.dtype not in (torch.float32, torch.float64):
        distmat = distmat.float()
    num_q, num_g = distmat.shape
    device = distmat.device
    q_pids, q_camids = as_ids(q_pids, "q_pids", num_q, device), as_ids(q_camids, "q_camids", num_q, device)
    g_pids, g_camids = as_ids(g_pids, "g_pids", num_g, device), as_ids(g_camids, "g_camids", num_g, device)
    acc = RankAccumulator(g_pids, g_camids, clip_rank(max_rank, num_g), rows=chunk_size)
    acc.add(distmat, q_pids, q_camids)
    return acc.result()


def distance_matrix(qf: torch.Tensor, gf: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Query x gallery distances with torchreid's metric names (``euclidean`` is squared, as there)."""
    if metric not in DIST_METRICS:
        raise ValueError(f"metric must be one of {', '.join(DIST_METRICS)}; got {metric!r}.")
    return torchreid.metrics.compute_distance_matrix(qf, gf, metric)


def check_features(qf, gf) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and gallery features as float32 tensors; anything but two 2-D sets of one width is an error."""
    qf, gf = torch.as_tensor(qf), torch.as_tensor(gf)
    if qf.dim() != 2 or gf.dim() != 2 or qf.size(1) != gf.size(1):
        raise ValueError(
            f"Features must be 2-D with the same width, got query {tuple(qf.shape)} and gallery {tuple(gf.shape)}."
        )
    return qf.float(), gf.float()


def distance_blocks(
    qf: torch.Tensor, gf: torch.Tensor, metric: str = "euclidean", rows: int | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first query, distances)`` for blocks of ``rows`` queries (default: about ``DISTANCE_BYTES`` each)."""
    step = rows or rows_per_chunk(gf.size(0), DISTANCE_BYTES, bytes_per_pair=4)
    starts = range(0, qf.size(0), step)
    for start in tqdm(starts, desc="ranking", unit="block", leave=False, disable=len(starts) < 4):
        yield start, distance_matrix(qf[start : start + step], gf, metric)


def evaluate_features(
    qf: torch.Tensor,
    gf: torch.Tensor,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "euclidean",
    max_rank: int = 50,
    chunk_size: int | None = None,
    on_block: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Score query features against gallery features, one block of queries at a time.

    Equal to ``evaluate_rank(distance_matrix(qf, gf, metric), ...)`` but never holds the full distance
    matrix: peak memory is the features plus a block of about ``DISTANCE_BYTES`` (``chunk_size`` query rows
    if given) and the scoring steps' ``SCORE_BYTES``. ``on_block(start, distances)`` sees each block scored.
    ``protocol.score_features`` adds mINP, re-ranking and the CUHK03 metric.
    """
    qf, gf = check_features(qf, gf)
    num_q, num_g = qf.size(0), gf.size(0)
    q_pids, q_camids = as_ids(q_pids, "q_pids", num_q, qf.device), as_ids(q_camids, "q_camids", num_q, qf.device)
    g_pids, g_camids = as_ids(g_pids, "g_pids", num_g, qf.device), as_ids(g_camids, "g_camids", num_g, qf.device)
    acc = RankAccumulator(g_pids, g_camids, clip_rank(max_rank, num_g))
    for start, distances in distance_blocks(qf, gf, metric, chunk_size):
        stop = start + distances.size(0)
        acc.add(distances, q_pids[start:stop], q_camids[start:stop])
        if on_block is not None:
            on_block(start, distances)
    scores = acc.result()
    return scores.cmc, scores.mAP
