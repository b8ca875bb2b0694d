"""The camera gap: how much more alike a person's images are within one camera than across cameras.

The paper's argument (its Fig. 1 and Table 2) is that images of one person from one camera are already
alike, images of that person from different cameras are not, and that CCSC closes that gap by pulling the
cross-camera pairs together. This module measures it on the test people (query and gallery together):

- ``similarity_statistics``: the mean cosine similarity of same-person same-camera pairs, same-person
  cross-camera pairs and different-person pairs (unordered pairs of two different images), the camera
  ``gap`` = same-camera mean - cross-camera mean, the number of pairs of each kind, and 40-bin histograms
  over [-1, 1] of the three kinds' similarities (counts, so a figure can be drawn from ``result.json``).
- ``rank1_by_camera_pair``: for each ordered pair of cameras (a, b), rank-1 of the queries of camera a
  against the gallery items of camera b only. For a != b this is the usual protocol (the gallery of camera b
  holds no same-camera item to exclude). For a == b the protocol's exclusion (same identity *and* camera)
  would remove every true match, so it is *not* applied there: a -> a is same-camera retrieval, and the
  difference to a -> b shows how much easier it is.

Conventions: a kind of pair that does not occur (e.g. every identity seen by one camera: no cross-camera
pair) has mean ``None`` (``null`` in JSON), and so has the gap when either of its means is ``None``; a camera
pair (a, b) where no query of camera a has its identity in camera b's gallery has rank-1 ``None``.

Cost and memory: the means and pair counts are exact and need no pairwise matrix (sums of the features per
identity and per identity-camera group: O(images x dim)). The histograms count every pair of the test
images when there are at most ``max_images`` of them (4,096 by default: every CUHK03 test set); above that,
the pairs among ``max_images`` images drawn uniformly (without replacement) by a generator of fixed seed, so
a result repeats, the global RNG (training's) is untouched, and each pair is equally likely to be counted:
the histograms then sum to fewer pairs than ``pairs`` says. They are computed by row blocks of the
similarity matrix (about 32 MB each). Per-camera-pair rank-1 computes query x gallery distances one block of
queries at a time, as ``metrics.evaluate_features`` does. Measured on this project's 2-core CPU: 2,000 x 512
features (500 queries, 1,500 gallery items, 200 identities, 4 cameras) take 0.07 s for the statistics and
0.01 s for rank-1 by camera pair, against 0.04 s for ``evaluate_features`` and about 30 s for extracting
those 2,000 features with resnet50_ccsc at 128x64; at Market-1501 size (3,368 x 15,913) the whole report
takes 1.1 s, as long as ``evaluate_features``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ccsc_plugin.evaluation.metrics import DISTANCE_BYTES, as_ids, distance_matrix, rows_per_chunk

BINS = 40  # histogram bins over [-1, 1]
MAX_IMAGES = 4096  # images whose pairs fill the histograms; above it, a fixed-seed sample of this many
SEED = 0  # the histogram sample's generator seed
_BLOCK_BYTES = 32 * 2**20  # working memory of one row block of the histograms' similarity matrix
KINDS = ("same_camera", "cross_camera", "different_person")


def _group_pair_sum(features: torch.Tensor, groups: torch.Tensor) -> tuple[float, int]:
    """Sum of f_i . f_j over unordered pairs i != j within each group, and the number of such pairs."""
    _, inverse = torch.unique(groups, dim=0, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, features.size(1), dtype=torch.float64)
    sums.index_add_(0, inverse, features)
    sizes = torch.bincount(inverse)
    total = (float((sums * sums).sum()) - float((features * features).sum())) / 2
    return total, int((sizes * (sizes - 1) // 2).sum())


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


def _buckets(similarities: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin of each similarity among ``bins`` equal bins over [-1, 1]: [e_k, e_k+1), the last one closed."""
    return ((similarities + 1) * (bins / 2)).floor_().clamp_(0, bins - 1).long()


def _histograms(features, pids, camids, bins: int, max_images: int, generator) -> dict[str, list[int]]:
    """Counts per bin of the pairs' similarities, by kind: every pair of all images, or of ``max_images``
    drawn of them. Row blocks of the similarity matrix (upper triangle) keep memory near ``_BLOCK_BYTES``."""
    if features.size(0) > max_images:
        keep = torch.randperm(features.size(0), generator=generator)[:max_images].sort().values
        features, pids, camids = features[keep], pids[keep], camids[keep]
    num = features.size(0)
    counts = torch.zeros(len(KINDS) * bins, dtype=torch.int64)
    step = rows_per_chunk(num, _BLOCK_BYTES, bytes_per_pair=32)
    for start in range(0, num, step):
        rows, cols = slice(start, start + step), slice(start, None)
        sims = features[rows] @ features[cols].T
        later = torch.arange(start, min(start + step, num))[:, None] < torch.arange(start, num)[None, :]
        same_camera = camids[rows, None] == camids[None, cols]
        kind = torch.where(pids[rows, None] == pids[None, cols], torch.where(same_camera, 0, 1), 2)  # KINDS order
        counts += torch.bincount((kind * bins + _buckets(sims, bins))[later], minlength=len(KINDS) * bins)
    return {name: counts[k * bins : (k + 1) * bins].tolist() for k, name in enumerate(KINDS)}


def histogram_edges(bins: int = BINS) -> list[float]:
    return [round(-1 + 2 * k / bins, 10) for k in range(bins + 1)]


def similarity_statistics(
    features, pids, camids, bins: int = BINS, max_images: int = MAX_IMAGES, seed: int = SEED
) -> dict:
    """Mean cosine similarity of same-camera, cross-camera (same person) and different-person pairs, the gap,
    pair counts and histograms (see the module docstring for the sampling and ``None`` conventions)."""
    features = torch.as_tensor(features)
    if features.dim() != 2:
        raise ValueError(f"features must be 2-D (images, dim), got shape {tuple(features.shape)}.")
    features = F.normalize(features.detach().float().cpu(), dim=1)
    pids = as_ids(pids, "pids", features.size(0), features.device)
    camids = as_ids(camids, "camids", features.size(0), features.device)
    f64 = features.double()
    same_cam_sum, same_cam = _group_pair_sum(f64, torch.stack([pids, camids], 1))
    person_sum, person = _group_pair_sum(f64, pids)
    all_sum, every = _group_pair_sum(f64, torch.zeros_like(pids))
    means = {
        "same_camera": _mean(same_cam_sum, same_cam),
        "cross_camera": _mean(person_sum - same_cam_sum, person - same_cam),
        "different_person": _mean(all_sum - person_sum, every - person),
    }
    counts = {"same_camera": same_cam, "cross_camera": person - same_cam, "different_person": every - person}
    generator = torch.Generator().manual_seed(seed)  # its own generator: training's RNG state is untouched
    hists = {"edges": histogram_edges(bins), **_histograms(features, pids, camids, bins, max_images, generator)}
    gap = (
        None if None in (means["same_camera"], means["cross_camera"]) else means["same_camera"] - means["cross_camera"]
    )
    return {**means, "gap": gap, "pairs": counts, "histogram": hists}


def rank1_by_camera_pair(
    qf, gf, q_pids, g_pids, q_camids, g_camids, metric: str = "euclidean", chunk_size: int | None = None
) -> dict[str, float | None]:
    """Rank-1 for each ordered (query camera a, gallery camera b), as ``{"a->b": fraction or None}``.

    Queries of camera a are ranked against the gallery items of camera b only, with no exclusion: for a != b
    that is the usual protocol; for a == b same-identity same-camera items count as matches (the protocol
    would exclude all of them), which shows how much easier same-camera retrieval is. Queries whose identity
    is absent from camera b's gallery are skipped; a pair where every query is skipped is ``None``. Equal
    distances are ordered by gallery index, as in ``metrics``.
    """
    qf, gf = torch.as_tensor(qf).float(), torch.as_tensor(gf).float()
    device = qf.device
    q_pids, q_camids = as_ids(q_pids, "q_pids", qf.size(0), device), as_ids(q_camids, "q_camids", qf.size(0), device)
    g_pids, g_camids = as_ids(g_pids, "g_pids", gf.size(0), device), as_ids(g_camids, "g_camids", gf.size(0), device)
    g_camids, g_order = torch.sort(g_camids, stable=True)  # cameras in contiguous columns, gallery order within
    gf, g_pids = gf[g_order], g_pids[g_order]
    g_cams, g_sizes = torch.unique_consecutive(g_camids, return_counts=True)
    bounds = torch.cumsum(g_sizes, 0).tolist()
    segments = list(zip([0, *bounds[:-1]], bounds, strict=True))
    has_match = torch.stack([torch.isin(q_pids, g_pids[s:e]) for s, e in segments], 1)  # (queries, cameras)
    hits = torch.zeros_like(has_match, dtype=torch.int64)
    step = chunk_size or rows_per_chunk(gf.size(0), DISTANCE_BYTES, bytes_per_pair=4)
    for start in range(0, qf.size(0), step):
        distances = distance_matrix(qf[start : start + step], gf, metric)
        nearest = torch.stack([distances[:, s:e].argmin(1) + s for s, e in segments], 1)
        hits[start : start + step] = (g_pids[nearest] == q_pids[start : start + step, None]).long()
    q_cams, q_index = torch.unique(q_camids, return_inverse=True)
    valid = torch.zeros(q_cams.numel(), g_cams.numel(), dtype=torch.int64, device=device)
    valid.index_add_(0, q_index, has_match.long())
    found = torch.zeros_like(valid).index_add_(0, q_index, hits * has_match)
    return {
        f"{int(a)}->{int(b)}": (float(found[x, y]) / int(valid[x, y]) if int(valid[x, y]) else None)
        for x, a in enumerate(q_cams.tolist())
        for y, b in enumerate(g_cams.tolist())
    }


def camera_gap_report(qf, gf, q_pids, g_pids, q_camids, g_camids, metric: str = "euclidean") -> dict:
    """The ``camera_gap`` block of ``result.json``: similarity statistics on query and gallery together, and
    rank-1 per camera pair with the evaluation's ``metric`` (on the features as the evaluation scores them)."""
    qf, gf = torch.as_tensor(qf).cpu(), torch.as_tensor(gf).cpu()
    ids = [
        torch.cat([as_ids(q, f"q_{name}", qf.size(0), qf.device), as_ids(g, f"g_{name}", gf.size(0), qf.device)])
        for q, g, name in ((q_pids, g_pids, "pids"), (q_camids, g_camids, "camids"))
    ]
    stats = similarity_statistics(torch.cat([qf, gf]), *ids)
    stats["rank1_by_camera_pair"] = rank1_by_camera_pair(qf, gf, q_pids, g_pids, q_camids, g_camids, metric)
    return stats


def summary_line(report: dict) -> str:
    """One log line: the three means and the gap."""

    def fmt(value: float | None, sign: str = "") -> str:
        return "n/a" if value is None else f"{value:{sign}.3f}"

    return (
        f"Camera gap (mean cosine similarity): same person same camera {fmt(report['same_camera'])}, "
        f"same person cross-camera {fmt(report['cross_camera'])}, different people {fmt(report['different_person'])}, "
        f"gap {fmt(report['gap'], '+')}"
    )
