"""``test.flip``: a feature is the mean of the image's and its mirror's, wherever test features are computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import ImageOps

from ccsc_plugin import pipeline
from ccsc_plugin.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ccsc_plugin.cli import main
from ccsc_plugin.config import get_default_config
from ccsc_plugin.data.images import read_image
from ccsc_plugin.models.flip import FlipAveraged, flip_averaged, mirror
from ccsc_plugin.pipeline.trained import config_from_checkpoint, load_trained
from ccsc_plugin.serve import demo_backend
from ccsc_plugin.serve.export import onnx_features
from ccsc_plugin.serve.gallery import DemoInputError, Item
from ccsc_plugin.serve.inference import FeatureExtractor
from ccsc_plugin.serve.retrieval import Retriever, cached_features

CLOSE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def images_and_mirrors(market_root, module_tmp) -> tuple[list[Path], list[Path]]:
    """Four gallery crops (64 x 32, the checkpoint's input size: no resize) and their mirrors saved losslessly."""
    folder = module_tmp("mirrors")
    images = sorted(market_root.glob("market1501/*/bounding_box_test/0*.jpg"))[:4]
    mirrors = [folder / f"{path.stem}-mirror.png" for path in images]
    for path, target in zip(images, mirrors, strict=True):
        ImageOps.mirror(read_image(path)).save(target)
    return images, mirrors


def _with_stored_flip(checkpoint: Path, folder: Path) -> Path:
    """A copy of ``checkpoint`` whose stored recipe says ``test.flip: true``."""
    state = load_checkpoint(latest_checkpoint(checkpoint))
    cfg = config_from_checkpoint(state)
    cfg.defrost()
    cfg.test.flip = True
    state["config"] = cfg.dump()
    return save_checkpoint(state, folder / "flip.pt")


def test_the_key_is_off_by_default():
    assert get_default_config().test.flip is False


def test_flip_averaged_is_the_mean_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 2, 5)).eval()
    images = torch.randn(3, 3, 4, 2)
    expected = (model(images) + model(images[..., [1, 0]])) / 2
    torch.testing.assert_close(flip_averaged(model, images), expected)
    torch.testing.assert_close(FlipAveraged(model)(images), expected)
    torch.testing.assert_close(flip_averaged(model, images, flip=False), model(images))
    assert not torch.allclose(expected, model(images))  # the mirror changes this model's features


def test_the_engine_of_ccsc_reid_test_averages_with_the_mirror(tiny_cfg):
    cfg = tiny_cfg.clone()
    cfg.defrost()
    cfg.test.flip = True
    engine = pipeline.build_engine(cfg)  # what `ccsc-reid test` builds from its recipe
    engine.set_model_mode("eval")
    images = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0)).to(engine.device)
    with torch.no_grad():
        plain = engine.model(images)
        expected = (plain + engine.model(mirror(images))) / 2
    assert engine.test_flip
    torch.testing.assert_close(engine.extract_features(images), expected, **CLOSE)
    assert not torch.allclose(expected, plain, **CLOSE)


@pytest.mark.parametrize("flip", [None, True])
def test_feature_extractor_and_extract_average_each_image_with_its_mirror_file(
    tiny_checkpoint, images_and_mirrors, tmp_path, flip
):
    images, mirrors = images_and_mirrors
    source = tiny_checkpoint if flip else _with_stored_flip(tiny_checkpoint, tmp_path)  # --flip, or the stored key
    flipped = FeatureExtractor.from_checkpoint(source, device="cpu", flip=flip)
    plain = FeatureExtractor.from_checkpoint(tiny_checkpoint, device="cpu")
    assert flipped.flip and not plain.flip
    expected = (plain(images, progress=False) + plain(mirrors, progress=False)) / 2
    torch.testing.assert_close(flipped(images, progress=False), expected, **CLOSE)
    out = tmp_path / "feats.npz"
    option = ["--flip"] if flip else []  # else the stored test.flip decides
    assert main(["extract", str(source), "--images", str(images[0].parent), "--out", str(out), *option]) == 0
    with np.load(out) as npz:
        rows = [list(npz["paths"]).index(str(path)) for path in images]
        assert bool(npz["flip"])
        np.testing.assert_allclose(npz["features"][rows], expected.numpy(), rtol=1e-5, atol=1e-5)


def test_the_demos_gallery_features_average_each_image_with_its_mirror(tiny_checkpoint, images_and_mirrors, tmp_path):
    images, mirrors = images_and_mirrors
    flipped, plain = Retriever(tiny_checkpoint, flip=True), Retriever(tiny_checkpoint)
    assert Retriever(_with_stored_flip(tiny_checkpoint, tmp_path)).flip and not plain.flip
    assert flipped.fingerprint != plain.fingerprint  # the feature cache never serves one for the other
    features = cached_features(flipped, [Item(str(p)) for p in images], tmp_path / "cache")
    expected = (
        cached_features(plain, [Item(str(p)) for p in images], tmp_path / "cache")
        + cached_features(plain, [Item(str(p)) for p in mirrors], tmp_path / "cache")
    ) / 2
    torch.testing.assert_close(features, expected, **CLOSE)


@pytest.mark.parametrize(("option", "passed"), [([], None), (["--flip"], True), (["--no-flip"], False)])
def test_demo_flip_option_reaches_the_backend(monkeypatch, option, passed, capsys):
    received = {}

    def record(**kwargs):
        received.update(kwargs)
        raise DemoInputError("recorded")

    monkeypatch.setattr(demo_backend, "DemoBackend", record)
    assert main(["demo", *option]) == 2 and "recorded" in capsys.readouterr().err
    assert received["flip"] is passed


def test_export_with_flip_writes_the_flip_averaged_graph(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "flip.onnx"
    assert main(["export", str(tiny_checkpoint), "--onnx", str(out), "--flip"]) == 0
    assert "max |difference|" in capsys.readouterr().out
    model = load_trained(tiny_checkpoint).model
    images = torch.randn(3, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(images).numpy()
        expected = (plain + model(mirror(images)).numpy()) / 2
    features = onnx_features(out, images.numpy())
    np.testing.assert_allclose(features, expected, atol=1e-4, rtol=0)
    assert not np.allclose(features, plain, atol=1e-4, rtol=0)
    metadata = {prop.key: prop.value for prop in onnx.load(out).metadata_props}
    assert metadata["flip"] == "true"
