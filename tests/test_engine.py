"""ImageCCSCEngine end to end through torchreid's data manager on a generated Market-1501 tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.checkpoint import load_checkpoint
from ccsc_plugin.config import load_config
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.evaluation.rerank import RerankMemoryError, RerankSettings
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.losses.terms import loss_sections

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"


def test_engine_is_a_torchreid_engine(tiny_cfg):
    engine = pipeline.build_engine(tiny_cfg)
    assert isinstance(engine, torchreid.engine.Engine)
    assert isinstance(engine.datamanager, torchreid.data.ImageDataManager)


def test_batches_carry_camera_ids(tiny_cfg):
    engine = pipeline.build_engine(tiny_cfg)
    data = next(iter(engine.train_loader))
    imgs, pids, camids = engine.parse_data_for_train(data)
    assert imgs.shape == (16, 3, 64, 32)
    assert len(set(pids.tolist())) == 4  # P = 16 / K = 4 identities per batch
    assert camids.dtype == torch.int64 and camids.max() < 3


@pytest.mark.slow
def test_short_training_lowers_every_configured_term(tiny_overrides):
    cfg = load_config(
        BASE,
        [*tiny_overrides, "loss.triplet.weight=1.0", "loss.center.weight=0.003", "train.lr=3.0e-4"],
    )
    engine = pipeline.build_engine(cfg)
    engine.set_model_mode("train")
    history: list[dict[str, float]] = []
    for _ in range(6):
        epoch = [engine.forward_backward(data) for data in engine.train_loader]
        history.append({key: float(np.mean([step[key] for step in epoch])) for key in epoch[0]})
    terms = ["loss_id", "loss_ccsc", "loss_triplet", "loss_center"]
    assert set(terms) <= set(history[0])
    for term in terms:
        assert history[-1][term] < history[0][term], (term, [round(h[term], 4) for h in history])


@pytest.mark.parametrize(("amp", "channels_last"), [("bf16", False), ("fp16", False), ("off", True), ("bf16", True)])
def test_speed_levers_run_a_step_on_cpu(tiny_overrides, amp, channels_last):
    cfg = load_config(BASE, [*tiny_overrides, f"train.amp={amp}", f"train.channels_last={channels_last}"])
    engine = pipeline.build_engine(cfg)
    engine.set_model_mode("train")
    before = engine.model.classifier.weight.detach().clone()
    summary = engine.forward_backward(next(iter(engine.train_loader)))
    assert np.isfinite(summary["loss"]) and summary["loss_ccsc"] > 0
    assert not torch.equal(before, engine.model.classifier.weight)


def test_baseline_is_the_same_engine_with_lambda_zero(tiny_overrides):
    cfg = load_config(BASE, [*tiny_overrides, "loss.ccsc.weight=0"])
    engine = pipeline.build_engine(cfg)
    assert isinstance(engine, ImageCCSCEngine)
    engine.set_model_mode("train")
    summary = engine.forward_backward(next(iter(engine.train_loader)))
    assert "loss_ccsc" not in summary and summary["loss"] == pytest.approx(summary["loss_id"])


@pytest.mark.slow
def test_train_evaluate_checkpoint_and_resume(tiny_cfg, tiny_overrides):
    result = pipeline.train(tiny_cfg, recipe=str(BASE))
    run = Path(tiny_cfg.data.save_dir)
    assert read_result(run) == result
    assert 0.0 <= result["rank1"] <= 1.0 and 0.0 < result["mAP"] <= 1.0
    assert result["method"] == "softmax+ccsc" and result["epochs"] == 2
    state = load_checkpoint(run / "checkpoints" / "epoch-002.pt")
    assert state["epoch"] == 2 and state["rank1"] is None  # saved before the final evaluation
    assert state["scheduler"]["last_epoch"] == 2 and state["num_classes"] == 8

    resumed_cfg = load_config(BASE, [*tiny_overrides, "train.max_epoch=3", f"model.resume={run}"])
    pipeline.train(resumed_cfg)
    resumed = load_checkpoint(run / "checkpoints" / "epoch-003.pt")
    assert resumed["epoch"] == 3 and resumed["scheduler"]["last_epoch"] == 3
    assert "Resuming at epoch 3" in (run / "train.log").read_text()


@pytest.fixture
def by_hand(tiny_cfg):
    """What a user hands the engine by hand: a data manager, a model and an optimiser."""
    datamanager = pipeline.build_datamanager(tiny_cfg)
    model = pipeline.build_model(tiny_cfg, datamanager.num_train_pids)
    return datamanager, model, torch.optim.SGD(model.parameters(), lr=0.01)


def test_engine_built_by_hand_trains_the_papers_terms_by_default(by_hand):
    engine = ImageCCSCEngine(*by_hand, use_gpu=False)
    assert {name: active.weight for name, active in engine.loss_terms.items()} == {"id": 1.0, "ccsc": 1.5}
    assert engine.memory_format is torch.channels_last and engine.amp_dtype is None and not engine.test_flip
    assert engine.rerank_settings == RerankSettings() and engine.forward_model is engine.model


def test_engine_built_by_hand_takes_part_of_a_section_over_the_defaults(by_hand):
    losses = {"triplet": {"weight": 1.0, "margin": 0.5}, "ccsc": {"cross_camera": False}}
    engine = ImageCCSCEngine(*by_hand, use_gpu=False, losses=losses, channels_last=False, amp="bf16")
    assert {name: active.weight for name, active in engine.loss_terms.items()} == {
        "id": 1.0,
        "ccsc": 1.5,
        "triplet": 1.0,
    }
    assert engine.loss_terms["triplet"].module.margin == 0.5 and "center" not in engine.loss_terms
    ccsc = engine.loss_terms["ccsc"].module
    assert not ccsc.cross_camera and ccsc.include_self
    assert engine.memory_format is torch.contiguous_format and engine.amp_dtype is torch.bfloat16
    assert engine.forward_model is engine.model and not engine.gather_features
    engine.set_model_mode("train")
    summary = engine.forward_backward(next(iter(engine.train_loader)))
    assert set(summary) == {"loss", "loss_id", "loss_ccsc", "loss_triplet", "acc"}


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"centre": {"weight": 0.1}}, KeyError, "loss.centre is not a loss term's section; the sections are softmax"),
        ({"center": {"wieght": 0.1}}, KeyError, "loss.center.wieght is not a key of loss.center: weight, alpha"),
        ({"ccsc": 0.0}, TypeError, "loss.ccsc is a section"),
        ({"gather_features": True}, KeyError, "loss.gather_features is the engine's gather_features argument"),
    ],
)
def test_a_loss_key_the_engine_does_not_know_is_an_error(given, error, message):
    with pytest.raises(error, match=message):
        loss_sections(given)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"amp": "fp8"}, ValueError, "amp must be one of"),
        ({"losses": {"centre": {"weight": 0.1}}}, KeyError, "loss.centre is not a loss term's section"),
        ({"train": {"amp": "bf16"}}, TypeError, "unexpected keyword argument 'train'"),  # no section read loosely
        ({"losses": {"softmax": {"weight": 0}, "ccsc": {"weight": 0}}}, ValueError, "Every loss weight is 0"),
    ],
    ids=["amp", "loss-section", "train-section", "nothing-trains"],
)
def test_an_engine_argument_the_engine_does_not_know_is_an_error(by_hand, arguments, error, message):
    with pytest.raises(error, match=message):
        ImageCCSCEngine(*by_hand, use_gpu=False, **arguments)


ENGINE_KEYS = {  # each recipe key the engine takes, set off its default -> how the engine shows it
    "loss.triplet.margin=0.5": lambda engine: engine.loss_terms["triplet"].module.margin == 0.5,
    "loss.ccsc.weight=0.5": lambda engine: engine.loss_terms["ccsc"].weight == 0.5,
    "loss.gather_features=true": lambda engine: engine.gather_features,
    "train.amp=bf16": lambda engine: engine.amp_dtype is torch.bfloat16,
    "train.channels_last=false": lambda engine: engine.memory_format is torch.contiguous_format,
    "test.flip=true": lambda engine: engine.test_flip,
    "test.rerank_k1=5": lambda engine: engine.rerank_settings.k1 == 5,
    "test.rerank_k2=3": lambda engine: engine.rerank_settings.k2 == 3,
    "test.rerank_lambda=0.5": lambda engine: engine.rerank_settings.lambda_value == 0.5,
    "test.rerank_max_mb=10": lambda engine: engine.rerank_settings.max_mb == 10,
}


def test_each_recipe_key_the_engine_takes_reaches_it(tiny_overrides):
    overrides = [*tiny_overrides, "loss.triplet.weight=1.0"]
    plain = pipeline.build_engine(load_config(BASE, overrides))
    changed = pipeline.build_engine(load_config(BASE, [*overrides, *ENGINE_KEYS]), plain.datamanager)
    assert [key for key, shows in ENGINE_KEYS.items() if shows(plain)] == []
    assert [key for key, shows in ENGINE_KEYS.items() if not shows(changed)] == []


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"visrank": True}, ValueError, r"visrank=True: .* `ccsc-reid test RECIPE --weights RUN --visrank K`"),
        ({"visrank": True, "test_only": True}, ValueError, r"visrank=True: ImageCCSCEngine does not draw rank lists"),
        ({"rerank_k1": 5}, TypeError, r"cannot honour the evaluation argument\(s\) rerank_k1: .* It takes dist_metric"),
        ({"use_cython": True, "ranks": [1]}, TypeError, r"argument\(s\) use_cython:"),
    ],
    ids=["visrank", "visrank-test-only", "not-torchreids", "unknown"],
)
def test_an_evaluation_argument_the_engine_cannot_honour_stops_the_run_before_anything_runs(
    tiny_cfg, arguments, error, message
):
    engine = pipeline.build_engine(tiny_cfg)
    with pytest.raises(error, match=message):
        engine.run(save_dir=tiny_cfg.data.save_dir, max_epoch=1, **arguments)
    assert not Path(tiny_cfg.data.save_dir).exists()  # not a step trained, not a checkpoint written


def test_visrank_given_to_test_directly_is_refused(tiny_cfg):
    engine = pipeline.build_engine(tiny_cfg)
    with pytest.raises(ValueError, match="visrank=True: ImageCCSCEngine does not draw rank lists"):
        engine.test(visrank=True)


def test_re_ranking_beyond_the_memory_limit_stops_a_run_before_training(tiny_overrides):
    cfg = load_config(BASE, [*tiny_overrides, "test.rerank_max_mb=1"])
    engine = pipeline.build_engine(cfg)
    assert engine.rerank_settings == RerankSettings(max_mb=1)
    with pytest.raises(RerankMemoryError, match="18 queries and 18 gallery images needs up to .* limit of 1 MB"):
        engine.run(save_dir=cfg.data.save_dir, max_epoch=1, rerank=True)
    assert not Path(cfg.data.save_dir).exists()
    engine.run(save_dir=cfg.data.save_dir, test_only=True, rerank=False)  # without re-ranking it evaluates
    assert engine.test_results["market1501"]["rerank"] == {"used": False}
