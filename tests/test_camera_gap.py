"""The camera gap (``evaluation.camera_gap``) against brute-force double loops, and in every run's result."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccsc_plugin.cli import main
from ccsc_plugin.evaluation import camera_gap, metrics
from ccsc_plugin.evaluation.results import read_result

ROOT = Path(__file__).resolve().parents[1]
BASE = str(ROOT / "recipes" / "base.yaml")
FIGURE = ROOT / "benchmarks" / "camera_gap_figure.py"


def make_features(seed: int, num: int, num_ids: int, num_cams: int, single_camera_ids: int = 0, dim: int = 16):
    """Features = identity + camera offset + noise; the first ``single_camera_ids`` identities use one camera."""
    rng = np.random.default_rng(seed)
    pids = rng.integers(0, num_ids, num)
    camids = rng.integers(0, num_cams, num)
    camids[pids < single_camera_ids] = pids[pids < single_camera_ids] % num_cams
    identity, camera = rng.normal(size=(num_ids, dim)), rng.normal(size=(num_cams, dim))
    features = identity[pids] + 0.7 * camera[camids] + 0.8 * rng.normal(size=(num, dim))
    return torch.from_numpy(features).float(), pids, camids


def brute_statistics(features: torch.Tensor, pids, camids, bins: int = camera_gap.BINS) -> dict:
    """Every unordered pair i < j, one at a time, in float64."""
    f = features.double().numpy()
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    sims: dict[str, list[float]] = {kind: [] for kind in camera_gap.KINDS}
    for i in range(len(f)):
        for j in range(i + 1, len(f)):
            kind = (
                "different_person"
                if pids[i] != pids[j]
                else "same_camera"
                if camids[i] == camids[j]
                else "cross_camera"
            )
            sims[kind].append(float(f[i] @ f[j]))
    edges = np.linspace(-1, 1, bins + 1)
    values = {kind: np.array(sims[kind]) for kind in sims}
    for array in values.values():  # a similarity on a bin edge could fall either side in float32
        assert array.size == 0 or np.abs(array[:, None] - edges[None, :]).min() > 1e-6
    means = {kind: (float(values[kind].mean()) if values[kind].size else None) for kind in sims}
    return {
        **means,
        "pairs": {kind: len(sims[kind]) for kind in sims},
        "histogram": {kind: np.histogram(values[kind], bins=edges)[0].tolist() for kind in sims},
    }


def assert_close(ours: float | None, theirs: float | None) -> None:
    assert (ours is None) == (theirs is None)
    if theirs is not None:
        assert ours == pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize(
    ("seed", "num", "num_ids", "num_cams", "single_camera_ids"),
    [(0, 60, 8, 2, 0), (1, 90, 12, 3, 3), (2, 120, 20, 6, 5), (3, 40, 3, 1, 0)],
    ids=["2-cams", "3-cams-some-ids-one-camera", "6-cams", "1-camera"],
)
def test_statistics_equal_a_brute_force_double_loop(seed, num, num_ids, num_cams, single_camera_ids):
    features, pids, camids = make_features(seed, num, num_ids, num_cams, single_camera_ids)
    ours, theirs = camera_gap.similarity_statistics(features, pids, camids), brute_statistics(features, pids, camids)
    for kind in camera_gap.KINDS:
        assert_close(ours[kind], theirs[kind])
    if theirs["cross_camera"] is None:
        assert ours["gap"] is None
    else:
        assert ours["gap"] == pytest.approx(theirs["same_camera"] - theirs["cross_camera"], abs=1e-6)
    assert ours["pairs"] == theirs["pairs"]
    assert (
        ours["histogram"]["edges"] == pytest.approx(np.linspace(-1, 1, 41).tolist())
        and len(ours["histogram"]["edges"]) == 41
    )
    for kind in camera_gap.KINDS:
        assert ours["histogram"][kind] == theirs["histogram"][kind]


def test_one_camera_gives_no_cross_camera_mean_and_no_gap():
    features, pids, camids = make_features(4, 30, 5, 1)
    stats = camera_gap.similarity_statistics(features, pids, camids)
    assert stats["cross_camera"] is None and stats["gap"] is None and stats["pairs"]["cross_camera"] == 0
    assert sum(stats["histogram"]["cross_camera"]) == 0 and stats["same_camera"] is not None


def test_one_identity_gives_no_different_person_mean():
    features, _, camids = make_features(5, 20, 1, 2)
    stats = camera_gap.similarity_statistics(features, np.zeros(20, dtype=int), camids)
    assert stats["different_person"] is None and stats["pairs"]["different_person"] == 0
    assert stats["gap"] is not None


def test_above_max_images_histograms_hold_the_pairs_of_a_fixed_seed_sample_and_means_stay_exact():
    features, pids, camids = make_features(6, 90, 6, 3)
    full = brute_statistics(features, pids, camids)
    before = torch.get_rng_state()
    sampled = camera_gap.similarity_statistics(features, pids, camids, max_images=40)
    assert torch.equal(torch.get_rng_state(), before)  # the global generator (training's) is untouched
    assert sampled == camera_gap.similarity_statistics(features, pids, camids, max_images=40)  # repeatable
    for kind in camera_gap.KINDS:
        assert_close(sampled[kind], full[kind])
    assert sampled["pairs"] == full["pairs"]
    assert sum(sum(sampled["histogram"][kind]) for kind in camera_gap.KINDS) == 40 * 39 // 2  # pairs of 40 images
    for kind in camera_gap.KINDS:  # a subset of the pairs: no bin holds more than all pairs put there
        assert 0 < sum(sampled["histogram"][kind]) < full["pairs"][kind]
        assert all(s <= f for s, f in zip(sampled["histogram"][kind], full["histogram"][kind], strict=True))
    assert camera_gap.similarity_statistics(features, pids, camids, max_images=90)["histogram"] == {
        "edges": sampled["histogram"]["edges"],
        **full["histogram"],
    }


def brute_rank1(qf, gf, q_pids, g_pids, q_camids, g_camids, metric: str) -> dict[str, float | None]:
    """For each query of camera a, the nearest gallery item of camera b, found by a loop (first on ties)."""
    q, g = qf.double().numpy(), gf.double().numpy()
    if metric == "cosine":
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    result = {}
    for a in sorted(set(q_camids.tolist())):
        for b in sorted(set(g_camids.tolist())):
            gallery = [k for k in range(len(g)) if g_camids[k] == b]
            valid = hits = 0
            for i in (i for i in range(len(q)) if q_camids[i] == a):
                if not any(g_pids[k] == q_pids[i] for k in gallery):
                    continue
                distance = [1 - q[i] @ g[k] if metric == "cosine" else ((q[i] - g[k]) ** 2).sum() for k in gallery]
                valid += 1
                hits += int(g_pids[gallery[int(np.argmin(distance))]] == q_pids[i])
            result[f"{a}->{b}"] = hits / valid if valid else None
    return result


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(("seed", "num_cams"), [(0, 2), (1, 3), (2, 5)])
def test_rank1_by_camera_pair_equals_a_brute_force(seed, num_cams, metric):
    features, pids, camids = make_features(seed, 150, 15, num_cams)
    # the last gallery camera holds only identities no query has: every a -> that camera has no match
    extra, _, _ = make_features(seed + 10, 10, 5, 1)
    query = np.arange(150) < 50
    qf, q_pids, q_camids = features[query], pids[query], camids[query]
    gf = torch.cat([features[~query], extra])
    g_pids = np.concatenate([pids[~query], 100 + np.arange(10) % 5])
    g_camids = np.concatenate([camids[~query], np.full(10, num_cams)])
    ours = camera_gap.rank1_by_camera_pair(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=metric, chunk_size=7)
    assert ours == pytest.approx(brute_rank1(qf, gf, q_pids, g_pids, q_camids, g_camids, metric))
    assert all(ours[f"{a}->{num_cams}"] is None for a in range(num_cams))
    assert len(ours) == num_cams * (num_cams + 1)
    for a in range(num_cams):  # across cameras it is the usual protocol: the evaluator's rank-1 on that gallery
        for b in range(num_cams):
            q, g = q_camids == a, g_camids == b
            if a != b and ours[f"{a}->{b}"] is not None:
                cmc, _ = metrics.evaluate_features(qf[q], gf[g], q_pids[q], g_pids[g], q_camids[q], g_camids[g], metric)
                assert ours[f"{a}->{b}"] == pytest.approx(float(cmc[0]))


def test_same_camera_pairs_count_same_camera_matches():
    """a -> a keeps same-identity same-camera gallery items as matches (the protocol would exclude them all)."""
    qf = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gf = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [1.0, 0.0]])
    q_pids, g_pids, q_camids, g_camids = [0, 1], [0, 1, 0, 1], [0, 0], [0, 0, 1, 1]
    ranks = camera_gap.rank1_by_camera_pair(qf, gf, q_pids, g_pids, q_camids, g_camids)
    assert ranks == {"0->0": 1.0, "0->1": 0.0}  # in camera 1 each query's nearest item is the other identity
    with pytest.raises(ValueError, match="No query has a valid match"):  # the protocol on camera 0's gallery
        metrics.evaluate_features(qf, gf[:2], q_pids, g_pids[:2], q_camids, g_camids[:2])


def check_schema(block: dict) -> None:
    assert set(block) == {*camera_gap.KINDS, "gap", "pairs", "histogram", "rank1_by_camera_pair"}
    assert set(block["pairs"]) == set(camera_gap.KINDS)
    assert set(block["histogram"]) == {"edges", *camera_gap.KINDS}
    assert len(block["histogram"]["edges"]) == 41 and block["histogram"]["edges"][0] == -1.0
    for kind in camera_gap.KINDS:
        assert isinstance(block[kind], float) and -1 <= block[kind] <= 1
        assert isinstance(block["pairs"][kind], int) and block["pairs"][kind] > 0
        counts = block["histogram"][kind]
        assert len(counts) == 40 and all(isinstance(c, int) for c in counts)
        assert 0 < sum(counts) <= block["pairs"][kind]
    assert block["gap"] == pytest.approx(block["same_camera"] - block["cross_camera"])
    for key, value in block["rank1_by_camera_pair"].items():
        a, b = key.split("->")
        assert a.isdigit() and b.isdigit() and (value is None or 0 <= value <= 1)


@pytest.mark.slow
def test_train_and_test_results_hold_the_camera_gap(tiny_overrides, tmp_path):
    assert main(["train", BASE, *[a for o in tiny_overrides for a in ("--set", o)]]) == 0
    run = Path(next(o for o in tiny_overrides if o.startswith("data.save_dir=")).split("=", 1)[1])
    trained = read_result(run)
    check_schema(trained["camera_gap"])
    assert trained["targets"]["market1501"]["camera_gap"] == trained["camera_gap"]
    assert set(trained["camera_gap"]["rank1_by_camera_pair"]) == {f"{a}->{b}" for a in range(3) for b in range(3)}
    assert "Camera gap (mean cosine similarity): same person same camera" in (run / "train.log").read_text()
    overrides = [*tiny_overrides, f"data.save_dir={tmp_path / 'eval'}"]
    assert main(["test", BASE, "--weights", str(run), *[a for o in overrides for a in ("--set", o)]]) == 0
    (written,) = (tmp_path / "eval" / "tests").glob("*.json")
    tested = read_result(written)["camera_gap"]
    check_schema(tested)
    assert tested["pairs"] == trained["camera_gap"]["pairs"]
    for key in (*camera_gap.KINDS, "gap"):
        assert tested[key] == pytest.approx(trained["camera_gap"][key], abs=1e-5)
    assert tested["rank1_by_camera_pair"] == pytest.approx(trained["camera_gap"]["rank1_by_camera_pair"])


def synthetic_result(path: Path, seed: int, camera_weight: float) -> Path:
    features, pids, camids = make_features(seed, 80, 10, 2)
    features += camera_weight * torch.from_numpy(np.eye(16)[camids]).float()
    block = camera_gap.camera_gap_report(features[:20], features[20:], pids[:20], pids[20:], camids[:20], camids[20:])
    path.mkdir(parents=True)
    (path / "result.json").write_text(json.dumps({"method": "softmax", "camera_gap": block}))
    return path


def load_figure_script():
    spec = importlib.util.spec_from_file_location("camera_gap_figure", FIGURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure_draws_two_panels_from_result_files(tmp_path):
    baseline, ccsc = synthetic_result(tmp_path / "base", 0, 3.0), synthetic_result(tmp_path / "ccsc", 1, 0.0)
    output = tmp_path / "docs" / "camera_gap.png"
    output.parent.mkdir()
    args = [str(baseline), str(ccsc / "result.json"), "--labels", "baseline", "CCSC", "--output", str(output)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's ccsc_plugin, as from the repository root
    done = subprocess.run([sys.executable, str(FIGURE), *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert str(output) in done.stdout
    with Image.open(output) as image:
        assert image.format == "PNG" and image.width > 2 * image.height  # two panels side by side


def test_figure_histograms_are_densities():
    figure = load_figure_script()
    edges = camera_gap.histogram_edges()
    values = figure.densities([0] * 10 + [3, 1] + [0] * 28, edges)
    assert sum(v * 0.05 for v in values) == pytest.approx(1) and values[10] == pytest.approx(0.75 / 0.05)
    assert figure.densities([0] * 40, edges) == [0.0] * 40  # a kind without pairs draws nothing


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda a, b, out: [a, b, "--labels", "only-one", "--output", out], "2 runs but 1 labels"),
        (lambda a, b, out: [a, str(Path(b).parent / "old"), "--output", out], "old has no camera_gap"),
        (lambda a, b, out: [a, str(Path(b).parent / "absent"), "--output", out], "absent does not exist"),
        (lambda a, b, out: [a, b, "--output", str(Path(out).parent / "missing" / "x.png")], "missing does not exist"),
    ],
    ids=["labels", "old-result", "missing-run", "output-folder"],
)
def test_figure_errors_exit_2_naming_the_problem(tmp_path, capsys, make_args, message):
    baseline, ccsc = synthetic_result(tmp_path / "base", 0, 3.0), synthetic_result(tmp_path / "ccsc", 1, 0.0)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "result.json").write_text(json.dumps({"method": "softmax", "rank1": 0.1}))
    assert load_figure_script().main(make_args(str(baseline), str(ccsc), str(tmp_path / "fig.png"))) == 2
    captured = capsys.readouterr()
    assert message in captured.err and not captured.out
    assert not (tmp_path / "fig.png").exists()
