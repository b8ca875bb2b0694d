"""Scoring protocols: CUHK03's single-shot CMC equal to torchreid's, and re-ranked features scored in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_metrics import make_problem
from test_rerank import distances, features

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.evaluation import metrics, protocol, rerank
from ccsc_plugin.evaluation.cuhk03_metric import CUHK03_SEED


def cuhk03_problem(seed: int, num_q: int, num_g: int, num_ids: int, num_cams: int) -> tuple[np.ndarray, ...]:
    """A random problem whose gallery holds every identity (torchreid's CUHK03 CMC needs at least max_rank)."""
    distmat, q_pids, _, q_camids, g_camids = make_problem(seed, num_q, num_g, num_ids, num_cams)
    g_pids = np.concatenate([np.arange(num_ids), np.random.default_rng(seed).integers(0, num_ids, num_g - num_ids)])
    distmat = distmat - 0.3 * (q_pids[:, None] == g_pids[None, :])  # true matches nearer, as with a trained model
    return distmat, q_pids, g_pids, q_camids, g_camids


def torchreid_cuhk03(problem, seed: int, max_rank: int = 50):
    np.random.seed(seed)  # torchreid draws from numpy's global generator
    return torchreid.metrics.evaluate_rank(*problem, max_rank=max_rank, use_metric_cuhk03=True, use_cython=False)


CUHK03_PROBLEMS = {  # id -> (seed, queries, gallery, identities, cameras, max_rank)
    "two-cameras": (0, 80, 400, 60, 2, 50),
    "five-cameras": (1, 60, 300, 55, 5, 50),
    "few-ranks": (2, 40, 150, 20, 2, 10),
    "many-images-an-identity": (3, 30, 600, 12, 3, 5),
}


@pytest.mark.parametrize(
    ("seed", "num_q", "num_g", "num_ids", "num_cams", "max_rank"), CUHK03_PROBLEMS.values(), ids=CUHK03_PROBLEMS
)
def test_cuhk03_metric_equals_torchreids_with_the_same_seed(seed, num_q, num_g, num_ids, num_cams, max_rank):
    problem = cuhk03_problem(seed, num_q, num_g, num_ids, num_cams)
    cmc, mAP = torchreid_cuhk03(problem, seed + 7, max_rank)
    ours = protocol.score_distances(*problem, max_rank=max_rank, use_metric_cuhk03=True, seed=seed + 7)
    assert ours.cmc.shape == cmc.shape and ours.cmc.dtype == np.float32
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6, rtol=0)
    assert ours.mAP == pytest.approx(mAP, abs=1e-9)
    assert ours.mINP == pytest.approx(metrics.rank_scores(*problem).mINP, abs=1e-12)  # mAP, mINP: whole gallery


def test_cuhk03_metric_draws_are_real_and_reproducible():
    problem = cuhk03_problem(4, 80, 400, 60, 2)
    first = protocol.score_distances(*problem, use_metric_cuhk03=True)
    again = protocol.score_distances(*problem, use_metric_cuhk03=True, seed=CUHK03_SEED)
    other_seed = protocol.score_distances(*problem, use_metric_cuhk03=True, seed=CUHK03_SEED + 1)
    standard = protocol.score_distances(*problem)
    np.testing.assert_array_equal(first.cmc, again.cmc)  # the same numbers every time: not numpy's global state
    assert np.abs(first.cmc - other_seed.cmc).max() > 1e-3  # other draws, another curve
    assert np.abs(first.cmc - standard.cmc).max() > 1e-3 and first.mAP == standard.mAP  # another CMC, same mAP


def test_cuhk03_draws_follow_the_queries_across_blocks():
    problem = cuhk03_problem(5, 50, 300, 55, 3)
    distmat = torch.as_tensor(problem[0])
    blocks = [(start, distmat[start : start + 7]) for start in range(0, 50, 7)]
    whole = protocol.score_distances(*problem, use_metric_cuhk03=True)
    in_blocks = protocol.score_blocks(blocks, *problem[1:], use_metric_cuhk03=True)
    np.testing.assert_array_equal(in_blocks.cmc, whole.cmc)
    assert in_blocks.mAP == pytest.approx(whole.mAP, abs=1e-12) and in_blocks.mINP == pytest.approx(whole.mINP)


def test_cuhk03_curve_past_the_gallery_identities_stays_at_one():
    problem = cuhk03_problem(6, 30, 100, 8, 2)  # 8 identities, a curve of 50
    cmc = protocol.score_distances(*problem, use_metric_cuhk03=True).cmc
    assert cmc.shape == (50,) and np.all(cmc[8:] == 1.0) and np.all(np.diff(cmc) >= 0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_scoring_features_equals_scoring_their_distances(metric):
    qf, gf = features(11, 40, 220, num_ids=25)
    rng = np.random.default_rng(11)
    ids = (rng.integers(0, 25, 40), rng.integers(0, 25, 220), rng.integers(0, 3, 40), rng.integers(0, 3, 220))
    plain = protocol.score_features(qf, gf, *ids, metric=metric, max_rank=20)
    expected = metrics.rank_scores(metrics.distance_matrix(qf, gf, metric), *ids, max_rank=20)
    np.testing.assert_allclose(plain.cmc, expected.cmc, atol=1e-6)
    assert plain.mAP == pytest.approx(expected.mAP) and plain.mINP == pytest.approx(expected.mINP)

    settings = rerank.RerankSettings(k1=10, k2=3, lambda_value=0.3)
    reranked = protocol.score_features(qf, gf, *ids, metric=metric, max_rank=20, rerank=settings)
    re_ranked = rerank.re_ranking(*distances(qf, gf, metric), k1=10, k2=3, lambda_value=0.3)
    expected = metrics.rank_scores(re_ranked, *ids, max_rank=20)
    np.testing.assert_allclose(reranked.cmc, expected.cmc, atol=1e-6)
    assert reranked.mAP == pytest.approx(expected.mAP, abs=1e-6) and reranked.mINP == pytest.approx(expected.mINP)
    assert reranked.mAP != pytest.approx(plain.mAP)  # re-ranking did change the ranking


def test_nothing_to_score_is_an_error():
    with pytest.raises(ValueError, match="no distances were given"):
        protocol.score_blocks([], [1], [1, 2], [0], [1, 1])
