"""The four benchmarks as miniatures, loaded through torchreid's own dataset classes and data manager."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINI_SPEC

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.cli import main
from ccsc_plugin.config import load_config
from ccsc_plugin.datasets import EXPECTED_LAYOUTS, DatasetNotFound, check_dataset
from ccsc_plugin.datasets.miniatures import MiniatureSpec, write_miniature
from ccsc_plugin.pipeline import build_datamanager

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
T, E, C, IMG = MINI_SPEC.num_train_ids, MINI_SPEC.num_test_ids, MINI_SPEC.num_cams, MINI_SPEC.images_per_cam

# (ids, images, cameras) per split, from the protocols the miniatures mirror.
EXPECTED = {
    # Market-1501: the gallery also holds one 0000 distractor (counted) and one -1 junk image (skipped).
    "market1501": {"train": (T, T * C * IMG, C), "query": (E, E * C, C), "gallery": (E + 1, E * C * (IMG - 1) + 1, C)},
    "dukemtmcreid": {"train": (T, T * C * IMG, C), "query": (E, E * C, C), "gallery": (E, E * C * (IMG - 1), C)},
    # MSMT17: one image per training identity sits in list_val.txt, not in train.
    "msmt17": {"train": (T, T * C * IMG - T, C), "query": (E, E * C, C), "gallery": (E, E * C * (IMG - 1), C)},
    # CUHK03 767/700 protocol: two views per camera pair; one query per view and test identity.
    "cuhk03": {"train": (T, T * 2 * IMG, 2), "query": (E, E * 2, 2), "gallery": (E, E * 2 * (IMG - 1), 2)},
}
SETTINGS = [
    ("market1501", {}),
    ("dukemtmcreid", {}),
    ("cuhk03", {"cuhk03_labeled": True}),
    ("cuhk03", {"cuhk03_labeled": False}),
    ("msmt17", {}),
]


def split_counts(data: list) -> tuple[int, int, int]:
    return len({item[1] for item in data}), len(data), len({item[2] for item in data})


@pytest.mark.parametrize(("name", "kwargs"), SETTINGS, ids=["market", "duke", "cuhk-lab", "cuhk-det", "msmt"])
def test_miniature_loads_through_torchreids_class_with_the_right_counts(miniature_root, name, kwargs):
    root, written = miniature_root
    dataset = torchreid.data.datasets.init_image_dataset(name, root=str(root), mode="train", verbose=False, **kwargs)
    counts = written[name]
    if name == "cuhk03":
        counts = counts["labeled" if kwargs["cuhk03_labeled"] else "detected"]
    for split in ("train", "query", "gallery"):
        got = split_counts(getattr(dataset, split))
        assert got == EXPECTED[name][split], f"{name} {split}"
        wrote = getattr(counts, split)
        assert got == (len(wrote.ids), wrote.images, len(wrote.cams))
    assert dataset.num_train_pids == T and dataset.num_train_cams == EXPECTED[name]["train"][2]
    assert sorted({item[1] for item in dataset.train}) == list(range(T))  # relabelled for the classifier


def test_cuhk03_labeled_and_detected_are_different_image_sets(miniature_root):
    root, _ = miniature_root
    labeled = torchreid.data.datasets.init_image_dataset("cuhk03", root=str(root), cuhk03_labeled=True, verbose=False)
    detected = torchreid.data.datasets.init_image_dataset("cuhk03", root=str(root), cuhk03_labeled=False, verbose=False)
    assert all("images_labeled" in item[0] for item in labeled.train)
    assert all("images_detected" in item[0] for item in detected.train)
    first_labeled, first_detected = (Path(ds.train[0][0]).read_bytes() for ds in (labeled, detected))
    assert first_labeled != first_detected  # detected boxes are shifted crops


def test_market_junk_images_are_on_disk_but_skipped(miniature_root):
    root, _ = miniature_root
    gallery_dir = root / "market1501" / "Market-1501-v15.09.15" / "bounding_box_test"
    assert (gallery_dir / "-1_c1s1_000401_03.jpg").is_file()
    dataset = torchreid.data.datasets.init_image_dataset("market1501", root=str(root), verbose=False)
    assert not any(Path(item[0]).name.startswith("-1_") for item in dataset.gallery)
    assert 0 in {item[1] for item in dataset.gallery}  # the distractor is a gallery identity


@pytest.mark.parametrize(
    "recipe", ["market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "msmt17"], ids=lambda r: r
)
def test_recipe_selects_its_benchmark_in_the_data_manager(miniature_root, recipe, tmp_path):
    root, _ = miniature_root
    overrides = [f"data.root={root}", "data.height=64", "data.width=32", "data.workers=0", "train.batch_size=8"]
    cfg = load_config(RECIPES / recipe / "softmax_ccsc.yaml", overrides + [f"data.save_dir={tmp_path}"])
    manager = build_datamanager(cfg)
    assert manager.num_train_pids == T
    batch = next(iter(manager.train_loader))
    assert batch["img"].shape[1:] == (3, 64, 32) and len(batch["camid"]) == 8
    impath = batch["impath"][0]
    expected_folder = {"cuhk03_labeled": "images_labeled", "cuhk03_detected": "images_detected"}.get(recipe, "")
    assert expected_folder in impath and str(root) in impath


@pytest.mark.parametrize("name", sorted(EXPECTED_LAYOUTS))
def test_missing_benchmark_names_the_path_and_layout(name, tmp_path):
    with pytest.raises(DatasetNotFound) as error:
        check_dataset(name, tmp_path)
    message = str(error.value)
    folder, layout = EXPECTED_LAYOUTS[name]
    assert str(tmp_path / folder) in message and layout in message


@pytest.mark.parametrize(
    ("name", "remove"),
    [
        ("market1501", "market1501/Market-1501-v15.09.15/query"),
        ("dukemtmcreid", "dukemtmc-reid/DukeMTMC-reID/bounding_box_test"),
        ("cuhk03", "cuhk03/cuhk03_new_protocol_config_labeled.mat"),
        ("msmt17", "msmt17/MSMT17_V1/list_query.txt"),
    ],
)
def test_incomplete_benchmark_names_the_missing_file(name, remove, tmp_path):
    small = MiniatureSpec(num_train_ids=2, num_test_ids=1, num_cams=2, images_per_cam=2, height=64, width=32)
    write_miniature(name, tmp_path, small)
    check_dataset(name, tmp_path)  # complete: no error
    target = tmp_path / remove
    if target.is_dir():
        for child in target.iterdir():
            child.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetNotFound, match="incomplete") as error:
        check_dataset(name, tmp_path)
    assert str(target) in str(error.value)


@pytest.mark.parametrize("recipe", ["cuhk03_detected/softmax.yaml", "msmt17/softmax.yaml"])
def test_train_on_a_missing_benchmark_exits_2_without_downloading(recipe, tmp_path, capsys):
    data_root = tmp_path / "data"
    data_root.mkdir()
    overrides = [f"data.root={data_root}", f"data.save_dir={tmp_path / 'run'}", "model.pretrained=false"]
    assert main(["train", str(RECIPES / recipe), *[a for o in overrides for a in ("--set", o)]]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(data_root) in err
    assert not any(data_root.iterdir())  # torchreid was never reached, so nothing was created or fetched


@pytest.mark.parametrize(
    ("name", "spec", "problem"),
    [
        ("market1501", MiniatureSpec(num_cams=7), "cameras 1..6"),
        ("cuhk03", MiniatureSpec(images_per_cam=6), "at most 5"),
        ("dukemtmcreid", MiniatureSpec(images_per_cam=1), "gallery"),
        ("cuhk03", MiniatureSpec(images_per_cam=1), "gallery"),
        ("msmt17", MiniatureSpec(num_test_ids=0), "one train and one test identity"),
        ("viper", MiniatureSpec(), "No miniature"),
    ],
)
def test_impossible_miniature_is_refused(name, spec, problem, tmp_path):
    with pytest.raises(ValueError, match=problem):
        write_miniature(name, tmp_path, spec)


def test_cuhk03_mat_files_have_matlabs_formats(miniature_root):
    from scipy.io.matlab import matfile_version

    root, _ = miniature_root
    assert matfile_version(root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat") == (2, 0)  # v7.3: HDF5
    for kind in ("labeled", "detected"):
        assert matfile_version(root / "cuhk03" / f"cuhk03_new_protocol_config_{kind}.mat") == (1, 0)  # v5
