"""CCSC with any backbone: the paper's head on any timm CNN (``<arch>_ccsc``), and torchreid's zoo models by name.

Each family's last stride, and what timm networks are refused. Each model is trained one tiny epoch through the
CCSC engine, then rebuilt from its checkpoint and used the ways a trained model is used: features, FAISS, ONNX
export and the demo's Grad-CAM / Fig. 4 maps. A checkpoint stored with ``model.backbone`` reloads under its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
import yaml
from conftest import tiny_run_overrides
from timm.models.resnet import BasicBlock, Bottleneck

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import model_factory, torchreid
from ccsc_plugin.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.models import EAGER_ARCHS, CCSCModel, PretrainedWeightsUnavailable, create_model, feature_dim
from ccsc_plugin.pipeline.trained import load_trained, model_from_checkpoint
from ccsc_plugin.serve.demo_backend import DemoBackend
from ccsc_plugin.serve.export import onnx_features
from ccsc_plugin.serve.inference import FeatureExtractor
from ccsc_plugin.serve.visualisation import gradcam_maps, intensity_maps, target_layer

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")
ONE_EPOCH = ["train.max_epoch=1", "train.warmup_epochs=0"]
# The recipe overrides that select each model, and the module Grad-CAM must use (the last feature map's).
MODELS = {
    "resnet18": (["model.name=resnet18_ccsc"], lambda model: model.backbone.layer4),
    "osnet_x0_25": (["model.name=osnet_x0_25"], lambda model: model.conv5),
    "resnet50_fc512": (["model.name=resnet50_fc512"], lambda model: model.layer4),
}
CASES = [pytest.param("resnet18"), pytest.param("osnet_x0_25"), pytest.param("resnet50_fc512", marks=pytest.mark.slow)]
# Small timm networks of each family -> the size of their feature map against the input's: 16 where the last
# stride is set to 1 (models.last_stride), 32 where the family keeps timm's strides.
FAMILIES = {
    "resnet18": 16,  # ResNet, BasicBlock
    "resnet26d": 16,  # ResNet-D: 2x2 average-pool shortcut
    "seresnext26d_32x4d": 16,  # SE-ResNeXt-D
    "legacy_seresnet18": 16,  # SE-ResNet (senet.py): strides in its 1x1 conv
    "resnest14d": 16,  # ResNeSt: split attention, 3x3 average pool
    "regnetx_002": 16,  # RegNet
    "efficientnet_b0": 32,  # its last stage does not stride
    "mobilenetv3_small_050": 32,  # nor does MobileNetV3's
    "convnext_atto": 32,  # a 2x2 patchify convolution strides ConvNeXt's last stage
}
NOT_CNNS = ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "deit_tiny_patch16_224"]


def _cfg(overrides: list[str], *extra: str):
    return load_config(BASE, [*overrides, *extra])


@pytest.fixture(scope="module", params=CASES)
def trained(request, market_root, module_tmp) -> tuple[str, Path]:
    """(case, run folder) of one tiny epoch of softmax + CCSC with that model."""
    case = request.param
    save_dir = module_tmp(f"run-{case}")
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


@pytest.mark.parametrize("arch", EAGER_ARCHS)
@torch.no_grad()
def test_every_registered_resnet_has_last_stride_one_and_the_papers_head(arch):
    model = torchreid.models.build_model(f"{arch}_ccsc", num_classes=3, loss="ccsc", pretrained=False).eval()
    block = model.backbone.layer4[0]
    strided = block.conv2 if isinstance(block, Bottleneck) else block.conv1
    assert isinstance(block, (BasicBlock, Bottleneck)) and strided.stride == (1, 1)
    assert block.downsample[0].stride == (1, 1)
    featuremap = model(torch.rand(1, 3, 64, 32), return_featuremaps=True)
    channels = model.backbone.feature_info.channels()[-1]
    assert featuremap.shape == (1, channels, 4, 2)  # 64x32 / 16: layer4 keeps its input size
    assert model.reduction[0].in_channels == channels and model.reduction[0].out_channels == 512
    assert model(torch.rand(2, 3, 64, 32)).shape == (2, 512)


@pytest.mark.parametrize(("arch", "reduction"), FAMILIES.items(), ids=list(FAMILIES))
def test_any_timm_cnn_takes_the_head_with_its_familys_last_stride(arch, reduction):
    name = f"{arch}_ccsc"
    model = create_model(name, num_classes=3, pretrained=False)
    assert model_factory()[name](num_classes=3, pretrained=False).arch == arch  # registered for torchreid too
    images = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        featuremap = model.eval()(images, return_featuremaps=True)
        assert featuremap.shape[-2:] == (64 // reduction, 32 // reduction)
        assert model(images).shape == (2, 512) and target_layer(model) is model.last_stage
    logits, features = model.train()(images)
    (logits.sum() + features.sum()).backward()
    unused = [key for key, parameter in model.named_parameters() if parameter.grad is None]
    assert logits.shape == (2, 3) and not unused  # every weight feeds the feature map (DDP needs it)


@pytest.mark.parametrize("arch", NOT_CNNS)
def test_a_timm_network_that_is_not_a_cnn_is_refused_naming_what_is_accepted(arch):
    with pytest.raises(RecipeError, match=f"model.name='{arch}_ccsc': timm's {arch} is not a CNN.*resnet50_ccsc"):
        load_config(BASE, [f"model.name={arch}_ccsc"])
    with pytest.raises(ValueError, match=f"timm's {arch} is not a CNN"):
        create_model(f"{arch}_ccsc", num_classes=3)
    assert f"{arch}_ccsc" not in model_factory()


def test_resnet18_ccsc_is_built_from_the_recipe_name(tiny_overrides):
    model = pipeline.build_model(_cfg(tiny_overrides, "model.name=resnet18_ccsc"), num_classes=6)
    assert isinstance(model, CCSCModel) and isinstance(model.backbone.layer1[0], BasicBlock)
    assert len(model.backbone.layer3) == 2  # resnet18: 2-2-2-2 blocks


def test_imagenet_weights_follow_the_network_in_the_name(tmp_path, no_weights_anywhere):
    reference = timm.create_model("resnet18", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18_ccsc", num_classes=3, pretrained=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(model.backbone.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match="torchvision resnet18 ImageNet .*model.name"):
        create_model("resnet18_ccsc", num_classes=3, pretrained=str(tmp_path / "resnet50.pth"))
    with pytest.raises(PretrainedWeightsUnavailable, match="timm 'resnet18'.*pretrained_path=/path/to/resnet18.pth"):
        create_model("resnet18_ccsc", num_classes=3, pretrained=True)


def test_weights_of_another_network_of_a_lenient_family_are_refused(tmp_path):
    """timm loads an EfficientNet extractor's file leniently: the key check is the plugin's own."""
    torch.save(timm.create_model("efficientnet_b1", pretrained=False).state_dict(), tmp_path / "b1.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match=r"b1.pth does not fit model EfficientNet: \d+ key") as error:
        create_model("efficientnet_b0_ccsc", num_classes=3, pretrained=str(tmp_path / "b1.pth"))
    assert "unexpected (blocks." in str(error.value) and "prefix" not in str(error.value)  # B1's extra blocks
    reference = timm.create_model("efficientnet_b0", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "b0.pth")
    model = create_model("efficientnet_b0_ccsc", num_classes=3, pretrained=str(tmp_path / "b0.pth"))
    torch.testing.assert_close(model.backbone.blocks[6][0].conv_pw.weight, reference.blocks[6][0].conv_pw.weight)


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
        (["model.name=resnet19_ccsc"], "'resnet19' is not a timm model; nearest: resnet18_ccsc"),
        (["model.name=osnet_x0_2"], "model.name='osnet_x0_2' is not a model torchreid knows; nearest: osnet_x0_25"),
        (["model.backbone=resnet18"], "unknown key 'model.backbone': it was removed .*model.name: resnet18_ccsc"),
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


@pytest.mark.parametrize("name", ["osnet_x0_25", "resnet50_fc512"])
def test_zoo_weights_offline_are_a_message_or_random_init_if_allowed(no_weights_anywhere, tiny_overrides, name):
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
    assert cfg.model.name == expected.model.name and f"name: {expected.model.name}" in state["config"]
    assert "backbone:" not in state["config"]  # the old key; the run folder's path may say "backbones"
    rebuilt = model.state_dict()
    assert rebuilt.keys() == state["state_dict"].keys()
    assert all(torch.equal(rebuilt[key], value) for key, value in state["state_dict"].items())
    assert not model.training and target_layer(model) is MODELS[case][1](model)


@pytest.mark.parametrize(
    ("stored", "unknown"),
    [("name: no_such_net", "no_such_net"), ("name: resnet19_ccsc", "resnet19"), ("backbone: resnet19", "resnet19")],
    ids=["zoo-name", "ccsc-name", "old-backbone-key"],
)
def test_checkpoint_of_an_unknown_model_is_a_message(tiny_checkpoint, stored, unknown):
    state = load_checkpoint(latest_checkpoint(tiny_checkpoint))
    assert "  name: resnet50_ccsc\n" in state["config"]
    model_lines = stored if stored.startswith("name") else f"{stored}\n  name: resnet50_ccsc"
    state["config"] = state["config"].replace("  name: resnet50_ccsc", f"  {model_lines}")
    with pytest.raises(RecipeError, match=f"(?s)run.pt: the recipe stored in this checkpoint is invalid.*{unknown}"):
        model_from_checkpoint(state, origin="run.pt")


def _old_style_run(cfg, model: torch.nn.Module, folder: Path) -> Path:
    """A run folder whose checkpoint stores ``cfg`` as versions with ``model.backbone`` did: resnet50_ccsc on it."""
    stored = yaml.safe_load(cfg.dump())
    stored["model"].update(name="resnet50_ccsc", backbone=stored["model"]["name"].removesuffix("_ccsc"))
    state = {"state_dict": model.state_dict(), "config": yaml.safe_dump(stored), "num_classes": 6, "epoch": 1}
    save_checkpoint(state, checkpoint_path(folder, 1))
    return folder


@pytest.mark.parametrize("neck", ["none", "bnneck"])
def test_a_checkpoint_stored_with_model_backbone_reloads_as_its_ccsc_name(tiny_overrides, tmp_path, neck):
    cfg = _cfg(tiny_overrides, "model.name=resnet18_ccsc", f"model.neck={neck}")
    model = pipeline.build_model(cfg, num_classes=6)
    images = torch.rand(4, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    model.train()(images)  # BN statistics move off their init
    trained = load_trained(_old_style_run(cfg, model, tmp_path / "old-run"))
    assert "backbone: resnet18" in load_checkpoint(trained.path)["config"]
    assert trained.cfg.model.name == "resnet18_ccsc" and trained.model.arch == "resnet18"
    with torch.no_grad():
        torch.testing.assert_close(trained.model(images), model.eval()(images))


def test_an_old_checkpoint_is_tested_and_exported_under_its_name(tiny_overrides, tmp_path):
    cfg = _cfg(tiny_overrides, "model.name=resnet18_ccsc")
    run = _old_style_run(cfg, pipeline.build_model(cfg, num_classes=6), tmp_path / "old-run")
    overrides = [*tiny_overrides, "model.name=resnet18_ccsc", f"data.save_dir={tmp_path / 'eval'}"]
    assert main(["test", BASE, "--weights", str(run), *[arg for item in overrides for arg in ("--set", item)]]) == 0
    assert main(["export", str(run), "--onnx", str(tmp_path / "old.onnx")]) == 0
    metadata = {prop.key: prop.value for prop in onnx.load(tmp_path / "old.onnx").metadata_props}
    assert metadata["model"] == "resnet18_ccsc"


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
    assert metadata["model"] == cfg.model.name and "backbone" not in metadata  # the name says the network


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
