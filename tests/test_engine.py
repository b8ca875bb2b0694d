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
from ccsc_plugin.evaluation.results import read_result

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
