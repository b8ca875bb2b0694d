"""The plugin's evaluator equals torchreid's (Python) evaluate_rank, and follows its tie rule on ties."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.evaluation import metrics


def torchreid_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    return torchreid.metrics.evaluate_rank(
        np.asarray(distmat), q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, use_cython=False
    )


def assert_same(ours, theirs) -> None:
    cmc, mAP = ours
    assert cmc.shape == theirs[0].shape
    np.testing.assert_allclose(cmc, theirs[0], atol=1e-6, rtol=0)
    assert abs(mAP - theirs[1]) <= 1e-6


def make_problem(seed, num_q, num_g, num_ids, num_cams, missing_ids=0):
    """Random ids/cameras and continuous (tie-free) float64 distances; ``missing_ids`` query ids lack a match."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids + missing_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    distmat = rng.random((num_q, num_g))
    # identity structure: true matches tend to be nearer, as with a trained model
    distmat -= 0.5 * (q_pids[:, None] == g_pids[None, :]) * rng.random((num_q, num_g))
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize(
    "seed, num_q, num_g, num_ids, num_cams, missing_ids",
    [
        (0, 60, 400, 30, 6, 0),  # Market-like: 6 cameras
        (1, 40, 300, 20, 4, 10),  # some query identities absent from the gallery: skipped
        (2, 50, 120, 50, 2, 0),  # CUHK03-like: two cameras, few images per identity
        (3, 30, 700, 5, 3, 0),  # many true matches per query
    ],
)
def test_equals_torchreid_on_random_tie_free_problems(seed, num_q, num_g, num_ids, num_cams, missing_ids):
    problem = make_problem(seed, num_q, num_g, num_ids, num_cams, missing_ids)
    assert_same(metrics.evaluate_rank(*problem), torchreid_rank(*problem))
    assert_same(metrics.evaluate_rank(*problem, max_rank=5), torchreid_rank(*problem, max_rank=5))


def test_equals_torchreid_on_two_camera_pairs():
    """CUHK03 protocol: every identity seen once per camera, the query in one camera and the match in the other."""
    rng = np.random.default_rng(4)
    ids = np.arange(40)
    q_pids, q_camids = ids, np.zeros(40, dtype=int)
    g_pids, g_camids = np.concatenate([ids, ids[:20]]), np.concatenate([np.ones(40, int), np.zeros(20, int)])
    distmat = rng.random((40, 60))
    assert_same(
        metrics.evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids),
        torchreid_rank(distmat, q_pids, g_pids, q_camids, g_camids),
    )


def test_equals_torchreid_on_real_cuhk03_labels(shared_cuhk03):
    """Identities and cameras of the real CUHK03 crops: camera 0 queries against camera 1 and the rest."""
    with open(shared_cuhk03 / "labels.csv") as handle:
        rows = [(int(row["pid"]), int(row["camid"])) for row in csv.DictReader(handle)]
    pids, camids = np.array(rows).T
    query = np.zeros(len(pids), dtype=bool)
    query[np.unique(pids, return_index=True)[1]] = True  # first image of each identity is its query
    distmat = np.random.default_rng(5).random((query.sum(), (~query).sum()))
    args = (distmat, pids[query], pids[~query], camids[query], camids[~query])
    assert_same(metrics.evaluate_rank(*args), torchreid_rank(*args))


def test_single_gallery_item_and_max_rank_beyond_gallery():
    distmat = np.array([[0.3], [0.7], [0.1]])
    args = (distmat, np.array([1, 1, 2]), np.array([1]), np.array([0, 1, 0]), np.array([1]))
    cmc, mAP = metrics.evaluate_rank(*args, max_rank=50)
    assert cmc.shape == (1,)  # as torchreid: never longer than the gallery
    assert_same((cmc, mAP), torchreid_rank(*args, max_rank=50))
    assert cmc[0] == 1.0 and mAP == 1.0  # query 2 has no match and is skipped

    problem = make_problem(6, 20, 8, 4, 3)
    q_pids, g_camids = problem[1], problem[4]
    problem = (problem[0], q_pids, problem[2], np.full(20, 9), g_camids)  # no gallery item shares a camera
    assert_same(metrics.evaluate_rank(*problem, max_rank=50), torchreid_rank(*problem, max_rank=50))


def test_ignored_items_do_not_take_a_rank_and_unmatched_queries_are_skipped():
    # gallery: other id, other id, the match (other camera), same id in the query's camera (ignored, nearest)
    distmat = np.array([[0.1, 0.2, 0.3, 0.05], [0.1, 0.2, 0.3, 0.05]])
    g_pids, g_camids = np.array([5, 7, 6, 6]), np.array([0, 1, 1, 0])
    # query 0 (id 5, camera 0): its only same-id item shares its camera -> no valid match -> skipped
    cmc, mAP = metrics.evaluate_rank(distmat, np.array([5, 6]), g_pids, np.array([0, 0]), g_camids)
    np.testing.assert_allclose(cmc, [0.0, 0.0, 1.0, 1.0])  # the match is third among the valid items
    assert mAP == pytest.approx(1 / 3)


def test_ties_are_ordered_by_gallery_index():
    """On quantised distances the result equals torchreid's once ties are broken by gallery index."""
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(7, 50, 300, 15, 4)
    tied = np.round(distmat * 4) / 4  # five distinct values: ties everywhere
    by_index = tied + np.arange(300)[None, :] * 1e-9  # same order, ties broken by gallery index
    ids = (q_pids, g_pids, q_camids, g_camids)
    assert_same(metrics.evaluate_rank(tied, *ids), torchreid_rank(by_index, *ids))
    assert_same(metrics.evaluate_rank(tied.astype(np.float32), *ids, chunk_size=3), torchreid_rank(by_index, *ids))


def test_all_distances_equal():
    # every item ties: the ranking is the gallery order, so the match at index 2 is third
    cmc, mAP = metrics.evaluate_rank(np.zeros((1, 4)), [1], [2, 3, 1, 1], [0], [1, 1, 1, 0])
    np.testing.assert_allclose(cmc, [0.0, 0.0, 1.0, 1.0])
    assert mAP == pytest.approx(1 / 3)
    cmc, mAP = metrics.evaluate_rank(-np.zeros((1, 4)), [1], [1, 3, 1, 2], [0], [1, 1, 1, 0])
    np.testing.assert_allclose(cmc, [1.0, 1.0, 1.0, 1.0])
    assert mAP == pytest.approx((1 + 2 / 3) / 2)


def test_numpy_and_torch_inputs_agree():
    problem = make_problem(8, 30, 200, 12, 4)
    as_numpy = metrics.evaluate_rank(*problem)
    as_torch = metrics.evaluate_rank(*(torch.as_tensor(array) for array in problem))
    as_float32 = metrics.evaluate_rank(torch.as_tensor(problem[0], dtype=torch.float32), *problem[1:])
    assert_same(as_torch, as_numpy)
    assert_same(as_float32, torchreid_rank(problem[0].astype(np.float32), *problem[1:]))


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunking_does_not_change_the_result(chunk_size):
    problem = make_problem(9, 40, 250, 10, 5, missing_ids=3)
    assert_same(metrics.evaluate_rank(*problem, chunk_size=chunk_size), metrics.evaluate_rank(*problem))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_feature_entry_point_equals_distance_matrix_route(metric):
    rng = np.random.default_rng(10)
    q_pids, g_pids = rng.integers(0, 12, 45), rng.integers(0, 12, 230)
    q_camids, g_camids = rng.integers(0, 3, 45), rng.integers(0, 3, 230)
    centres = torch.randn(12, 32)
    qf = centres[q_pids] + torch.randn(45, 32)
    gf = centres[g_pids] + torch.randn(230, 32)
    ids = (q_pids, g_pids, q_camids, g_camids)
    whole = metrics.distance_matrix(qf, gf, metric).numpy()
    expected = torchreid_rank(whole, *ids, max_rank=20)
    for chunk_size in (None, 4, 45):
        ours = metrics.evaluate_features(qf, gf, *ids, metric=metric, max_rank=20, chunk_size=chunk_size)
        assert_same(ours, expected)


@pytest.mark.parametrize(
    "distmat, ids, message",
    [
        (np.full((2, 3), np.nan), ([1, 2], [1, 2, 3], [0, 0], [1, 1, 1]), "NaN or inf"),
        (np.zeros((2, 3)), ([1, 2], [3, 4, 5], [0, 0], [1, 1, 1]), "No query has a valid match"),
        (np.zeros((2, 3)), ([1, 2, 3], [1, 2, 3], [0, 0], [1, 1, 1]), "q_pids has 3 entries"),
        (np.zeros(3), ([1], [1, 2, 3], [0], [1, 1, 1]), "must be 2-D"),
    ],
)
def test_bad_input_is_named(distmat, ids, message):
    with pytest.raises(ValueError, match=message):
        metrics.evaluate_rank(distmat, *ids)


def test_max_rank_must_be_positive():
    with pytest.raises(ValueError, match="max_rank"):
        metrics.evaluate_rank(np.zeros((1, 2)), [1], [1, 2], [0], [1, 1], max_rank=0)


def minp_by_definition(distmat, q_pids, g_pids, q_camids, g_camids) -> float:
    """Ye et al.'s mINP, a query at a time as in their code: true matches / (position of the last one + 1), among
    the valid gallery items (same identity and camera removed), ties by gallery index; averaged over queries."""
    inverse_penalties = []
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        valid = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        matches = (g_pids[order] == q_pids[q])[valid]
        if matches.any():
            inverse_penalties.append(matches.sum() / (np.flatnonzero(matches).max() + 1.0))
    return float(np.mean(inverse_penalties))


@pytest.mark.parametrize(
    ("seed", "num_q", "num_g", "num_ids", "num_cams", "missing_ids", "ties"),
    [
        (11, 60, 400, 30, 6, 0, False),
        (12, 40, 300, 20, 4, 10, False),  # queries without a match are skipped
        (13, 30, 700, 5, 3, 0, False),  # many true matches per query: the last one is far down
        (14, 50, 120, 50, 2, 0, False),  # a match or two per query
        (15, 50, 300, 15, 4, 0, True),  # five distinct distances: ties everywhere
    ],
)
def test_minp_follows_its_definition_on_random_problems(seed, num_q, num_g, num_ids, num_cams, missing_ids, ties):
    distmat, *ids = make_problem(seed, num_q, num_g, num_ids, num_cams, missing_ids)
    if ties:
        distmat = np.round(distmat * 4) / 4
    expected = minp_by_definition(distmat, *ids)
    for chunk_size in (None, 3):
        assert metrics.rank_scores(distmat, *ids, chunk_size=chunk_size).mINP == pytest.approx(expected, abs=1e-12)


def test_minp_is_the_matches_over_the_rank_of_the_hardest_one():
    # valid items by distance: match (0.1), other (0.2), other (0.3), match (0.4); the same-camera item is ignored
    distmat = np.array([[0.4, 0.2, 0.1, 0.3, 0.05]])
    g_pids, g_camids = np.array([7, 5, 7, 6, 7]), np.array([1, 1, 1, 1, 0])
    scores = metrics.rank_scores(distmat, [7], g_pids, [0], g_camids)
    assert scores.mINP == pytest.approx(2 / 4) and scores.mAP == pytest.approx((1 / 1 + 2 / 4) / 2)
    cmc, mAP = metrics.evaluate_rank(distmat, [7], g_pids, [0], g_camids)  # torchreid's (cmc, mAP), as before
    np.testing.assert_array_equal(cmc, scores.cmc)
    assert mAP == scores.mAP
