"""k-reciprocal re-ranking: equal to torchreid's ``re_ranking``, within the memory it announces, refused above it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ccsc_plugin._torchreid import submodule, torchreid
from ccsc_plugin.errors import RecipeError
from ccsc_plugin.evaluation import k_reciprocal, rerank

torchreid_re_ranking = submodule("utils.rerank").re_ranking


def features(seed: int, num_q: int, num_g: int, num_ids: int = 30, dim: int = 16) -> tuple[torch.Tensor, ...]:
    """Query and gallery features around one centre per identity (continuous: no tied distances)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=generator)
    qf = centres[torch.randint(0, num_ids, (num_q,), generator=generator)] + torch.randn(
        num_q, dim, generator=generator
    )
    gf = centres[torch.randint(0, num_ids, (num_g,), generator=generator)] + torch.randn(
        num_g, dim, generator=generator
    )
    return qf, gf


def distances(qf: torch.Tensor, gf: torch.Tensor, metric: str) -> tuple:
    """What torchreid's ``Engine._evaluate`` hands ``re_ranking``: q-g as numpy, q-q and g-g as tensors."""
    compute = torchreid.metrics.compute_distance_matrix
    return compute(qf, gf, metric).numpy(), compute(qf, qf, metric), compute(gf, gf, metric)


PROBLEMS = {  # id -> (seed, queries, gallery, k1, k2, lambda, metric)
    "paper-defaults": (0, 40, 200, 20, 6, 0.3, "euclidean"),
    "cosine": (1, 30, 150, 20, 6, 0.3, "cosine"),
    "no-query-expansion": (2, 30, 150, 7, 1, 0.3, "euclidean"),
    "jaccard-only": (3, 50, 120, 5, 3, 0.0, "euclidean"),
    "original-only": (4, 25, 90, 9, 4, 1.0, "cosine"),
    "k1-odd-half-rounds-to-even": (5, 30, 170, 5, 2, 0.5, "euclidean"),  # k1/2 = 2.5 -> 2, as np.around
    "k1-beyond-the-images": (6, 10, 20, 40, 6, 0.3, "euclidean"),
}


@pytest.mark.parametrize(
    ("seed", "num_q", "num_g", "k1", "k2", "lambda_value", "metric"), PROBLEMS.values(), ids=PROBLEMS
)
def test_equals_torchreids_re_ranking_on_random_problems(seed, num_q, num_g, k1, k2, lambda_value, metric):
    q_g, q_q, g_g = distances(*features(seed, num_q, num_g), metric)
    expected = torchreid_re_ranking(q_g, q_q, g_g, k1, k2, lambda_value)
    ours = rerank.re_ranking(q_g, q_q.numpy(), g_g.numpy(), k1, k2, lambda_value)
    assert ours.shape == expected.shape == (num_q, num_g) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


def test_float64_distances_are_squared_in_float64_as_torchreid_does():
    q_g, q_q, g_g = (np.asarray(matrix, dtype=np.float64) for matrix in distances(*features(7, 20, 80), "euclidean"))
    np.testing.assert_allclose(rerank.re_ranking(q_g, q_q, g_g), torchreid_re_ranking(q_g, q_q, g_g), atol=1e-5, rtol=0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_feature_blocks_equal_the_matrix_entry_point(monkeypatch, metric):
    qf, gf = features(8, 45, 160)
    expected = rerank.re_ranking(*distances(qf, gf, metric))
    monkeypatch.setattr(k_reciprocal, "ROW_BYTES", 4 * 205 * 7)  # blocks of 7 rows: many blocks, a ragged last one
    blocks = list(rerank.rerank_blocks(qf, gf, metric))
    assert [start for start, _ in blocks] == list(range(0, 45, 7))
    np.testing.assert_allclose(torch.cat([block for _, block in blocks]).numpy(), expected, atol=1e-5, rtol=0)


def test_progress_hears_every_step():
    heard: list[str] = []
    list(rerank.rerank_blocks(*features(9, 12, 40), progress=heard.append))
    assert heard[0] == "nearest neighbours" and "query expansion" in heard
    assert heard[-1] == "Jaccard distances of queries 1-12 of 12" and any(w.startswith("weights of") for w in heard)


@pytest.mark.parametrize(("k1", "k2"), [(20, 6), (5, 3), (12, 1)])
def test_the_weights_never_hold_more_entries_a_row_than_the_bound(k1, k2):
    qf, gf = features(10, 60, 300, num_ids=12)
    rows = rerank._FeatureRows(qf, gf, "euclidean")
    ranks = k_reciprocal._neighbours(rows, max(k1 + 1, k2))
    weights = k_reciprocal._weights(rows, ranks, k1, lambda where: None)
    expanded = k_reciprocal._expand_queries(weights, ranks, k2, rows) if k2 != 1 else weights
    per_row, per_expanded_row = k_reciprocal.entries_per_row(rows.num_all, k1, k2)
    assert int(torch.diff(weights.crow).max()) <= per_row
    assert int(torch.diff(expanded.crow).max()) <= per_expanded_row


PEAK = """
import json, sys, torch
from pathlib import Path
from ccsc_plugin.evaluation import k_reciprocal, rerank
k_reciprocal.ROW_BYTES = rerank.ROW_BYTES = 2**22  # small blocks: the weights, not the blocks, fill the bound
k_reciprocal.PAIR_STEP = rerank.PAIR_STEP = 2**16
num_q, num_g, dim = 800, 4200, 64
qf, gf = torch.randn(num_q, dim), torch.randn(num_g, dim)
next(rerank.rerank_blocks(qf[:2], gf[:30]))  # warm up the code paths before measuring
Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident size (VmHWM) to the current one
def resident(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1]) * 1024
before = resident("VmRSS:")
for _ in rerank.rerank_blocks(qf, gf):
    pass
bound = rerank.memory_bytes(num_q, num_g, dim, rerank.RerankSettings())
print(json.dumps({"used": resident("VmHWM:") - before, "bound": bound}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc to measure peak memory")
def test_the_announced_memory_bounds_what_re_ranking_takes():
    done = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.splitlines()[-1])
    assert 0 < measured["used"] <= measured["bound"], measured


def test_more_memory_than_the_limit_is_refused_naming_the_size_the_limit_and_what_to_do():
    settings = rerank.RerankSettings(max_mb=100)
    needed = rerank.memory_bytes(11_659, 82_161, 2048, settings)
    with pytest.raises(rerank.RerankMemoryError) as refused:
        rerank.check_memory(11_659, 82_161, 2048, settings)
    message = str(refused.value)
    assert isinstance(refused.value, RecipeError)  # the command line prints it, exit status 2
    assert f"11,659 queries and 82,161 gallery images needs up to {needed / 2**20:,.0f} MB" in message
    assert "over the limit of 100 MB (test.rerank_max_mb)" in message
    assert "Raise test.rerank_max_mb" in message and "smaller gallery" in message and "test.rerank=false" in message
    assert rerank.check_memory(3368, 15913, 2048, rerank.RerankSettings()) == rerank.memory_bytes(
        3368, 15913, 2048, rerank.RerankSettings()
    )


def test_msmt17_fits_the_default_limit_that_torchreids_would_exceed_many_times():
    settings = rerank.RerankSettings()
    needed = rerank.check_memory(11_659, 82_161, 2048, settings)
    assert needed < settings.max_mb * 2**20 < 20 * (11_659 + 82_161) ** 2  # torchreid: ~20 bytes a pair


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"k1": 0}, "k1=0 must be a whole number >= 1"),
        ({"k2": 2.5}, "k2=2.5 must be a whole number >= 1"),
        ({"k1": True}, "k1=True must be a whole number >= 1"),
        ({"lambda_value": 1.5}, "lambda_value=1.5 must be in [0, 1]"),
        ({"max_mb": 0}, "max_mb=0 must be > 0"),
    ],
)
def test_impossible_settings_are_named(changed, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rerank.RerankSettings(**changed)
