"""Rank lists (``ccsc-reid test --visrank K``): the ranking the metrics score, drawn in the demo's frames, on disk."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_run_overrides
from PIL import Image

from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError
from ccsc_plugin.engine.rank_lists import CSV_COLUMNS, CSV_NAME, RankListOptions, strip_name, write_rank_lists
from ccsc_plugin.evaluation.metrics import distance_matrix, evaluate_features
from ccsc_plugin.evaluation.ranking import TopKCollector, valid_order
from ccsc_plugin.evaluation.strips import (
    BORDER,
    CAPTION_HEIGHT,
    COLOURS,
    DISPLAY_SIZE,
    QUERY_COLOUR,
    rank_strip,
    tile_left,
)
from ccsc_plugin.serve.gallery import load_query_gallery
from ccsc_plugin.serve.inference import FeatureExtractor

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")
FRAMED_HEIGHT = DISPLAY_SIZE[0] + 2 * BORDER


def as_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def read_ranks(folder: Path) -> dict[str, list[dict]]:
    """ranks.csv grouped by query path, in file order."""
    with open(folder / CSV_NAME, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        grouped = defaultdict(list)
        for row in reader:
            grouped[row["query_path"]].append(row)
    return dict(grouped)


def frame_colour(strip: Image.Image, position: int) -> np.ndarray:
    """The colour in the middle of the left edge of the ``position``-th frame."""
    return np.asarray(strip)[FRAMED_HEIGHT // 2, tile_left(position) + BORDER // 2].astype(int)


# ---------------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("distances", "q_pid", "q_camid", "expected"),
    [
        ([0.3, 0.1, 0.1, 0.2], 9, 9, [1, 2, 3, 0]),  # ties keep gallery order
        ([0.3, 0.1, 0.1, 0.2], 1, 0, [2, 3, 0]),  # gallery 1 is the query's identity from its camera: left out
        ([0.3, 0.1, 0.1, 0.2], None, None, [1, 2, 3, 0]),  # an unlabelled query keeps everything
    ],
)
def test_valid_order_sorts_stably_and_leaves_out_the_querys_own_camera(distances, q_pid, q_camid, expected):
    g_pids, g_camids = np.array([2, 1, 2, 1]), np.array([0, 0, 0, 1])
    assert valid_order(np.array(distances), g_pids, g_camids, q_pid, q_camid).tolist() == expected


def test_rank_lists_collected_from_the_scored_blocks_give_the_metrics_cmc_and_map():
    rng = np.random.default_rng(0)
    qf = torch.from_numpy(rng.integers(0, 3, (30, 4)).astype(np.float32))  # few values: many equal distances
    gf = torch.from_numpy(rng.integers(0, 3, (50, 4)).astype(np.float32))
    q_pids, g_pids = rng.integers(0, 6, 30), rng.integers(0, 6, 50)
    q_camids, g_camids = rng.integers(0, 2, 30), rng.integers(0, 2, 50)
    top = TopKCollector(q_pids, q_camids, g_pids, g_camids, topk=50, queries=range(30))
    cmc, mean_ap = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, chunk_size=7, on_block=top.add)
    first_hits, aps = [], []
    for query, found in sorted(top.found.items()):
        hits = g_pids[found.indices] == q_pids[query]
        if hits.any():
            first_hits.append(int(np.argmax(hits)))
            aps.append(float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean()))
        assert np.all(np.diff(found.distances) >= 0)
    assert len(top.found) == 30
    assert np.mean(aps) == pytest.approx(mean_ap, abs=1e-9)
    for k in (1, 5):
        assert np.mean(np.array(first_hits) < k) == pytest.approx(cmc[k - 1])


@pytest.mark.parametrize(("topk", "queries", "message"), [(0, None, "--visrank K"), (3, 0, "--visrank-queries N")])
def test_options_refuse_a_k_or_n_below_one(tmp_path, topk, queries, message):
    with pytest.raises(RecipeError, match=f"{message} must be >= 1"):
        RankListOptions(topk, tmp_path, queries)


@pytest.mark.parametrize("option", ["--visrank", "--visrank-queries"])
@pytest.mark.parametrize("value", ["0", "-1", "ten"])
def test_the_command_line_refuses_a_k_or_n_below_one(capsys, option, value):
    with pytest.raises(SystemExit) as stop:
        main(["test", BASE, "--weights", "w", "--visrank", "5", option, value])
    assert stop.value.code == 2 and f"{option}: must be an integer >= 1, got '{value}'" in capsys.readouterr().err


def test_visrank_queries_without_visrank_is_an_error(tiny_checkpoint, tmp_path, capsys):
    args = ["--weights", str(tiny_checkpoint), "--visrank-queries", "3", "--set", f"data.save_dir={tmp_path}"]
    assert main(["test", BASE, *args]) == 2
    assert "--visrank-queries N bounds the rank lists of --visrank K: add --visrank K" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # stopped before writing anything


# -------------------------------------------------------------------------------------------- the files


@pytest.fixture
def items(tmp_path) -> tuple[list[tuple], list[tuple]]:
    """Two queries with one file name in two folders, and a gallery of four solid-colour crops."""

    def crop(path: Path, shade: int) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 64), (shade, shade, shade)).save(path)
        return str(path)

    query = [(crop(tmp_path / day / "person.png", 50 * i), i, 0) for i, day in enumerate(("monday", "tuesday"))]
    gallery = [(crop(tmp_path / "gallery" / f"g{i}.png", 60 * i), i % 2, 1) for i in range(4)]
    return query, gallery


def test_strips_and_csv_are_bounded_named_by_query_index_and_replace_the_old_lists(items, tmp_path):
    query, gallery = items
    distances = torch.tensor([[0.4, 0.2, 0.3, 0.1], [0.1, 0.2, 0.2, 0.4]])
    lists = tmp_path / "lists"
    stale = lists / "market1501" / "q9_old.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier test's strip")
    for max_queries, drawn in ((None, [0, 1]), (1, [0])):
        options = RankListOptions(2, lists, max_queries)
        top = options.collector([q[1] for q in query], [q[2] for q in query], [g[1] for g in gallery], [1] * 4)
        top.add(0, distances)
        folder = write_rank_lists(options, "market1501", query, gallery, top)
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([CSV_NAME, *(strip_name(i, query[i][0], 2) for i in drawn)])
        assert [n for n in names if n.endswith(".jpg")] == [f"q{i}_person.jpg" for i in drawn]  # index: apart
        ranks = read_ranks(folder)
        assert list(ranks) == [query[i][0] for i in drawn]
    assert [(r["rank"], r["gallery_path"], r["distance"], r["correct"]) for r in ranks[query[0][0]]] == [
        ("1", gallery[3][0], "0.1", "False"),
        ("2", gallery[1][0], "0.2", "False"),
    ]
    assert not stale.exists() and sorted(p.name for p in lists.iterdir()) == ["market1501"]  # no temporaries


def test_a_strip_frames_the_query_blue_and_matches_green_or_red_with_captions():
    query = Image.new("RGB", (32, 64), (250, 250, 250))
    matches = [(Image.new("RGB", (40, 80), (255, 255, 255)), f"#{i + 1}", correct) for i, correct in enumerate([1, 0])]
    matches = [(image, caption, bool(correct)) for image, caption, correct in matches]
    strip = rank_strip(query, "query", matches)
    assert strip.size == (tile_left(2) + DISPLAY_SIZE[1] + 2 * BORDER, FRAMED_HEIGHT + CAPTION_HEIGHT)
    for position, colour in enumerate([QUERY_COLOUR, COLOURS[True], COLOURS[False]]):
        assert tuple(frame_colour(strip, position)) == colour
        caption = np.asarray(strip)[FRAMED_HEIGHT:, tile_left(position) : tile_left(position) + DISPLAY_SIZE[1]]
        assert caption.min() < 128  # dark text under each tile


# ---------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def visrank_run(tiny_checkpoint, market_root, module_tmp) -> dict:
    """``ccsc-reid test --visrank 100`` (more than the gallery: every valid match) with test.flip on."""
    save_dir = module_tmp("visrank")
    args = ["--weights", str(tiny_checkpoint), *as_args([*tiny_run_overrides(market_root, save_dir), "test.flip=true"])]
    assert main(["test", BASE, *args, "--visrank", "100"]) == 0
    (result_path,) = (save_dir / "tests").glob("*.json")
    folder = result_path.with_name(f"{result_path.stem}-visrank") / "market1501"
    return {"args": args, "result": json.loads(result_path.read_text()), "folder": folder}


def test_visrank_lists_every_query_beside_the_test_result(visrank_run, market_root):
    folder = visrank_run["folder"]
    assert visrank_run["result"]["targets"]["market1501"]["rank_lists"] == str(folder)
    data = load_query_gallery("market1501", market_root)
    assert list(read_ranks(folder)) == [item.path for item in data.query]
    expected = {strip_name(i, item.path, len(data.query)) for i, item in enumerate(data.query)}
    assert {p.name for p in folder.glob("*.jpg")} == expected


def test_visrank_ranks_are_the_ones_the_reported_rank1_and_map_score(visrank_run, market_root, tiny_checkpoint):
    result = visrank_run["result"]
    data = load_query_gallery("market1501", market_root)
    ranks = read_ranks(visrank_run["folder"])
    first_hits, aps = [], []
    for item in data.query:
        rows = ranks[item.path]
        valid = [g for g in data.gallery if not (g.pid == item.pid and g.camid == item.camid)]
        assert [int(r["rank"]) for r in rows] == list(range(1, len(valid) + 1))  # K = 100: every valid match
        hits = np.array([r["correct"] == "True" for r in rows])
        assert hits.tolist() == [Path(r["gallery_path"]).name[:4] == Path(item.path).name[:4] for r in rows]
        if hits.any():
            first_hits.append(int(np.argmax(hits)))
            aps.append(float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean()))
    assert np.mean(np.array(first_hits) == 0) == pytest.approx(result["rank1"], abs=1e-6)
    assert np.mean(aps) == pytest.approx(result["mAP"], abs=1e-6)
    # the distances are those of the flip-averaged features (test.flip=true), squared euclidean as torchreid's
    extractor = FeatureExtractor.from_checkpoint(tiny_checkpoint, device="cpu", flip=True)
    qf = extractor([data.query[0].path], progress=False)
    listed = ranks[data.query[0].path]
    gf = extractor([r["gallery_path"] for r in listed], progress=False)
    expected = distance_matrix(qf, gf, "euclidean")[0].numpy()
    np.testing.assert_allclose([float(r["distance"]) for r in listed], expected, rtol=1e-4, atol=1e-4)


def test_visrank_strips_show_each_rank_in_its_frame_colour(visrank_run, market_root):
    data = load_query_gallery("market1501", market_root)
    ranks = read_ranks(visrank_run["folder"])
    for index in (0, len(data.query) - 1):
        rows = ranks[data.query[index].path]
        strip = Image.open(visrank_run["folder"] / strip_name(index, data.query[index].path, len(data.query)))
        assert strip.size == (tile_left(len(rows)) + DISPLAY_SIZE[1] + 2 * BORDER, FRAMED_HEIGHT + CAPTION_HEIGHT)
        colours = [QUERY_COLOUR] + [COLOURS[r["correct"] == "True"] for r in rows]
        for position, colour in enumerate(colours):
            assert np.abs(frame_colour(strip, position) - colour).max() < 40  # JPEG: near the frame's colour


def test_visrank_queries_draws_the_first_n_queries_only(visrank_run, market_root, tmp_path, capsys):
    elsewhere = ["--set", f"data.save_dir={tmp_path}"]  # the same test, written in another folder
    assert main(["test", BASE, *visrank_run["args"], *elsewhere, "--visrank", "2", "--visrank-queries", "3"]) == 0
    assert "market1501 rank lists" in capsys.readouterr().err  # the progress bar
    data = load_query_gallery("market1501", market_root)
    folder = tmp_path / "tests" / visrank_run["folder"].parent.name / "market1501"
    ranks = read_ranks(folder)
    assert list(ranks) == [item.path for item in data.query[:3]]
    assert all([r["rank"] for r in rows] == ["1", "2"] for rows in ranks.values())
    assert {p.name for p in folder.glob("*.jpg")} == {
        strip_name(i, item.path, len(data.query)) for i, item in enumerate(data.query[:3])
    }
