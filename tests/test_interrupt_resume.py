"""Training: a NaN loss stops before its step; SIGINT/SIGTERM save a checkpoint that resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_overrides

from ccsc_plugin import pipeline
from ccsc_plugin.checkpoint import latest_checkpoint, load_checkpoint
from ccsc_plugin.config import load_config
from ccsc_plugin.engine import ImageCCSCEngine
from ccsc_plugin.interrupt import StopOnSignal, TrainingInterrupted
from ccsc_plugin.losses import CCSCLoss
from ccsc_plugin.nonfinite import NonFiniteLoss

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
REPO = Path(__file__).resolve().parents[1]


def run_overrides(market_root: Path, save_dir: Path) -> list[str]:
    """Two epochs of 2 batches (P = 4 x K = 4) on the tiny tree, CPU, no workers."""
    return [*tiny_run_overrides(market_root, save_dir), "test.batch_size=64", "use_gpu=false"]


@pytest.fixture
def interrupt_at_step(monkeypatch):
    """Deliver a real SIGINT to this process just before training step ``n`` (1-based) starts."""

    def arm(n: int) -> None:
        original = ImageCCSCEngine.forward_backward
        calls = {"n": 0}

        def forward_backward(self, data):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGINT)
            return original(self, data)

        monkeypatch.setattr(ImageCCSCEngine, "forward_backward", forward_backward)

    return arm


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_the_same_weights(market_root, tmp_path, interrupt_at_step, monkeypatch):
    pipeline.train(load_config(BASE, run_overrides(market_root, tmp_path / "reference")))
    uninterrupted = load_checkpoint(tmp_path / "reference" / "checkpoints" / "epoch-002.pt")

    overrides = run_overrides(market_root, tmp_path / "run")
    interrupt_at_step(1)  # epoch 1, batch 1 of 2: the resumed run finishes epoch 1, then runs epoch 2
    with pytest.raises(TrainingInterrupted) as stop:
        pipeline.train(load_config(BASE, overrides))
    assert stop.value.exit_code == 130 and stop.value.checkpoint.name == "epoch-000-batch-0001.pt"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back
    saved = load_checkpoint(stop.value.checkpoint)  # weights_only=True
    assert {"optimizer", "scheduler", "scaler", "rng", "sampler"} <= set(saved)
    assert not (tmp_path / "run" / "checkpoints" / "epoch-002.pt").exists()

    monkeypatch.undo()
    pipeline.train(load_config(BASE, [*overrides, f"model.resume={tmp_path / 'run'}"]))
    resumed = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch-002.pt")
    assert resumed["scheduler"] == uninterrupted["scheduler"]
    for name, expected in uninterrupted["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], expected, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_nan_loss_stops_naming_step_and_term_and_keeps_the_last_good_checkpoint(market_root, tmp_path, monkeypatch):
    overrides = [*run_overrides(market_root, tmp_path / "run"), "test.eval_freq=1"]  # a checkpoint per epoch
    original = CCSCLoss.forward
    calls = {"n": 0}

    def nan_on_step_3(self, *args, **kwargs):
        calls["n"] += 1
        value = original(self, *args, **kwargs)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(CCSCLoss, "forward", nan_on_step_3)
    with pytest.raises(NonFiniteLoss) as error:
        pipeline.train(load_config(BASE, overrides))
    message = str(error.value)
    good = tmp_path / "run" / "checkpoints" / "epoch-001.pt"
    assert "loss_ccsc is nan at epoch 2/2, batch 1/2" in message and str(good) in message
    assert latest_checkpoint(tmp_path / "run") == good  # nothing written after the NaN
    weights = load_checkpoint(good)["state_dict"]
    assert all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())


@pytest.mark.slow
def test_sigterm_from_outside_saves_a_checkpoint_and_exits_143(market_root, tmp_path):
    run = tmp_path / "run"
    overrides = [*run_overrides(market_root, run), "train.max_epoch=500", "train.print_freq=1"]
    command = [sys.executable, "-m", "ccsc_plugin", "train", str(BASE)]
    command += [arg for item in overrides for arg in ("--set", item)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "train.log"
    deadline = time.time() + 120
    while not (log.is_file() and "epoch: [1/500][1/2]" in log.read_text()):  # a training step has finished
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "SIGTERM" in err and f"--resume {run}" in err
    checkpoint = latest_checkpoint(run)
    assert "-batch-" in checkpoint.name and load_checkpoint(checkpoint)["epoch"] < 500


def test_first_signal_requests_a_stop_and_a_second_stops_at_once():
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # the process lives on: the engine stops after its step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
