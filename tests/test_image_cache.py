"""The in-memory image cache (``data.cache_images``): exact items, fresh augmentation, its memory bound, workers.

An item read from the cache must be the item read from the file, to the pixel, under the same random seed; a
run with the cache gives the same weights as one without (``data.workers=0``, fixed seed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_overrides

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import submodule, torchreid
from ccsc_plugin.checkpoint import load_checkpoint
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data import image_cache, images

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
TREE = Path("market1501") / "Market-1501-v15.09.15"


@pytest.fixture(autouse=True)
def _no_cache_left_installed():
    yield
    image_cache.install(None)  # other tests expect torchreid to read the files


def cached_manager(market_root: Path, tmp_path: Path, *extra: str):
    overrides = [*tiny_run_overrides(market_root, tmp_path / "run"), "data.cache_images=true", *extra]
    return pipeline.build_datamanager(load_config(BASE, overrides))


def draw(dataset, index: int, seed: int) -> torch.Tensor:
    torchreid.utils.set_random_seed(seed)
    return dataset[index]["img"]


def test_cached_items_equal_items_read_from_the_files_under_the_same_seed(market_root, tmp_path, monkeypatch):
    manager = cached_manager(market_root, tmp_path)
    cache = image_cache.active()
    train = manager.train_loader.dataset
    query = manager.test_loader["market1501"]["query"].dataset
    gallery = manager.test_loader["market1501"]["gallery"].dataset
    assert cache is not None and len(cache) == len(train) + len(query) + len(gallery)
    assert submodule("data.datasets.dataset").read_image is image_cache.read_cached
    for dataset in (train, query, gallery):
        for index in range(0, len(dataset), 3):
            with monkeypatch.context() as patch:  # a file read would fail: these come from memory
                patch.setattr(image_cache, "read_image", lambda path: pytest.fail(f"{path} read from disk"))
                cached = draw(dataset, index, seed=index)
            image_cache.install(None)
            plain = draw(dataset, index, seed=index)
            image_cache.install(cache)
            assert cached.shape == (3, 64, 32)
            assert torch.equal(cached, plain), f"item {index} of {dataset.mode}"


def test_augmentation_still_draws_anew_from_the_cache(market_root, tmp_path):
    dataset = cached_manager(market_root, tmp_path).train_loader.dataset
    assert image_cache.active().get(dataset.train[0][0]) is not None
    items = [dataset[0]["img"] for _ in range(8)]  # flip and erasing, drawn anew for each item and epoch
    assert any(not torch.equal(items[0], item) for item in items[1:])
    assert torch.equal(draw(dataset, 0, seed=5), draw(dataset, 0, seed=5))  # and from the seed alone


def test_a_cache_that_does_not_fit_warns_once_and_reads_the_rest_from_disk(market_root, tmp_path):
    size = ["data.height=256", "data.width=128"]  # 96 kB a crop, so a few MB hold the tiny set
    with pytest.warns(image_cache.ImageCacheWarning) as caught:
        manager = cached_manager(market_root, tmp_path, *size, "data.cache_max_mb=5")
    train = manager.train_loader.dataset
    query = manager.test_loader["market1501"]["query"].dataset
    gallery = manager.test_loader["market1501"]["gallery"].dataset
    crop = 256 * 128 * 3
    total = (len(train) + len(query) + len(gallery)) * crop
    assert len(train) * crop <= 5 * image_cache.MB < (len(train) + len(query)) * crop  # only the train set fits
    cache = image_cache.active()
    assert len(cache) == len(train) and all(cache.get(path) is not None for path, *_ in train.train)
    assert cache.get(query.query[0][0]) is None
    (message,) = [str(warning.message) for warning in caught]
    assert f"need {total / image_cache.MB:,.1f} MB" in message and "more than data.cache_max_mb=5;" in message
    assert "cached: market1501 train;" in message
    assert "read from disk each time as without the cache: market1501 query, market1501 gallery" in message
    assert f"--set data.cache_max_mb={-(-total // image_cache.MB)}" in message
    assert "--set data.cache_images=false" in message
    assert query[0]["img"].shape == (3, 256, 128)  # read from the file, as without the cache

    with pytest.warns(image_cache.ImageCacheWarning, match="cached: nothing;"):
        cached_manager(market_root, tmp_path, *size, "data.cache_max_mb=1")
    assert len(image_cache.active()) == 0


def test_forked_workers_read_the_cache_filled_before_they_start(market_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(market_root / TREE, root / TREE)
    manager = cached_manager(root, tmp_path, "data.workers=1", "data.persistent_workers=false")
    shutil.rmtree(root / TREE)  # every image gone: only the cache can serve them now
    batch = next(iter(manager.train_loader))
    assert batch["img"].shape == (16, 3, 64, 32)
    query = next(iter(manager.test_loader["market1501"]["query"]))
    assert query["img"].shape[1:] == (3, 64, 32)


def test_building_without_the_cache_drops_it_and_reads_the_files(market_root, tmp_path):
    cached_manager(market_root, tmp_path)
    assert image_cache.active() is not None
    pipeline.build_datamanager(load_config(BASE, tiny_run_overrides(market_root, tmp_path / "run")))
    assert image_cache.active() is None
    assert submodule("data.datasets.dataset").read_image is images.read_image


def test_cache_max_mb_must_be_positive():
    with pytest.raises(RecipeError, match=r"data.cache_max_mb must be > 0 \(MB of decoded crops"):
        load_config(BASE, ["data.cache_max_mb=0"])


@pytest.mark.slow
def test_a_run_with_the_cache_ends_with_the_same_weights_as_one_without(market_root, tmp_path):
    weights = {}
    for cache in ("false", "true"):
        overrides = [
            *tiny_run_overrides(market_root, tmp_path / f"cache-{cache}"),
            "model.name=resnet18_ccsc",
            "train.max_epoch=1",
            "train.warmup_epochs=0",
            f"data.cache_images={cache}",
        ]
        result = pipeline.train(load_config(BASE, overrides))
        weights[cache] = load_checkpoint(result["checkpoint"])["state_dict"]
    assert weights["true"].keys() == weights["false"].keys()
    assert all(torch.equal(weights["true"][key], weights["false"][key]) for key in weights["true"])
