"""The generated SynthCam set: determinism, Market-1501 layout and naming, splits, camera effects."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ccsc_plugin._torchreid import image_dataset_registry, torchreid
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data import synthcam, synthcam_render
from ccsc_plugin.data.registry import bound_datasets
from ccsc_plugin.data.synthcam import SynthCam, SynthCamSpec, generate, render_shot
from ccsc_plugin.data.synthcam_render import identity

MARKET_NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")
SPEC = SynthCamSpec(num_train_ids=6, num_test_ids=4, num_cams=3, images_per_cam=3, height=64, width=32, seed=5)
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture(scope="module")
def tree(module_tmp) -> Path:
    return generate(module_tmp("synthcam") / "set", SPEC, progress=False)


def _parse(folder: Path) -> list[tuple[int, int, str]]:
    """(pid, camera, name) of every image in a split folder; fails on any non-Market name."""
    parsed = []
    for path in sorted(folder.iterdir()):
        match = MARKET_NAME.match(path.name)
        assert match, f"{path.name} is not a Market-1501 name"
        parsed.append((int(match.group(1)), int(match.group(2)), path.name))
    return parsed


def test_layout_naming_and_counts(tree):
    assert sorted(p.name for p in tree.iterdir()) == ["bounding_box_test", "bounding_box_train", "query", "spec.json"]
    train, query, gallery = (_parse(tree / split) for split in ("bounding_box_train", "query", "bounding_box_test"))
    per_id = SPEC.num_cams * SPEC.images_per_cam
    assert len(train) == SPEC.num_train_ids * per_id
    assert len(query) == SPEC.num_test_ids * SPEC.num_cams  # one query per identity and camera
    assert len(gallery) == SPEC.num_test_ids * SPEC.num_cams * (SPEC.images_per_cam - 1)
    assert {pid for pid, _, _ in train} == set(range(1, SPEC.num_train_ids + 1))
    assert {cam for _, cam, _ in train + query + gallery} == set(range(1, SPEC.num_cams + 1))
    # Disjoint test identities; every query has its identity in the gallery under another camera.
    assert not {pid for pid, _, _ in train} & {pid for pid, _, _ in query + gallery}
    for pid, cam, _ in query:
        assert any(g_pid == pid and g_cam != cam for g_pid, g_cam, _ in gallery)


def test_same_seed_same_bytes_other_seed_other_images(tree, tmp_path):
    again = generate(tmp_path / "again", SPEC, progress=False)
    files = sorted(p.relative_to(tree) for p in tree.rglob("*.jpg"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.jpg"))
    assert all((tree / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = np.asarray(render_shot(SynthCamSpec(**{**SPEC.__dict__, "seed": 6}), 0, 0, 0))
    assert np.abs(other.astype(int) - np.asarray(render_shot(SPEC, 0, 0, 0))).mean() > 5


def _mean_abs_difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_same_camera_shots_far_more_alike_than_cross_camera():
    spec = SynthCamSpec(num_cams=4, height=64, width=32, seed=2)
    same, cross = [], []
    for index in range(8):
        shots = {(cam, shot): render_shot(spec, index, cam, shot) for cam in range(4) for shot in range(2)}
        same += [_mean_abs_difference(shots[cam, 0], shots[cam, 1]) for cam in range(4)]
        cross += [_mean_abs_difference(shots[a, 0], shots[b, 0]) for a in range(4) for b in range(a + 1, 4)]
    assert np.mean(cross) > 2.5 * np.mean(same)


def test_cameras_differ_in_view_light_and_scale():
    styles = [synthcam_render.camera_style(0, cam) for cam in range(4)]
    assert [s["view"] for s in styles[:3]] == ["front", "back", "side"]
    assert len({round(s["brightness"], 3) for s in styles}) == 4
    assert len({round(s["scale"], 3) for s in styles}) == 4


def test_look_alike_pairs_share_clothes_and_differ_in_a_detail():
    for index in range(1, 40, 2):
        person, twin = identity(0, index), identity(0, index - 1)
        assert (person["top"], person["bottom"], person["pattern"]) == (twin["top"], twin["bottom"], twin["pattern"])
        assert person["bag"] != twin["bag"]


@pytest.mark.parametrize(("detail", "value"), [("bag", "backpack"), ("logo", ((250, 250, 0), "square"))])
def test_a_detail_shows_in_some_views_only(detail, value):
    """A backpack is seen from behind (straps only from the front); a chest logo from the front only."""
    person = {**identity(0, 0), "bag": "none", "logo": None}
    gaps = {}
    for cam in range(3):
        style = synthcam_render.camera_style(0, cam)
        without = synthcam_render.draw_person(person, style, (128, 64), np.random.default_rng(0))
        with_detail = synthcam_render.draw_person({**person, detail: value}, style, (128, 64), np.random.default_rng(0))
        gaps[style["view"]] = _mean_abs_difference(without, with_detail)
    shown, hidden = ("back", "front") if detail == "bag" else ("front", "back")
    assert gaps[shown] > 2 * gaps[hidden]


def test_generation_is_atomic(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthcam.render_shot

    def failing(*args):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(synthcam, "render_shot", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "set", SPEC, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the set nor its temporary folder is left behind


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_cams", 1, "num_cams"),
        ("images_per_cam", 1, "images_per_cam"),
        ("num_test_ids", 0, "num_test_ids"),
        ("seed", -1, "seed must be >= 0"),
    ],
)
def test_bad_spec_is_rejected(field, value, message):
    with pytest.raises(RecipeError, match=message):
        SynthCamSpec(**{**SPEC.__dict__, field: value})


def test_torchreid_dataset_generates_on_first_use(tmp_path):
    dataset = SynthCam(root=str(tmp_path), spec=SPEC, verbose=False)
    assert dataset.num_train_pids == SPEC.num_train_ids
    assert dataset.num_train_cams == SPEC.num_cams
    assert sorted({pid for _, pid, _, _ in dataset.train}) == list(range(SPEC.num_train_ids))  # relabelled
    assert (tmp_path / "synthcam" / SPEC.key() / "spec.json").is_file()


OTHER_SPEC = SynthCamSpec(num_train_ids=4, num_test_ids=2, num_cams=2, images_per_cam=2, height=32, width=16, seed=7)


@pytest.mark.parametrize("by_name", [False, True], ids=["constructed", "by-name-through-torchreid"])
def test_datasets_built_one_after_the_other_keep_their_own_specs(tmp_path, by_name):
    def build(spec: SynthCamSpec) -> SynthCam:
        if not by_name:
            return SynthCam(root=str(tmp_path), spec=spec, verbose=False)
        with bound_datasets(synthcam=spec.__dict__):  # as pipeline.build_datamanager binds a recipe's data.synthcam
            return torchreid.data.datasets.init_image_dataset("synthcam", root=str(tmp_path), verbose=False)

    first, second = build(SPEC), build(OTHER_SPEC)
    assert (first.spec, second.spec) == (SPEC, OTHER_SPEC)
    assert (Path(first.data_dir).name, Path(second.data_dir).name) == (SPEC.key(), OTHER_SPEC.key())
    assert (first.num_train_pids, second.num_train_pids) == (SPEC.num_train_ids, OTHER_SPEC.num_train_ids)
    assert (first.num_train_cams, second.num_train_cams) == (SPEC.num_cams, OTHER_SPEC.num_cams)
    assert not hasattr(SynthCam, "spec")  # no class-level spec for one dataset to leave behind for the next
    assert image_dataset_registry()["synthcam"] is SynthCam  # nor a spec bound in torchreid's registry


def test_quickstart_recipe_is_the_paper_family_sized_for_a_cpu():
    cfg = load_config(RECIPES / "quickstart.yaml")
    paper = load_config(RECIPES / "base.yaml")
    assert list(cfg.data.sources) == ["synthcam"]
    assert cfg.model.name == paper.model.name == "resnet50_ccsc"
    assert (cfg.loss.ccsc.weight, cfg.loss.softmax.weight) == (paper.loss.ccsc.weight, paper.loss.softmax.weight)
    assert cfg.train.lr_scheduler == paper.train.lr_scheduler and len(cfg.train.stepsize) == 2
    assert cfg.data.height < paper.data.height and cfg.train.max_epoch < paper.train.max_epoch
    assert SynthCamSpec(**dict(cfg.data.synthcam)).num_test_ids > 0
    tables = load_config(RECIPES / "synthetic_tables.yaml")
    assert tables.model.name == cfg.model.name and tables.data.height == cfg.data.height
