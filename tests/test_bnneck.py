"""BoT's BNNeck as an option of the _ccsc models (``model.neck``, ``test.neck_feat``), the paper's head the default.

The metric losses take the feature before the BN (``f``), the softmax the logits of the feature after it; eval
returns the feature ``test.neck_feat`` names. The BN's shift stays 0 however the model is trained, a
``model.neck=none`` model keeps the paper head's state-dict keys, and every way back from a checkpoint
rebuilds the neck it was trained with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.checkpoint import CheckpointError, checkpoint_path, latest_checkpoint, load_checkpoint, save_checkpoint
from ccsc_plugin.cli.recipe_index import list_recipes
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.models import NECK_FEATS, NECKS, CCSCModel, create_model
from ccsc_plugin.pipeline.build import model_keys
from ccsc_plugin.pipeline.trained import load_trained, model_from_checkpoint
from ccsc_plugin.serve.export import MAX_DIFFERENCE, export_onnx, max_difference
from ccsc_plugin.serve.visualisation import gradcam_maps, intensity_maps

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
SMALL = ["model.name=resnet18_ccsc"]  # tiny_overrides already set model.pretrained=false and 64x32 images
NUM_CLASSES = 6
PAPER_HEAD_KEYS = {
    "reduction.0.weight",
    *(f"reduction.1.{name}" for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "classifier.weight",
    "classifier.bias",
}
BNNECK_KEYS = {f"bnneck.{name}" for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def _cfg(tiny_overrides: list[str], *extra: str):
    return load_config(BASE, [*tiny_overrides, *SMALL, *extra])


def _model(tiny_overrides: list[str], neck: str = "bnneck", neck_feat: str = "after"):
    cfg = _cfg(tiny_overrides, f"model.neck={neck}", f"test.neck_feat={neck_feat}")
    return pipeline.build_model(cfg, NUM_CLASSES), cfg


def _f(model: CCSCModel, images: torch.Tensor) -> torch.Tensor:
    """The 512-d feature before any neck, computed with the model's own modules (in its current mode)."""
    return model.reduction(model.global_pool(model.backbone(images)[-1])).flatten(1)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 64, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("neck", NECKS)
def test_train_mode_returns_logits_and_the_512_d_feature(tiny_overrides, images, neck):
    model, _ = _model(tiny_overrides, neck)
    logits, features = model.train()(images)
    assert logits.shape == (4, NUM_CLASSES) and features.shape == (4, 512)
    assert (model.bnneck is None) == (neck == "none")
    assert (model.classifier.bias is None) == (neck == "bnneck")  # BoT's classifier has no bias


def test_metric_losses_get_f_before_the_bn_and_the_logits_come_from_after_it(tiny_overrides, images):
    model, _ = _model(tiny_overrides)
    logits, features = model.train()(images)
    with torch.no_grad():
        f = _f(model, images)  # train mode: batch statistics, so the same values as in the forward pass
        bn = F.batch_norm(f, None, None, model.bnneck.weight, torch.zeros(512), training=True, eps=model.bnneck.eps)
        torch.testing.assert_close(features, f)
        torch.testing.assert_close(model.bnneck(f), bn)
        torch.testing.assert_close(logits, bn @ model.classifier.weight.T)
        assert not torch.allclose(logits, model.classifier(f), atol=1e-3)


@pytest.mark.parametrize(
    ("neck", "neck_feat", "returned"),
    [("bnneck", "after", "bn"), ("bnneck", "before", "f"), ("none", "after", "f"), ("none", "before", "f")],
)
def test_eval_returns_the_feature_test_neck_feat_names(tiny_overrides, images, neck, neck_feat, returned):
    model, _ = _model(tiny_overrides, neck, neck_feat)
    model.train()(images)  # BN running statistics move off their init
    model.eval()
    with torch.no_grad():
        f = _f(model, images)
        expected = model.bnneck(f) if returned == "bn" else f
        torch.testing.assert_close(model(images), expected)
    assert model.feature_dim == 512


def test_the_bn_bias_stays_zero_through_training_steps_and_layer_opening(tiny_overrides, images):
    model, cfg = _model(tiny_overrides)
    optimizer = pipeline.build_optimizer(cfg, model)  # Adam with weight decay, over model.parameters()
    weight = model.bnneck.weight.detach().clone()
    for _ in range(2):
        torchreid.utils.open_all_layers(model)  # what torchreid's engine does at the start of every epoch
        logits, features = model(images)
        loss = F.cross_entropy(logits, torch.arange(4)) + features.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(model.bnneck.bias, torch.zeros(512)) and not model.bnneck.bias.requires_grad
    assert "bnneck.bias" not in dict(model.named_parameters()) and "bnneck.bias" in model.state_dict()
    assert not torch.equal(model.bnneck.weight, weight)  # the BN's scale does train


@pytest.mark.parametrize("neck", NECKS)
def test_state_dict_keys_are_the_paper_heads_or_bots(tiny_overrides, neck):
    model, _ = _model(tiny_overrides, neck)
    backbone = {f"backbone.{key}" for key in timm.create_model("resnet18", num_classes=0, global_pool="").state_dict()}
    # the keys of the paper's model on timm's whole network before the feature API: older checkpoints load as they are
    expected = PAPER_HEAD_KEYS if neck == "none" else (PAPER_HEAD_KEYS - {"classifier.bias"}) | BNNECK_KEYS
    assert set(model.state_dict()) == backbone | expected


def test_the_torchreid_factory_builds_the_papers_head_and_refuses_unknown_necks():
    model = torchreid.models.build_model("resnet50_ccsc", NUM_CLASSES, loss="ccsc", pretrained=False)
    assert model.bnneck is None and model.neck == "none"  # torchreid's build_model passes no neck: the paper's
    with pytest.raises(ValueError, match="neck must be one of none, bnneck, got 'bn'"):
        CCSCModel(NUM_CLASSES, arch="resnet18", neck="bn")
    with pytest.raises(ValueError, match="neck_feat must be one of after, before"):
        CCSCModel(NUM_CLASSES, arch="resnet18", neck="bnneck", neck_feat="post")


def _save(model, cfg, run: Path, config_text: str | None = None) -> Path:
    state = {"state_dict": model.state_dict(), "config": config_text or cfg.dump(), "num_classes": NUM_CLASSES}
    return save_checkpoint({**state, "epoch": 1}, checkpoint_path(run, 1))


@pytest.mark.parametrize("neck_feat", NECK_FEATS)
def test_a_bnneck_checkpoint_reloads_with_its_neck_and_the_same_eval_features(
    tiny_overrides, tmp_path, images, neck_feat
):
    model, cfg = _model(tiny_overrides, "bnneck", neck_feat)
    model.train()(images)
    path = _save(model, cfg, tmp_path / "run")
    with torch.no_grad():
        expected = model.eval()(images)
        rebuilt, stored = model_from_checkpoint(load_checkpoint(path), str(path))
        trained = load_trained(tmp_path / "run")
        assert stored.model.neck == "bnneck" and stored.test.neck_feat == neck_feat
        assert rebuilt.bnneck is not None and rebuilt.neck_feat == neck_feat and not rebuilt.training
        torch.testing.assert_close(rebuilt(images), expected)
        torch.testing.assert_close(trained.model(images), expected)


def test_a_checkpoint_stored_before_the_neck_keys_rebuilds_the_papers_head(tiny_overrides, tmp_path, images):
    model, cfg = _model(tiny_overrides, "none")
    stored = yaml.safe_load(cfg.dump())
    del stored["model"]["neck"], stored["test"]["neck_feat"]
    model.train()(images)
    path = _save(model, cfg, tmp_path / "old-run", yaml.safe_dump(stored))
    with torch.no_grad():
        rebuilt, rebuilt_cfg = model_from_checkpoint(load_checkpoint(path), str(path))
        assert rebuilt_cfg.model.neck == "none" and rebuilt_cfg.test.neck_feat == "after"
        assert rebuilt.bnneck is None
        torch.testing.assert_close(rebuilt(images), model.eval()(images))


def test_weights_of_another_neck_do_not_load_and_name_the_key(tiny_overrides, tmp_path, images):
    model, cfg = _model(tiny_overrides, "bnneck")
    path = _save(model, cfg, tmp_path / "run")
    assert model_keys(cfg) == "model.name=resnet18_ccsc model.neck=bnneck"
    other = _cfg(tiny_overrides, f"model.load_weights={path}")
    with pytest.raises(CheckpointError, match=r"(?s)bnneck\.weight.*model\.neck=none"):
        pipeline.build_model(other, NUM_CLASSES)


def test_a_zoo_model_with_the_bnneck_is_a_recipe_error_naming_the_key(tiny_overrides):
    with pytest.raises(RecipeError, match="model.neck applies to the <arch>_ccsc models only"):
        load_config(BASE, [*tiny_overrides, "model.name=osnet_x0_25", "model.neck=bnneck"])
    cfg = load_config(BASE, [*tiny_overrides, "model.name=osnet_x0_25", "test.neck_feat=before"])  # no effect
    assert model_keys(cfg) == "model.name=osnet_x0_25"
    with pytest.raises(ValueError, match="applies to the <arch>_ccsc models only"):
        create_model("osnet_x0_25", NUM_CLASSES, neck="bnneck")
    with pytest.raises(RecipeError, match="model.neck must be one of none, bnneck; got 'bn'"):
        load_config(BASE, [*tiny_overrides, "model.neck=bn"])


def test_method_names_mark_bnneck_runs_and_keep_the_shipped_recipes(tiny_overrides):
    assert pipeline.method_name(_cfg(tiny_overrides)) == "softmax+ccsc"
    assert pipeline.method_name(_cfg(tiny_overrides, "model.neck=bnneck")) == "softmax+ccsc+bnneck"
    assert not any("bnneck" in info.method for info in list_recipes())


def test_response_maps_work_on_the_bnneck_eval_feature(tiny_overrides, images):
    model, _ = _model(tiny_overrides)
    model.eval()
    with torch.no_grad():
        references = model(images.flip(0))
    for maps in (gradcam_maps(model, images, references), intensity_maps(model, images)):
        assert maps.shape == (4, 64, 32) and 0.0 <= maps.min() and maps.max() <= 1.0


def test_the_engine_applies_metric_losses_to_f_and_the_softmax_to_the_bn_logits(tiny_overrides):
    cfg = _cfg(tiny_overrides, "model.neck=bnneck", "loss.triplet.weight=1.0", "loss.center.weight=0.0005")
    engine = pipeline.build_engine(cfg)
    seen: dict[str, torch.Tensor] = {}
    model = engine.model
    model.reduction.register_forward_hook(lambda module, inputs, output: seen.update(f=output.flatten(1)))
    model.classifier.register_forward_hook(lambda module, inputs, output: seen.update(bn=inputs[0]))
    for name in ("ccsc", "triplet", "center"):
        engine.loss_terms[name].module.register_forward_pre_hook(
            lambda module, inputs, name=name: seen.update({name: inputs[0]})
        )
    engine.set_model_mode("train")
    summary = engine.forward_backward(next(iter(engine.train_loader)))
    assert {"loss_ccsc", "loss_triplet", "loss_center"} <= set(summary)
    for name in ("ccsc", "triplet", "center"):
        torch.testing.assert_close(seen[name], seen["f"])
    assert not torch.allclose(seen["bn"], seen["f"], atol=1e-3)


@pytest.mark.slow
def test_a_tiny_bnneck_run_trains_tests_and_reloads(tiny_overrides):
    cfg = _cfg(tiny_overrides, "train.max_epoch=1", "train.warmup_epochs=0", "model.neck=bnneck")
    result = pipeline.train(cfg)
    assert result["method"] == "softmax+ccsc+bnneck" and 0.0 < result["mAP"] <= 1.0
    path = latest_checkpoint(cfg.data.save_dir)
    weights = load_checkpoint(path)["state_dict"]
    assert torch.equal(weights["bnneck.bias"], torch.zeros(512)) and not torch.equal(
        weights["bnneck.weight"], torch.ones(512)
    )
    trained = load_trained(cfg.data.save_dir)
    assert trained.model.bnneck is not None and trained.model.neck_feat == "after"


def test_a_bnneck_model_exports_to_onnx_with_the_same_features(tiny_overrides, tmp_path, images):
    model, _ = _model(tiny_overrides)
    model.train()(images)
    path = export_onnx(model, tmp_path / "model.onnx", 64, 32)
    assert max_difference(model, path, 64, 32) < MAX_DIFFERENCE
