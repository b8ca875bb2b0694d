"""How queries are scored against a gallery: plain or re-ranked distances, the standard or CUHK03's CMC.

One pass over blocks of query rows feeds the plugin's evaluator (:mod:`.metrics`: CMC, mAP and mINP) and,
with the CUHK03 metric, its single-shot CMC (:mod:`.cuhk03_metric`), which then replaces the CMC, as in
torchreid's ``evaluate_rank(use_metric_cuhk03=True)``. Re-ranking (:mod:`.rerank`) changes the distances.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch

from ccsc_plugin.evaluation import metrics
from ccsc_plugin.evaluation.cuhk03_metric import CUHK03_SEED, SingleShotCMC
from ccsc_plugin.evaluation.rerank import RerankSettings, rerank_blocks


def score_blocks(
    blocks: Iterable[tuple[int, torch.Tensor]],
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    seed: int = CUHK03_SEED,
    on_block: Callable[[int, torch.Tensor], None] | None = None,
) -> metrics.Scores:
    """Score ``(first query, distances)`` blocks that cover the queries in order, on the blocks' device.

    With ``use_metric_cuhk03`` the CMC is CUHK03's single-shot one, drawn from ``seed``. ``on_block(start,
    distances)``, if given, sees each block scored: rank lists drawn there rank the distances scored here.
    """
    num_q, num_g = len(q_pids), len(g_pids)
    cpu = torch.device("cpu")
    q_pids, q_camids = (
        metrics.as_ids(ids, name, num_q, cpu) for ids, name in ((q_pids, "q_pids"), (q_camids, "q_camids"))
    )
    g_pids, g_camids = (
        metrics.as_ids(ids, name, num_g, cpu) for ids, name in ((g_pids, "g_pids"), (g_camids, "g_camids"))
    )
    max_rank = metrics.clip_rank(max_rank, num_g)
    single_shot = SingleShotCMC(g_pids.numpy(), g_camids.numpy(), max_rank, seed) if use_metric_cuhk03 else None
    accumulator = None
    for start, distances in blocks:
        device, stop = distances.device, start + distances.size(0)
        if accumulator is None:
            accumulator = metrics.RankAccumulator(g_pids.to(device), g_camids.to(device), max_rank)
        accumulator.add(distances, q_pids[start:stop].to(device), q_camids[start:stop].to(device))
        if single_shot is not None:
            single_shot.add(distances, q_pids[start:stop].numpy(), q_camids[start:stop].numpy())
        if on_block is not None:
            on_block(start, distances)
    if accumulator is None:
        raise ValueError(f"Nothing to score: no distances were given ({num_q} queries, {num_g} gallery images).")
    scores = accumulator.result()
    return dataclasses.replace(scores, cmc=single_shot.result()) if single_shot is not None else scores


def score_distances(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    use_metric_cuhk03: bool = False,
    seed: int = CUHK03_SEED,
) -> metrics.Scores:
    """torchreid's ``evaluate_rank(distmat, ..., use_metric_cuhk03=...)``, with mINP.

    Its CUHK03 CMC equals torchreid's after ``np.random.seed(seed)`` (see :mod:`.cuhk03_metric`).
    """
    distmat = torch.as_tensor(distmat)
    if distmat.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(distmat.shape)}.")
    return score_blocks([(0, distmat)], q_pids, g_pids, q_camids, g_camids, max_rank, use_metric_cuhk03, seed)


def _quiet(where: str) -> None:
    """No progress to report."""


def score_features(
    qf: torch.Tensor,
    gf: torch.Tensor,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "euclidean",
    max_rank: int = 50,
    rerank: RerankSettings | None = None,
    use_metric_cuhk03: bool = False,
    progress: Callable[[str], None] = _quiet,
    on_block: Callable[[int, torch.Tensor], None] | None = None,
) -> metrics.Scores:
    """Score query features against gallery features, a block of queries at a time.

    ``rerank`` re-ranks the distances first (call ``rerank.check_memory`` before: it refuses what is too much);
    ``progress`` hears where re-ranking is before each of its steps; ``on_block`` sees each block of (plain or
    re-ranked) distances scored.
    """
    qf, gf = metrics.check_features(qf, gf)
    if rerank is None:
        blocks = metrics.distance_blocks(qf, gf, metric)
    else:
        blocks = rerank_blocks(qf, gf, metric, rerank, progress)
    return score_blocks(blocks, q_pids, g_pids, q_camids, g_camids, max_rank, use_metric_cuhk03, on_block=on_block)
