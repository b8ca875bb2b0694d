"""The logic behind the demo: data loading, ranking with the protocol, feature cache, uploads, maps, answers."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccsc_plugin.checkpoint import CheckpointError, save_checkpoint
from ccsc_plugin.cli import build_parser, main
from ccsc_plugin.config import RecipeError
from ccsc_plugin.evaluation.metrics import evaluate_rank
from ccsc_plugin.evaluation.strips import BORDER, COLOURS, DISPLAY_SIZE, QUERY_COLOUR
from ccsc_plugin.serve.demo_backend import DemoBackend, Query, distinct_labels
from ccsc_plugin.serve.gallery import DemoInputError, Item, load_query_gallery
from ccsc_plugin.serve.retrieval import Retriever, cached_features, rank_gallery
from ccsc_plugin.serve.uploads import decode_upload
from ccsc_plugin.serve.visualisation import gradcam_maps, intensity_maps, overlay


@pytest.fixture(scope="module")
def feature_cache(module_tmp) -> Path:
    """One feature cache for the module: each checkpoint's features of a set are computed once."""
    return module_tmp("feature-cache")


@pytest.fixture(scope="module")
def backend(demo_checkpoints, feature_cache) -> DemoBackend:
    return DemoBackend([str(demo_checkpoints["baseline"]), str(demo_checkpoints["ccsc"])], cache_dir=feature_cache)


@pytest.fixture(scope="module")
def real_backend(demo_checkpoints, feature_cache, shared_cuhk03) -> DemoBackend:
    """Both rows over the real CUHK03 crops of the shared folder (skipped when it is absent)."""
    weights = [str(demo_checkpoints["baseline"]), str(demo_checkpoints["ccsc"])]
    return DemoBackend(weights, dataset=str(shared_cuhk03), cache_dir=feature_cache)


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ data


def test_default_dataset_is_the_checkpoints_test_split(backend, market_root):
    folder = market_root / "market1501" / "Market-1501-v15.09.15"
    assert backend.data.name == "market1501"
    assert len(backend.data.query) == len(list((folder / "query").glob("*.jpg")))
    assert len(backend.data.gallery) == len(list((folder / "bounding_box_test").glob("*.jpg")))


def test_market_folder_and_torchreid_name_give_the_same_split(market_root):
    by_name = load_query_gallery("market1501", root=market_root)
    by_folder = load_query_gallery(market_root / "market1501" / "Market-1501-v15.09.15")
    assert sorted(by_name.query) == sorted(by_folder.query)
    assert sorted(by_name.gallery) == sorted(by_folder.gallery)


@pytest.mark.parametrize("with_split", [False, True])
def test_csv_dataset(market_root, tmp_path, with_split):
    folder = market_root / "market1501" / "Market-1501-v15.09.15"
    reference = load_query_gallery(folder)
    rows = [(item, "query") for item in reference.query] + [(item, "gallery") for item in reference.gallery]
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pid", "camid"] + (["split"] if with_split else []))
        for item, split in rows:
            relative = os.path.relpath(item.path, tmp_path)
            writer.writerow([relative, item.pid, item.camid] + ([split] if with_split else []))
    loaded = load_query_gallery(tmp_path)  # a folder holding labels.csv
    if with_split:
        assert sorted(loaded.query) == sorted(reference.query)
        assert sorted(loaded.gallery) == sorted(reference.gallery)
    else:  # the protocol: the first image of each identity in each camera is a query
        assert len({(item.pid, item.camid) for item in loaded.query}) == len(loaded.query)
        assert {(i.pid, i.camid) for i in loaded.query} == {(i.pid, i.camid) for i, _ in rows}
        assert len(loaded.query) + len(loaded.gallery) == len(rows)


def test_shared_cuhk03_csv(shared_cuhk03):
    data = load_query_gallery(shared_cuhk03)
    assert len(data.query) == 200  # 100 identities x 2 cameras
    assert len(data.query) + len(data.gallery) == 938
    assert all(Path(item.path).is_file() for item in data.query[:5])


def test_demo_reads_real_crops_with_one_query_per_camera(real_backend, shared_cuhk03):
    with open(shared_cuhk03 / "labels.csv", newline="") as handle:
        rows = [
            (str((shared_cuhk03 / r["path"]).resolve()), int(r["pid"]), int(r["camid"])) for r in csv.DictReader(handle)
        ]
    first = {}
    for row in rows:  # the README's protocol: per identity, the first image of each camera is a query
        first.setdefault(row[1:], row)
    data = real_backend.data
    assert data.name == "cuhk03-detected-mini" and len(first) == 200
    assert sorted((q.path, q.pid, q.camid) for q in data.query) == sorted(first.values())
    assert sorted((g.path, g.pid, g.camid) for g in data.gallery) == sorted(set(rows) - set(first.values()))
    assert len({Image.open(item.path).size for item in data.query}) > 1  # real JPEGs of varying sizes


def test_demo_answers_a_real_crop_query_in_both_rows(real_backend):
    query, answers = real_backend.example_answer()
    assert query.index == 0 and query.pid is not None
    framed = (DISPLAY_SIZE[0] + 2 * BORDER, DISPLAY_SIZE[1] + 2 * BORDER, 3)
    for answer in answers:
        assert len(answer.results) == 5 and len(answer.maps) == 6
        assert all(tile.shape == framed for tile, _ in answer.results + answer.maps)
        assert [tuple(tile[0, 0]) for tile, _ in answer.results] == [COLOURS[m.correct] for m in answer.ranking.matches]
        assert "AP" in answer.summary


def test_cli_demo_serves_the_real_crops(demo_checkpoints, shared_cuhk03, feature_cache, recorded_launch):
    weights = [arg for name in ("baseline", "ccsc") for arg in ("--weights", str(demo_checkpoints[name]))]
    args = ["--dataset", str(shared_cuhk03), "--example-query", "3", "--cache-dir", str(feature_cache)]
    assert main(["demo", *weights, *args]) == 0
    (call,) = recorded_launch
    values = {block.elem_id: block.value for block in call["app"].blocks.values() if block.elem_id}
    assert "query #3" in values["status"]
    assert all(len(values[f"results-{row}"]) == 5 and len(values[f"maps-{row}"]) == 6 for row in (0, 1))
    assert any("cuhk03-detected-mini" in str(block.value) for block in call["app"].blocks.values())


@pytest.mark.parametrize(
    ("source", "message"),
    [("no-such-dataset", "Unknown dataset"), ("market1501", "not found"), ("folder", "Market-1501-style folder")],
)
def test_bad_dataset_is_a_clear_error(tmp_path, source, message):
    if source == "folder":
        source = tmp_path
    with pytest.raises((DemoInputError, FileNotFoundError), match=message):
        load_query_gallery(source, root=tmp_path / "empty-root")


# --------------------------------------------------------------------------------------------- ranking


def test_rank_gallery_agrees_with_torchreid_protocol(backend):
    data = backend.data
    rng = np.random.default_rng(0)
    distmat = rng.random((len(data.query), len(data.gallery))).astype(np.float32)
    rankings = [rank_gallery(row, data.gallery, q.pid, q.camid) for row, q in zip(distmat, data.query, strict=True)]
    cmc, mean_ap = evaluate_rank(
        distmat,
        np.array([q.pid for q in data.query]),
        np.array([g.pid for g in data.gallery]),
        np.array([q.camid for q in data.query]),
        np.array([g.camid for g in data.gallery]),
    )
    assert np.mean([r.average_precision for r in rankings]) == pytest.approx(mean_ap, abs=1e-6)
    for k in (1, 5):
        assert np.mean([r.first_correct_rank <= k for r in rankings]) == pytest.approx(cmc[k - 1])
    for ranking, query in zip(rankings, data.query, strict=True):
        assert len(ranking.matches) == 5
        assert [m.rank for m in ranking.matches] == [1, 2, 3, 4, 5]
        assert [m.distance for m in ranking.matches] == sorted(m.distance for m in ranking.matches)
        assert not any(m.pid == query.pid and m.camid == query.camid for m in ranking.matches)
        assert all(m.correct == (m.pid == query.pid) for m in ranking.matches)


def test_rank_gallery_skips_same_identity_same_camera():
    gallery = [Item("a", 1, 0), Item("b", 1, 1), Item("c", 2, 0)]
    ranking = rank_gallery(np.array([0.1, 0.5, 0.3]), gallery, query_pid=1, query_camid=0, topk=5)
    assert [m.index for m in ranking.matches] == [2, 1]
    assert [m.correct for m in ranking.matches] == [False, True]
    assert ranking.skipped == 1
    assert ranking.first_correct_rank == 2
    assert ranking.average_precision == pytest.approx(0.5)


def test_rank_gallery_unlabelled_query_keeps_everything():
    gallery = [Item("a", 1, 0), Item("b", 1, 1), Item("c", 2, 0)]
    ranking = rank_gallery(np.array([0.1, 0.5, 0.3]), gallery)
    assert [m.index for m in ranking.matches] == [0, 2, 1]
    assert {m.correct for m in ranking.matches} == {None}
    assert ranking.average_precision is None and ranking.first_correct_rank is None


# ---------------------------------------------------------------------------------- checkpoints, cache


def test_retriever_rebuilds_input_size_and_normalisation(demo_checkpoints):
    retriever = Retriever(demo_checkpoints["ccsc"])
    assert retriever.size == (64, 32)
    assert retriever.label == "ccsc"
    batch = retriever.preprocess([Image.new("RGB", (50, 120), (124, 116, 104))])
    assert batch.shape == (1, 3, 64, 32)
    assert batch.abs().max() < 0.01  # the ImageNet mean colour normalises to ~0


@pytest.mark.parametrize("problem", ["missing", "not-a-checkpoint", "no-config", "other-model"])
def test_unusable_checkpoint_is_a_slot_message(demo_checkpoints, backend, tmp_path, problem):
    good = torch.load(next((demo_checkpoints["ccsc"] / "checkpoints").glob("*.pt")), weights_only=True)
    path = tmp_path / "bad.pt"
    if problem == "not-a-checkpoint":
        path.write_bytes(b"definitely not a torch file")
    elif problem == "no-config":
        save_checkpoint({"state_dict": good["state_dict"]}, path)
    elif problem == "other-model":
        state = {k: v for k, v in good["state_dict"].items() if not k.startswith("reduction")}
        save_checkpoint({**good, "state_dict": state}, path)
    if problem != "missing":
        with pytest.raises(RecipeError if problem == "no-config" else CheckpointError):  # no-config: no recipe
            Retriever(path)
    slot = DemoBackend._load_slot(str(path))
    assert slot.retriever is None
    assert str(path) in slot.error and "make quickstart" in slot.error


STORED_CONFIG_PROBLEMS = {
    "unknown-key": ("model:\n  name: resnet50_ccsc\n  colour: blue\n", "unknown key 'model.colour'"),
    "height-0": ("data:\n  height: 0\n", "data.height must be >= 1"),
    "unknown-model": ("model:\n  name: no_such_net\n", "model.name='no_such_net'"),
    "not-yaml": ("model: [unclosed\n", "not a YAML recipe"),
    "not-a-mapping": ("- just\n- a list\n", "not a recipe mapping"),
}


@pytest.mark.parametrize("problem", sorted(STORED_CONFIG_PROBLEMS))
def test_inconsistent_stored_config_is_that_rows_message(demo_checkpoints, market_root, tmp_path, problem):
    config, message = STORED_CONFIG_PROBLEMS[problem]
    good = torch.load(next((demo_checkpoints["ccsc"] / "checkpoints").glob("*.pt")), weights_only=True)
    bad = tmp_path / "bad.pt"
    save_checkpoint({**good, "config": config}, bad)
    slot = DemoBackend._load_slot(str(bad))
    assert slot.retriever is None and str(bad) in slot.error and message in slot.error


def test_one_bad_row_leaves_the_other_rows_working(demo_checkpoints, tmp_path):
    good = torch.load(next((demo_checkpoints["ccsc"] / "checkpoints").glob("*.pt")), weights_only=True)
    bad = tmp_path / "bad.pt"
    save_checkpoint({**good, "config": "data:\n  height: 0\n"}, bad)
    demo = DemoBackend([str(demo_checkpoints["baseline"]), str(bad)], cache_dir=tmp_path / "cache")
    assert demo.errors == [demo.slots[1].error] and demo.slots[0].retriever is not None
    working, broken = demo.answer(demo.query_from_set(0), "intensity")
    assert len(working.results) == 5 and broken.results == [] and "data.height must be >= 1" in broken.summary


def test_rows_of_runs_with_one_folder_name_are_told_apart(demo_checkpoints, market_root, tmp_path):
    # the real-data benchmark's layout: runs/real_tables/<method>/seed-<N>
    runs = tmp_path / "runs" / "real_tables"
    for method, source in (("softmax", "baseline"), ("softmax_ccsc", "ccsc")):
        shutil.copytree(demo_checkpoints[source], runs / method / "seed-1")
    weights = [str(runs / "softmax" / "seed-1"), str(runs / "softmax_ccsc" / "seed-1"), str(tmp_path / "x" / "seed-1")]
    demo = DemoBackend(weights, cache_dir=tmp_path / "cache")
    assert [slot.label for slot in demo.slots] == ["softmax/seed-1", "softmax_ccsc/seed-1", "x/seed-1"]
    answers = demo.answer(demo.query_from_set(0), "intensity")
    assert [a.label for a in answers] == ["softmax/seed-1", "softmax_ccsc/seed-1", "x/seed-1"]
    assert answers[0].summary.startswith("**softmax/seed-1**")


@pytest.mark.parametrize(
    ("paths", "labels"),
    [
        (["runs/baseline", "runs/ccsc"], ["baseline", "ccsc"]),
        (
            ["a/softmax/seed-1", "b/softmax/seed-1", "a/ccsc/seed-1"],
            ["a/softmax/seed-1", "b/softmax/seed-1", "ccsc/seed-1"],
        ),
        (["seed-1", "runs/seed-1"], ["seed-1", "runs/seed-1"]),
        (["runs/ccsc", "runs/ccsc"], ["runs/ccsc", "runs/ccsc"]),  # the same run twice: nothing tells them apart
    ],
)
def test_distinct_labels(paths, labels):
    assert distinct_labels([Path(p) for p in paths]) == labels


def test_missing_default_checkpoints_say_run_make_quickstart(tmp_path, monkeypatch, market_root):
    monkeypatch.chdir(tmp_path)
    demo = DemoBackend(dataset=str(market_root / "market1501" / "Market-1501-v15.09.15"), cache_dir=tmp_path)
    assert len(demo.errors) == 2
    assert all("No checkpoint at `runs/quickstart/" in e and "make quickstart" in e for e in demo.errors)
    answers = demo.answer(demo.query_from_set(0))
    assert [a.results for a in answers] == [[], []]
    assert all("make quickstart" in a.summary for a in answers)


def test_features_are_cached_per_checkpoint_and_images(backend, tmp_path, monkeypatch):
    retriever = backend.slots[0].retriever
    items = backend.data.gallery[:3]
    first = cached_features(retriever, items, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    torch.testing.assert_close(first, backend.slots[0].gallery_features[:3])

    def no_compute(batch):
        raise AssertionError("features were recomputed although cached")

    monkeypatch.setattr(retriever, "embed", no_compute)
    torch.testing.assert_close(cached_features(retriever, items, tmp_path), first)
    with pytest.raises(AssertionError, match="recomputed"):  # other images: another key, so computed again
        cached_features(retriever, backend.data.gallery[:2], tmp_path)
    other = backend.slots[1].retriever
    assert other.fingerprint != retriever.fingerprint
    cached_features(other, items, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2


# --------------------------------------------------------------------------------------------- uploads


def test_decode_upload_accepts_a_plain_rgb_image():
    image, notes = decode_upload(_png(Image.new("RGB", (64, 128), (10, 200, 30))))
    assert image.mode == "RGB" and image.size == (64, 128) and notes == []


@pytest.mark.parametrize(
    ("mode", "note"), [("L", "grayscale"), ("RGBA", "transparency"), ("LA", "grayscale"), ("CMYK", "CMYK")]
)
def test_decode_upload_converts_other_modes_with_a_note(mode, note):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image, notes = decode_upload(_png(Image.new(mode, (64, 128)), fmt))
    assert image.mode == "RGB"
    assert any(note in n for n in notes)


@pytest.mark.parametrize(
    ("payload", "kwargs", "message"),
    [
        (b"", {}, "empty"),
        (b"%PDF-1.4 not an image at all" * 10, {}, "not an image"),
        (_png(Image.new("RGB", (64, 128)))[:60], {}, "not an image"),  # truncated
        (_png(Image.new("RGB", (8, 12))), {}, "only 8x12 pixels"),
        (_png(Image.new("RGB", (400, 300))), {"max_pixels": 100_000}, "400x300 pixels, more than"),
        (_png(Image.new("RGB", (64, 128))), {"max_bytes": 100}, "limit"),
    ],
    ids=["empty", "not-an-image", "truncated", "tiny", "huge", "too-many-bytes"],
)
def test_decode_upload_rejects_bad_input(payload, kwargs, message):
    with pytest.raises(DemoInputError, match=message):
        decode_upload(payload, **kwargs)


def test_huge_image_is_rejected_before_decoding():
    # 20000 x 20000 pixels in a few hundred kB: the check must use the header, not decode 1.2 GB
    payload = _png(Image.new("1", (20000, 20000)))
    with pytest.raises(DemoInputError, match="too large to decode safely"):
        decode_upload(payload)


# ----------------------------------------------------------------------------------------------- maps


def test_fast_gradcam_equals_plain_gradcam(backend):
    model = backend.slots[0].retriever.model
    images = torch.randn(2, 3, 64, 32)
    references = torch.randn(2, 512)
    fast = gradcam_maps(model, images, references, fast=True)
    plain = gradcam_maps(model, images, references, fast=False)
    assert fast.shape == (2, 64, 32)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert not [h for h in model.last_stage._forward_hooks.values()]  # hooks released


def test_gradcam_depends_on_the_reference(backend):
    model = backend.slots[0].retriever.model
    images = torch.randn(1, 3, 64, 32).repeat(2, 1, 1, 1)
    maps = gradcam_maps(model, images, torch.randn(2, 512, generator=torch.Generator().manual_seed(1)))
    assert not np.allclose(maps[0], maps[1])


def test_intensity_maps_are_normalised_per_image(backend):
    maps = intensity_maps(backend.slots[0].retriever.model, torch.randn(2, 3, 64, 32))
    assert maps.shape == (2, 64, 32)
    np.testing.assert_allclose(maps.reshape(2, -1).min(1), 0, atol=1e-6)
    np.testing.assert_allclose(maps.reshape(2, -1).max(1), 1, atol=1e-6)


def test_overlay_resizes_the_map_to_the_image():
    image = np.full((256, 128, 3), 200, dtype=np.uint8)
    heatmap = np.zeros((64, 32), dtype=np.float32)
    heatmap[:32] = 1.0
    blended = overlay(image, heatmap)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert not np.array_equal(blended[10, 10], blended[250, 10])  # hot top half, cold bottom half


# -------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize("kind", ["gradcam", "intensity"])
def test_answer_for_a_query_from_the_set(backend, kind):
    query = backend.query_from_set(3)
    answers = backend.answer(query, kind)
    assert [a.label for a in answers] == ["baseline", "ccsc"]
    for answer, slot in zip(answers, backend.slots, strict=True):
        assert len(answer.results) == 5 and len(answer.maps) == 6
        for (tile, caption), match in zip(answer.results, answer.ranking.matches, strict=True):
            assert match.correct == (backend.data.gallery[match.index].pid == query.pid)
            assert tuple(tile[0, 0]) == COLOURS[match.correct]  # green / red frame
            assert tuple(tile[BORDER + 2, BORDER + 2]) != COLOURS[match.correct]
            assert caption.startswith(f"#{match.rank} d=") and f"cam {match.camid}" in caption
        frames = [COLOURS[m.correct] for m in answer.ranking.matches] + [QUERY_COLOUR]  # maps: matches, then query
        assert [tuple(tile[0, 0]) for tile, _ in answer.maps] == frames
        expected = slot.retriever.distances(slot.query_features[3:4], slot.gallery_features)[0]
        scored = [i for i, g in enumerate(backend.data.gallery) if (g.pid, g.camid) != (query.pid, query.camid)]
        assert answer.ranking.matches[0].distance == pytest.approx(float(expected[scored].min()))
        assert "AP" in answer.summary and "first correct match at rank" in answer.summary


def test_map_switch_changes_the_maps_not_the_ranking(backend):
    query = backend.query_from_set(0)
    gradcam, intensity = backend.answer(query, "gradcam")[0], backend.answer(query, "intensity")[0]
    assert [m.index for m in gradcam.ranking.matches] == [m.index for m in intensity.ranking.matches]
    assert not np.array_equal(gradcam.maps[1][0], intensity.maps[1][0])
    with pytest.raises(DemoInputError, match="Unknown map kind"):
        backend.answer(query, "saliency")


def test_answer_for_an_upload(backend):
    source = Image.open(backend.data.query[0].path)
    query = backend.query_from_upload(_png(source.convert("L")))
    assert query.pid is None and any("grayscale" in note for note in query.notes)
    answer = backend.answer(query)[0]
    assert len(answer.results) == 5 and len(answer.maps) == 6
    assert answer.ranking.average_precision is None and "identity unknown" in answer.summary
    assert all(tuple(tile[0, 0]) == COLOURS[None] for tile, _ in answer.results)


@pytest.mark.parametrize("payload", [None, b"GIF89a broken", b"\x00" * 2048])
def test_bad_upload_raises_a_demo_input_error(backend, payload):
    with pytest.raises(DemoInputError):
        backend.query_from_upload(payload)


def test_query_index_out_of_range(backend):
    with pytest.raises(DemoInputError, match="does not exist"):
        backend.query_from_set(len(backend.data.query))


@pytest.mark.parametrize("index", [0, 4])
def test_example_answer_is_the_chosen_query_answered(demo_checkpoints, feature_cache, index):
    demo = DemoBackend(
        [str(demo_checkpoints["baseline"]), str(demo_checkpoints["ccsc"])],
        cache_dir=feature_cache,
        example_query=index,
    )
    query, answers = demo.example_answer()
    chosen = demo.data.query[index]
    assert query.index == index and (query.pid, query.camid) == (chosen.pid, chosen.camid)
    expected = demo.answer(demo.query_from_set(index), "gradcam")
    for answer, reference in zip(answers, expected, strict=True):
        assert len(answer.results) == 5 and len(answer.maps) == 6
        assert [m.index for m in answer.ranking.matches] == [m.index for m in reference.ranking.matches]
        assert [tuple(tile[0, 0]) for tile, _ in answer.results] == [COLOURS[m.correct] for m in answer.ranking.matches]
        np.testing.assert_array_equal(answer.maps[0][0], reference.maps[0][0])  # Grad-CAM, the page's default


@pytest.mark.parametrize("index", [-1, 10_000])
def test_example_query_out_of_range_is_an_error_naming_the_option(demo_checkpoints, tmp_path, index):
    with pytest.raises(DemoInputError, match=r"--example-query .* the query set has \d+ images"):
        DemoBackend([str(demo_checkpoints["ccsc"])], cache_dir=tmp_path, example_query=index)


def test_query_answer_uses_its_cached_feature(backend):
    query = backend.query_from_set(2)
    from_cache = backend.answer(query, "intensity")[0].ranking
    fresh = backend.answer(Query(query.image, query.pid, query.camid), "intensity")[0].ranking
    assert [m.index for m in from_cache.matches] == [m.index for m in fresh.matches]
    assert [m.distance for m in from_cache.matches] == pytest.approx([m.distance for m in fresh.matches], rel=1e-4)


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def recorded_launch(monkeypatch):
    """Replace Gradio's server start with a recorder: the CLI's wiring is tested without serving."""
    import gradio as gr

    calls = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: calls.append({"app": self, **kwargs}))
    return calls


def test_cli_demo_listens_on_localhost_with_an_upload_limit(demo_checkpoints, tmp_path, recorded_launch):
    weights = [arg for name in ("baseline", "ccsc") for arg in ("--weights", str(demo_checkpoints[name]))]
    args = ["--cache-dir", str(tmp_path), "--max-upload-mb", "2", "--port", "7999", "--threads", "1"]
    assert main(["demo", *weights, *args]) == 0
    assert torch.get_num_threads() == 1
    (kwargs,) = recorded_launch
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["share"] is False
    assert kwargs["server_port"] == 7999 and kwargs["max_file_size"] == 2 * 2**20


def test_cli_demo_host_and_share_are_opt_in():
    args = build_parser().parse_args(["demo", "--host", "0.0.0.0", "--share"])
    assert (args.host, args.share) == ("0.0.0.0", True)
    defaults = build_parser().parse_args(["demo"])
    assert (defaults.host, defaults.share, defaults.weights) == ("127.0.0.1", False, None)


def test_cli_demo_bad_dataset_is_an_error_before_serving(demo_checkpoints, tmp_path, recorded_launch, capsys):
    code = main(["demo", "--weights", str(demo_checkpoints["ccsc"]), "--dataset", "nope", "--cache-dir", str(tmp_path)])
    assert code == 2 and not recorded_launch
    assert "Unknown dataset 'nope'" in capsys.readouterr().err


def test_cli_demo_example_query_out_of_range_is_an_error_before_serving(
    demo_checkpoints, tmp_path, recorded_launch, capsys
):
    args = ["--weights", str(demo_checkpoints["ccsc"]), "--example-query", "999", "--cache-dir", str(tmp_path)]
    assert main(["demo", *args]) == 2 and not recorded_launch
    assert "--example-query 999" in capsys.readouterr().err
