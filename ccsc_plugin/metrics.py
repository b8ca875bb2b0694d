"""Retrieval metrics: CMC and mAP with torchreid's semantics.

``evaluate_rank`` keeps torchreid's signature and return value ``(cmc, mAP)``.
"""

from __future__ import annotations

import numpy as np
import torch

from ._torchreid import torchreid


def _as_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50) -> tuple[np.ndarray, float]:
    """CMC curve (length ``max_rank``) and mAP; same-identity same-camera gallery items are ignored."""
    return torchreid.metrics.evaluate_rank(
        _as_numpy(distmat).astype(np.float32),
        _as_numpy(q_pids),
        _as_numpy(g_pids),
        _as_numpy(q_camids),
        _as_numpy(g_camids),
        max_rank=max_rank,
        use_metric_cuhk03=False,
        use_cython=False,
    )


def distance_matrix(qf: torch.Tensor, gf: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Query x gallery distances with torchreid's metric names (``euclidean`` is squared, as there)."""
    return torchreid.metrics.compute_distance_matrix(qf, gf, metric)


def evaluate_features(
    qf: torch.Tensor,
    gf: torch.Tensor,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "euclidean",
    max_rank: int = 50,
) -> tuple[np.ndarray, float]:
    """Score query features against gallery features: distances, then :func:`evaluate_rank`."""
    distmat = distance_matrix(qf.float(), gf.float(), metric)
    return evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=min(max_rank, gf.size(0)))
