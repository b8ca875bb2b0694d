"""resnet50_ccsc and its siblings: one name per architecture in torchreid's factory, stride 1, the paper's head,
the loss switch, weights loading."""

from __future__ import annotations

import importlib

import pytest
import timm
import torch

import ccsc_plugin
from ccsc_plugin._torchreid import model_factory, torchreid
from ccsc_plugin.models import EAGER_ARCHS, LOSSES, CCSCModel, PretrainedWeightsUnavailable
from ccsc_plugin.models.factory import ccsc_builder


@pytest.fixture(scope="module")
def model() -> CCSCModel:
    return torchreid.models.build_model("resnet50_ccsc", num_classes=10, loss="ccsc", pretrained=False)


def test_torchreid_factory_builds_it(model):
    assert isinstance(model, CCSCModel) and model.arch == "resnet50"
    assert "resnet50_ccsc" in torchreid.models.__dict__["__model_factory"]


@pytest.mark.parametrize("arch", EAGER_ARCHS)
def test_each_registered_name_builds_the_network_it_names(arch):
    with torch.device("meta"):  # names and shapes only: five ResNets in a blink
        model = torchreid.models.build_model(f"{arch}_ccsc", num_classes=4, loss="ccsc", pretrained=False)
        network = timm.create_model(arch, num_classes=0, global_pool="")
    assert model.arch == arch
    shapes = {key: value.shape for key, value in model.backbone.state_dict().items()}
    assert shapes == {key: value.shape for key, value in network.state_dict().items()}


def test_importing_twice_is_harmless():
    importlib.reload(ccsc_plugin)
    importlib.reload(ccsc_plugin)
    assert all(model_factory()[f"{arch}_ccsc"] is ccsc_builder(arch) for arch in EAGER_ARCHS)


def test_last_stage_has_stride_one(model):
    block = model.backbone.layer4[0]
    assert block.conv2.stride == (1, 1)
    assert block.downsample[0].stride == (1, 1)


@torch.no_grad()
def test_featuremap_is_24x8_for_384x128(model):
    model.eval()
    fmap = model(torch.rand(1, 3, 384, 128), return_featuremaps=True)
    assert fmap.shape == (1, 2048, 24, 8)


@torch.no_grad()
def test_eval_returns_512d_feature(model):
    model.eval()
    features = model(torch.rand(2, 3, 64, 32))
    assert features.shape == (2, 512)
    assert (features >= 0).all()  # after ReLU


def test_train_returns_logits_and_features(model):
    model.train()
    logits, features = model(torch.rand(2, 3, 64, 32))
    assert logits.shape == (2, 10) and features.shape == (2, 512)


def test_softmax_loss_returns_logits_only():
    model = torchreid.models.build_model("resnet50_ccsc", num_classes=4, loss="softmax", pretrained=False).train()
    assert model(torch.rand(2, 3, 64, 32)).shape == (2, 4)


@pytest.mark.parametrize("loss", ["triplet", "ccsc"])
def test_metric_losses_get_logits_and_features(loss):
    model = torchreid.models.build_model("resnet18_ccsc", num_classes=4, loss=loss, pretrained=False).train()
    logits, features = model(torch.rand(2, 3, 64, 32))
    assert logits.shape == (2, 4) and features.shape == (2, 512)


@pytest.mark.parametrize("loss", ["xent", "htri", "Softmax", ""])
def test_an_unknown_loss_is_refused_naming_the_valid_ones(loss):
    with pytest.raises(ValueError, match=f"loss must be one of {', '.join(LOSSES)}, got '{loss}'"):
        torchreid.models.build_model("resnet18_ccsc", num_classes=4, loss=loss, pretrained=False)


def test_head_is_1x1_conv_bn_relu(model):
    conv, bn, relu = model.reduction
    assert isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (2048, 512)
    assert isinstance(bn, torch.nn.BatchNorm2d) and isinstance(relu, torch.nn.ReLU)
    assert model.classifier.in_features == 512


def test_pretrained_from_local_file(tmp_path):
    reference = timm.create_model("resnet50", pretrained=False)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = CCSCModel(num_classes=3, pretrained=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(model.backbone.layer4[0].conv2.weight, reference.layer4[0].conv2.weight)


@pytest.mark.parametrize("pretrained", [True, "/nonexistent/resnet50.pth"])
def test_missing_weights_say_what_to_pass(no_weights_anywhere, pretrained):
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained_path"):
        CCSCModel(num_classes=3, pretrained=pretrained)
