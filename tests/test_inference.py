"""FeatureExtractor: a checkpoint's stored recipe, any image input, batches, folders, and a FAISS index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ccsc_plugin import pipeline
from ccsc_plugin.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ccsc_plugin.config import RecipeError
from ccsc_plugin.pipeline.trained import config_from_checkpoint
from ccsc_plugin.serve.inference import FeatureExtractor, find_images


@pytest.fixture(scope="module")
def extractor(tiny_checkpoint) -> FeatureExtractor:
    return FeatureExtractor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=5)


def test_features_equal_the_evaluation_features_of_ccsc_reid_test(extractor, tiny_checkpoint):
    state = load_checkpoint(latest_checkpoint(tiny_checkpoint))
    cfg = config_from_checkpoint(state)
    assert (extractor.height, extractor.width) == (cfg.data.height, cfg.data.width) == (64, 32)
    engine = pipeline.build_engine(cfg)
    pipeline.load_weights(engine.model, latest_checkpoint(tiny_checkpoint))
    engine.set_model_mode("eval")
    loader = engine.test_loader["market1501"]["query"]
    expected, _, _ = engine.extract_loader_features(loader, "query")
    paths = [item[0] for item in loader.dataset.query]
    features = extractor(paths, progress=False)
    assert features.shape == (len(paths), 512) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)


def test_paths_pil_images_and_arrays_give_the_same_features(extractor, market_root):
    paths = sorted(market_root.glob("market1501/*/query/*.jpg"))[:4]
    pil = [Image.open(p).convert("RGB") for p in paths]
    arrays = [np.asarray(image) for image in pil]
    reference = extractor(paths, progress=False)
    for images in (pil, arrays, [a.astype(np.float32) / 255 for a in arrays], [str(p) for p in paths]):
        torch.testing.assert_close(extractor(images, progress=False), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(extractor(arrays[1], progress=False), reference[1:2], rtol=1e-5, atol=1e-5)
    one_batch = FeatureExtractor(extractor.model, 64, 32, device="cpu", batch_size=64)
    torch.testing.assert_close(one_batch(paths, progress=False), reference, rtol=1e-5, atol=1e-5)


def test_progress_bar_counts_images(extractor, market_root, capsys):
    extractor(sorted(market_root.glob("market1501/*/query/*.jpg"))[:6], progress=True)
    assert "6/6" in capsys.readouterr().err


def test_folder_extraction_and_index_find_each_image_itself(extractor, market_root):
    folder = next(market_root.glob("market1501/*/query"))
    assert find_images(folder.parent) == sorted(folder.parent.glob("*/*.jpg"))  # recursive by default
    assert find_images(folder.parent, recursive=False) == []
    features, paths = extractor.extract_folder(folder, progress=False)
    assert paths == sorted(folder.glob("*.jpg")) and features.shape == (len(paths), 512)
    index = extractor.index_folder(folder)
    query = sorted(folder.glob("*.jpg"))[3]
    hits = index.search(extractor(query, progress=False), k=3)
    assert hits.labels[0][0] == str(query) and hits.distances[0][0] == pytest.approx(0.0, abs=1e-3)


def test_bad_inputs_are_named(extractor, tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="H x W x 3"):
        extractor(np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor(np.full((8, 4, 3), 7.0))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        extractor([tmp_path / "missing.jpg"])
    with pytest.raises(FileNotFoundError, match="No images"):
        extractor.extract_folder(tmp_path)
    state = load_checkpoint(latest_checkpoint(tiny_checkpoint))
    del state["config"]
    save_checkpoint(state, tmp_path / "bare.pt")
    with pytest.raises(RecipeError, match="stores no 'config'"):
        FeatureExtractor.from_checkpoint(tmp_path / "bare.pt")
