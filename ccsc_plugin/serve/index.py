"""A FAISS gallery index for retrieval over large galleries, with torchreid's distances.

``GalleryIndex()`` is exact (``IndexFlatL2``): the same neighbours and distances as torchreid's
brute-force ``compute_distance_matrix`` (squared euclidean, or 1 - cosine similarity), ties broken by
gallery order. ``kind="ivf"`` (inverted lists) and ``kind="hnsw"`` (graph) trade exactness for speed on
millions of images; ``benchmarks/faiss_recall.py`` reports their recall@k against the exact index.

    index = GalleryIndex()
    index.add(gallery_features, labels=gallery_paths)
    hits = index.search(query_features, k=10)   # hits.distances, hits.indices, hits.labels
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import torch

from ccsc_plugin.evaluation.metrics import DIST_METRICS

KINDS = ("exact", "ivf", "hnsw")


@dataclass
class SearchResult:
    """``k`` nearest gallery items per query, nearest first.

    ``distances`` (Q x k, float32) are squared euclidean or 1 - cosine, as torchreid's; ``indices``
    (Q x k, int64) are positions in the order items were added; ``labels`` are the matching labels.
    """

    distances: np.ndarray
    indices: np.ndarray
    labels: list[list[Any]]


def _as_matrix(features: torch.Tensor | np.ndarray | Sequence, dim: int, what: str) -> np.ndarray:
    """Features as a C-contiguous float32 (N x dim) array; a clear error for any other shape."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{what} must be an N x {dim} matrix of features, got shape {tuple(array.shape)}.")
    return array


class GalleryIndex:
    """Nearest-neighbour search over gallery features with FAISS.

    Args:
        dim: feature size (512 for ``resnet50_ccsc``).
        kind: ``"exact"`` (default, identical to brute force), ``"ivf"`` or ``"hnsw"`` (approximate).
        metric: ``"euclidean"`` (squared L2, torchreid's default) or ``"cosine"`` (1 - cosine similarity).
        nlist, nprobe: IVF cells, and cells visited per query (more = better recall, slower).
        hnsw_m, ef_search: HNSW links per node, and candidates explored per query.
    """

    def __init__(
        self,
        dim: int = 512,
        kind: str = "exact",
        metric: str = "euclidean",
        nlist: int = 256,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}.")
        if metric not in DIST_METRICS:
            raise ValueError(f"metric must be one of {', '.join(DIST_METRICS)}; got {metric!r}.")
        self.dim, self.kind, self.metric, self.nlist = dim, kind, metric, nlist
        faiss_metric = faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        if kind == "exact":
            self.index = faiss.IndexFlat(dim, faiss_metric)
        elif kind == "ivf":
            self._quantizer = faiss.IndexFlat(dim, faiss_metric)  # kept alive: the IVF index points to it
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss_metric)
            self.index.nprobe = nprobe
        else:
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss_metric)
            self.index.hnsw.efSearch = ef_search
        self.labels: list[Any] = []

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _prepare(self, features, what: str) -> np.ndarray:
        array = _as_matrix(features, self.dim, what)
        if self.metric == "cosine":
            array = array.copy()
            faiss.normalize_L2(array)
        return array

    def add(self, features: torch.Tensor | np.ndarray, labels: Sequence[Any] | None = None) -> None:
        """Append gallery features (N x dim) and their labels (pids, paths...; default: their positions).

        An IVF index is trained on the first batch added, which needs at least ``nlist`` features.
        """
        array = self._prepare(features, "gallery features")
        labels = list(range(len(self), len(self) + len(array))) if labels is None else list(labels)
        if len(labels) != len(array):
            raise ValueError(f"{len(array)} gallery features but {len(labels)} labels: give one label per feature.")
        if not self.index.is_trained:
            if len(array) < self.nlist:
                raise ValueError(
                    f"An IVF index with nlist={self.nlist} cells needs at least {self.nlist} features to train on; "
                    f"got {len(array)}. Add the gallery in one call, lower nlist, or use kind='exact'."
                )
            self.index.train(array)
        self.index.add(array)
        self.labels.extend(labels)

    def search(self, queries: torch.Tensor | np.ndarray, k: int = 10) -> SearchResult:
        """The ``k`` nearest gallery items of each query (fewer if the gallery is smaller)."""
        if len(self) == 0:
            raise ValueError("The gallery index is empty: add gallery features with index.add(features) first.")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        array = self._prepare(queries, "query features")
        scores, indices = self.index.search(array, min(k, len(self)))
        distances = scores if self.metric == "euclidean" else 1.0 - scores
        order = np.lexsort((indices, distances), axis=-1)  # nearest first, ties by gallery position
        distances = np.take_along_axis(distances, order, axis=1).astype(np.float32)
        indices = np.take_along_axis(indices, order, axis=1).astype(np.int64)
        labels = [[self.labels[i] if i >= 0 else None for i in row] for row in indices]
        return SearchResult(distances=distances, indices=indices, labels=labels)
