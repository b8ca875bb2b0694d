"""The FAISS gallery index: exact search equals torchreid's brute force; approximate kinds find most."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.serve.index import GalleryIndex


def brute_force(queries: torch.Tensor, gallery: torch.Tensor, k: int, metric: str):
    """torchreid's distance matrix, sorted with ties by gallery position (a stable sort)."""
    distmat = torchreid.metrics.compute_distance_matrix(queries, gallery, metric=metric).numpy()
    order = np.argsort(distmat, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distmat, order, axis=1), order


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("num_queries", [5, 40])  # FAISS switches to BLAS from 20 queries on
def test_exact_index_matches_torchreid_brute_force(metric, num_queries):
    generator = torch.Generator().manual_seed(0)
    gallery = torch.randn(600, 512, generator=generator)
    queries = torch.randn(num_queries, 512, generator=generator)
    index = GalleryIndex(metric=metric)
    index.add(gallery[:250])
    index.add(gallery[250:])  # added in two calls: positions continue
    hits = index.search(queries, k=20)
    distances, indices = brute_force(queries, gallery, 20, metric)
    np.testing.assert_array_equal(hits.indices, indices)
    np.testing.assert_allclose(hits.distances, distances, rtol=1e-5, atol=1e-4)
    assert hits.labels == indices.tolist()


def test_ties_are_broken_by_gallery_position_and_labels_follow():
    gallery = np.zeros((8, 16), dtype=np.float32)
    gallery[[1, 4, 6]] = 1.0  # three identical items at distance 16 from the query, five at distance 0
    index = GalleryIndex(dim=16)
    index.add(gallery, labels=[f"img{i}.jpg" for i in range(8)])
    hits = index.search(np.zeros((1, 16)), k=7)
    assert hits.indices.tolist() == [[0, 2, 3, 5, 7, 1, 4]]
    assert hits.distances.tolist() == [[0, 0, 0, 0, 0, 16, 16]]
    assert hits.labels[0][-2:] == ["img1.jpg", "img4.jpg"]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_find_most_true_neighbours(kind):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(100, 64)).astype(np.float32) * 4
    gallery = (centres[rng.integers(0, 100, 3000)] + rng.normal(size=(3000, 64))).astype(np.float32)
    queries = (centres[rng.integers(0, 100, 50)] + rng.normal(size=(50, 64))).astype(np.float32)
    exact, approximate = GalleryIndex(dim=64), GalleryIndex(dim=64, kind=kind, nlist=64, nprobe=8)
    for index in (exact, approximate):
        index.add(gallery)
    truth, found = exact.search(queries, k=10).indices, approximate.search(queries, k=10).indices
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall > 0.9


def test_bad_input_is_named():
    index = GalleryIndex(dim=8)
    with pytest.raises(ValueError, match="empty"):
        index.search(np.zeros((1, 8)), k=1)
    with pytest.raises(ValueError, match="N x 8 matrix"):
        index.add(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="one label per feature"):
        index.add(np.zeros((3, 8)), labels=["a"])
    with pytest.raises(ValueError, match="at least 256 features"):
        GalleryIndex(dim=8, kind="ivf").add(np.zeros((10, 8)))
    with pytest.raises(ValueError, match="kind must be one of"):
        GalleryIndex(kind="lsh")
