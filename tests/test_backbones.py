"""CCSC with any backbone: resnet50_ccsc on other timm ResNets, and torchreid's own zoo models by name.

Each model is trained one tiny epoch through the CCSC engine, then rebuilt from its checkpoint and used the
ways a trained model is used: features, FAISS, ONNX export and the demo's Grad-CAM / Fig. 4 maps.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
from conftest import tiny_run_overrides
from timm.models.resnet import BasicBlock, Bottleneck

from ccsc_plugin import pipeline
from ccsc_plugin.checkpoint import latest_checkpoint, load_checkpoint
from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.models.ccsc_resnet import BACKBONES, PretrainedWeightsUnavailable, ResNet50CCSC, feature_dim
from ccsc_plugin.pipeline.trained import model_from_checkpoint
from ccsc_plugin.serve.demo_backend import DemoBackend
from ccsc_plugin.serve.export import onnx_features
from ccsc_plugin.serve.inference import FeatureExtractor
from ccsc_plugin.serve.visualisation import gradcam_maps, intensity_maps, target_layer

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")
ONE_EPOCH = ["train.max_epoch=1", "train.warmup_epochs=0"]
# The recipe overrides that select each model, and the module Grad-CAM must use (the last feature map's).
MODELS = {
    "resnet18": (["model.backbone=resnet18"], lambda model: model.backbone.layer4),
    "osnet_x0_25": (["model.name=osnet_x0_25"], lambda model: model.conv5),
    "resnet50_fc512": (["model.name=resnet50_fc512"], lambda model: model.layer4),
}
CASES = [pytest.param("resnet18"), pytest.param("osnet_x0_25"), pytest.param("resnet50_fc512", marks=pytest.mark.slow)]


def _cfg(overrides: list[str], *extra: str):
    return load_config(BASE, [*overrides, *extra])


@pytest.fixture(scope="module", params=CASES)
def trained(request, market_root, tmp_path_factory) -> tuple[str, Path]:
    """(case, run folder) of one tiny epoch of softmax + CCSC with that model."""
    case = request.param
    save_dir = tmp_path_factory.mktemp(f"run-{case}")
    cfg = _cfg(tiny_run_overrides(market_root, save_dir), *ONE_EPOCH, *MODELS[case][0])
    pipeline.train(cfg)
    return case, save_dir


# ------------------------------------------------------------------------------------------- building


@pytest.mark.parametrize("case", CASES)
def test_model_returns_logits_and_features_in_training_and_features_in_eval(tiny_overrides, case):
    model = pipeline.build_model(_cfg(tiny_overrides, *MODELS[case][0]), num_classes=6)
    images = torch.rand(4, 3, 64, 32)
    logits, features = model.train()(images)
    dim = feature_dim(model, 64, 32)
    assert logits.shape == (4, 6) and features.shape == (4, dim)
    with torch.no_grad():
        assert model.eval()(images).shape == (4, dim)
    assert target_layer(model) is MODELS[case][1](model)


@pytest.mark.parametrize("backbone", BACKBONES)
@torch.no_grad()
def test_every_backbone_has_last_stride_one_and_the_papers_head(backbone):
    model = ResNet50CCSC(num_classes=3, backbone=backbone).eval()
    block = model.backbone.layer4[0]
    strided = block.conv2 if isinstance(block, Bottleneck) else block.conv1
    assert isinstance(block, (BasicBlock, Bottleneck)) and strided.stride == (1, 1)
    assert block.downsample[0].stride == (1, 1)
    featuremap = model(torch.rand(1, 3, 64, 32), return_featuremaps=True)
    assert featuremap.shape == (1, model.backbone.num_features, 4, 2)  # 64x32 / 16: layer4 keeps its input size
    assert model.reduction[0].in_channels == model.backbone.num_features and model.reduction[0].out_channels == 512
    assert model(torch.rand(2, 3, 64, 32)).shape == (2, 512)


def test_resnet18_backbone_is_built_from_the_recipe_key(tiny_overrides):
    model = pipeline.build_model(_cfg(tiny_overrides, "model.backbone=resnet18"), num_classes=6)
    assert isinstance(model, ResNet50CCSC) and isinstance(model.backbone.layer1[0], BasicBlock)
    assert len(model.backbone.layer3) == 2  # resnet18: 2-2-2-2 blocks


def test_imagenet_weights_follow_the_backbone(tmp_path):
    reference = timm.create_model("resnet18", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = ResNet50CCSC(num_classes=3, pretrained=str(tmp_path / "resnet18.pth"), backbone="resnet18")
    torch.testing.assert_close(model.backbone.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match="torchvision resnet18 ImageNet .*model.backbone"):
        ResNet50CCSC(num_classes=3, pretrained=str(tmp_path / "resnet50.pth"), backbone="resnet18")
    with pytest.raises(PretrainedWeightsUnavailable, match="timm 'resnet18'.*pretrained_path=/path/to/resnet18.pth"):
        ResNet50CCSC(num_classes=3, pretrained=True, backbone="resnet18")  # the tests run with the hub offline


def test_feature_size_is_measured_when_the_model_does_not_say_it(tiny_cfg):
    model = pipeline.build_model(_cfg([], "model.name=osnet_x0_25", "model.pretrained=false"), num_classes=8)
    del model.feature_dim
    assert feature_dim(model, 64, 32) == 512 and model.training  # its mode is left as it was
    datamanager = pipeline.build_datamanager(tiny_cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    engine = ImageCCSCEngine(datamanager, model, optimizer, use_gpu=False, losses={"center": {"weight": 0.1}})
    assert engine.loss_terms["center"].module.centers.shape == (datamanager.num_train_pids, 512)


# ------------------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.backbone=resnet19"], "model.backbone must be one of resnet18, resnet34, resnet50, resnet101"),
        (["model.name=osnet_x0_2"], "model.name='osnet_x0_2' is not a model torchreid knows; nearest: osnet_x0_25"),
        (["model.name=osnet_x0_25", "model.backbone=resnet18"], "model.backbone applies to model.name=resnet50_ccsc"),
        (["model.name=osnet_x0_25", "model.pretrained_path=/w.pth"], "model.pretrained_path applies to"),
    ],
)
def test_model_keys_are_checked_with_the_recipe(overrides, message):
    with pytest.raises(RecipeError, match=message):
        load_config(BASE, overrides)


def test_unknown_model_name_is_an_exit_2_message(tmp_path, capsys):
    assert main(["train", BASE, "--set", "model.name=resnet50_fc51", "--set", f"data.save_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "nearest: resnet50_fc512" in err and "Traceback" not in err


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty torch cache: torchreid cannot download any weights."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-cache"))


@pytest.mark.parametrize("name", ["osnet_x0_25", "resnet50_fc512"])
def test_zoo_weights_offline_are_a_message_or_random_init_if_allowed(offline, tiny_overrides, name):
    cfg = _cfg(tiny_overrides, f"model.name={name}", "model.pretrained=true")
    with pytest.raises(PretrainedWeightsUnavailable, match=f"torchreid's {name}.*model.pretrained=false"):
        pipeline.build_model(cfg, num_classes=6)
    allowed = _cfg(tiny_overrides, f"model.name={name}", "model.pretrained=true", "model.allow_random_init=true")
    with pytest.warns(UserWarning, match="Continuing with random init"):
        assert pipeline.build_model(allowed, num_classes=6).classifier.out_features == 6


# ------------------------------------------------------------------------------- trained, then used


def test_one_epoch_trains_and_the_checkpoint_records_the_model(trained):
    case, run = trained
    state = load_checkpoint(latest_checkpoint(run))
    model, cfg = model_from_checkpoint(state, origin=str(run))
    expected = _cfg([], *MODELS[case][0])
    assert (cfg.model.name, cfg.model.backbone) == (expected.model.name, expected.model.backbone)
    assert f"backbone: {expected.model.backbone}" in state["config"]
    rebuilt = model.state_dict()
    assert rebuilt.keys() == state["state_dict"].keys()
    assert all(torch.equal(rebuilt[key], value) for key, value in state["state_dict"].items())
    assert not model.training and target_layer(model) is MODELS[case][1](model)


@pytest.mark.parametrize(("key", "value"), [("name", "no_such_net"), ("backbone", "resnet19")])
def test_checkpoint_of_an_unknown_model_is_a_message(tiny_checkpoint, key, value):
    state = load_checkpoint(latest_checkpoint(tiny_checkpoint))
    stored = {"name": "name: resnet50_ccsc", "backbone": "backbone: resnet50"}[key]
    assert stored in state["config"]
    state["config"] = state["config"].replace(stored, f"{key}: {value}")
    with pytest.raises(RecipeError, match=f"(?s)run.pt: the recipe stored in this checkpoint is invalid.*{value}"):
        model_from_checkpoint(state, origin="run.pt")


def test_features_and_faiss_index_of_the_trained_model(trained, market_root):
    _, run = trained
    extractor = FeatureExtractor.from_checkpoint(run, device="cpu", batch_size=4)
    gallery = market_root / "market1501" / "Market-1501-v15.09.15" / "bounding_box_test"
    index = extractor.index_folder(gallery)
    paths = sorted(gallery.glob("*.jpg"))[:3]
    hits = index.search(extractor(paths, progress=False), k=1)
    assert [row[0] for row in hits.labels] == [str(path) for path in paths]  # each image finds itself


def test_onnx_export_of_the_trained_model_round_trips(trained, market_root, tmp_path, capsys):
    case, run = trained
    out = tmp_path / f"{case}.onnx"
    assert main(["export", str(run), "--onnx", str(out)]) == 0
    extractor = FeatureExtractor.from_checkpoint(run, device="cpu")
    images = extractor.preprocess(sorted(market_root.glob("market1501/*/bounding_box_test/*.jpg"))[:3])
    with torch.no_grad():
        expected = extractor.model(images).numpy()
    np.testing.assert_allclose(onnx_features(out, images.numpy()), expected, atol=1e-4, rtol=0)
    metadata = {prop.key: prop.value for prop in onnx.load(out).metadata_props}
    cfg = _cfg([], *MODELS[case][0])
    assert metadata["model"] == cfg.model.name and metadata.get("backbone", case) == case


def test_demo_answers_with_gradcam_and_fig4_maps(trained, tmp_path):
    _, run = trained
    backend = DemoBackend([str(run)], cache_dir=tmp_path / "cache")
    for kind in ("gradcam", "intensity"):
        (answer,) = backend.answer(backend.query_from_set(0), kind)
        assert len(answer.results) == 5 and len(answer.maps) == 6
    model = backend.slots[0].retriever.model
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, 64, 32, generator=generator).repeat(2, 1, 1, 1)
    references = torch.randn(2, feature_dim(model, 64, 32), generator=generator)
    explained = gradcam_maps(model, images, references)
    assert explained.shape == (2, 64, 32) and explained.min() >= 0 and explained.max() <= 1
    assert not np.allclose(explained[0], explained[1])  # one image, two references: two explanations
    looked_at = intensity_maps(model, images)
    assert looked_at.shape == (2, 64, 32) and looked_at.min() == 0 and looked_at.max() == 1
    assert not target_layer(model)._forward_hooks  # hooks released
