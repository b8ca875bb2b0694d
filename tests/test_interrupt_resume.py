"""Training: a NaN loss stops before its step; SIGINT/SIGTERM save a checkpoint that resumes exactly.

Also: a signal during an evaluation stops it (the weights are saved first), one message per Ctrl-C however many
DataLoader workers, and ``--resume`` of a finished run trains nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_run_overrides

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin import cli, pipeline
from ccsc_plugin.checkpoint import latest_checkpoint, load_checkpoint
from ccsc_plugin.config import load_config
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.engine.interrupt import StopOnSignal, TrainingInterrupted
from ccsc_plugin.engine.nonfinite import NonFiniteLoss
from ccsc_plugin.evaluation.results import read_result, write_result
from ccsc_plugin.losses import CCSCLoss

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


@pytest.fixture(scope="module")
def finished_run(market_root, module_tmp) -> Path:
    """A run folder of a finished 2-epoch run (checkpoints/epoch-002.pt and result.json), trained once."""
    run = module_tmp("finished") / "run"
    torch.manual_seed(0)
    pipeline.train(load_config(BASE, run_overrides(market_root, run)))
    return run


def checkpoint_bytes(run: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((run / "checkpoints").glob("*.pt"))}


def train_command(market_root: Path, run: Path, *extra: str) -> list[str]:
    """``ccsc-reid train`` arguments for the tiny run in ``run`` (``extra``: more ``--set`` values)."""
    overrides = [*run_overrides(market_root, run), *extra]
    return ["train", str(BASE), *[arg for item in overrides for arg in ("--set", item)]]


@pytest.mark.slow
def test_resuming_a_finished_run_says_it_is_complete_and_writes_nothing(finished_run, market_root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before, result_before = checkpoint_bytes(run), (run / "result.json").read_text()
    capsys.readouterr()
    assert cli.main([*train_command(market_root, run), "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Resuming at epoch" not in out
    assert "complete" in out and "all 2 epochs" in out and str(run / "result.json") in out
    assert "--set train.max_epoch=" in out and "--resume" in out  # how to train longer
    assert checkpoint_bytes(run) == before and (run / "result.json").read_text() == result_before


@pytest.mark.slow
@pytest.mark.parametrize("stale", ["missing", "of-fewer-epochs"])
def test_resuming_a_finished_run_without_its_result_only_evaluates(finished_run, market_root, tmp_path, stale):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    expected = read_result(run)
    if stale == "missing":  # e.g. stopped during the final evaluation
        (run / "result.json").unlink()
    else:  # the result of an earlier, shorter stage of the run
        write_result(run, {**expected, "epochs": 1, "rank1": None})
    before = checkpoint_bytes(run)
    result = pipeline.train(load_config(BASE, [*run_overrides(market_root, run), f"model.resume={run}"]))
    assert checkpoint_bytes(run) == before  # no epoch-001.pt with epoch=1, nothing rewritten
    assert read_result(run) == result and result["epochs"] == 2
    assert result["rank1"] == pytest.approx(expected["rank1"]) and result["mAP"] == pytest.approx(expected["mAP"])
    log = (run / "train.log").read_text()
    assert "Resuming at epoch 3" not in log and "has done all 2 epochs: evaluating it" in log


@pytest.mark.slow
def test_resuming_a_checkpoint_with_more_epochs_than_max_epoch_exits_2(finished_run, market_root, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = checkpoint_bytes(run)
    command = train_command(market_root, run, "train.max_epoch=1", "train.warmup_epochs=0")
    assert cli.main([*command, "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "2 epochs" in err and "train.max_epoch=1" in err and "Traceback" not in err
    assert checkpoint_bytes(run) == before


@pytest.fixture
def checkpoint_reads(monkeypatch) -> dict[str, list[Path]]:
    """Every checkpoint lookup (``latest_checkpoint``) and file read (``torch.load``) made while the test runs."""
    calls: dict[str, list[Path]] = {"looked_up": [], "read": []}
    original_lookup, original_load = ckpt.latest_checkpoint, torch.load

    def latest_checkpoint(run_dir, *args, **kwargs):
        calls["looked_up"].append(Path(run_dir).resolve())
        return original_lookup(run_dir, *args, **kwargs)

    def load(source, *args, **kwargs):
        if isinstance(source, str | Path):
            calls["read"].append(Path(source).resolve())
        return original_load(source, *args, **kwargs)

    monkeypatch.setattr(ckpt, "latest_checkpoint", latest_checkpoint)
    monkeypatch.setattr(torch, "load", load)
    return calls


@pytest.mark.parametrize(
    ("left", "max_epoch"),
    [("nothing", 1), ("the final evaluation", 1), pytest.param("an epoch", 2, marks=pytest.mark.slow)],
)
def test_a_resumed_run_looks_up_and_reads_its_checkpoint_once(
    tiny_checkpoint, tiny_overrides, tmp_path, checkpoint_reads, left, max_epoch
):
    run = tmp_path / "run"  # tiny_overrides' data.save_dir
    shutil.copytree(tiny_checkpoint, run)  # one epoch done: checkpoints/epoch-001.pt
    if left == "nothing":
        write_result(run, {"kind": "train", "epochs": 1})
    overrides = [*tiny_overrides, f"train.max_epoch={max_epoch}", "train.warmup_epochs=0", f"model.resume={run}"]
    result = pipeline.train(load_config(BASE, overrides))
    assert read_result(run) == result and result["epochs"] == max_epoch
    assert checkpoint_reads["looked_up"] == [run.resolve()]
    assert checkpoint_reads["read"].count((run / "checkpoints" / "epoch-001.pt").resolve()) == 1


@pytest.fixture
def signal_in_evaluation(monkeypatch):
    """Deliver ``signum`` to this process while the first evaluation batch is extracted."""

    def arm(signum: int) -> None:
        original = ImageCCSCEngine.extract_features
        calls = {"n": 0}

        def extract_features(self, imgs):
            calls["n"] += 1
            if calls["n"] == 1:
                os.kill(os.getpid(), signum)
            return original(self, imgs)

        monkeypatch.setattr(ImageCCSCEngine, "extract_features", extract_features)

    return arm


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "eval_freq", "saved"),
    [(signal.SIGTERM, -1, "epoch-002.pt"), (signal.SIGINT, -1, "epoch-002.pt"), (signal.SIGTERM, 1, "epoch-001.pt")],
    ids=["sigterm-final", "sigint-final", "sigterm-periodic"],
)
def test_signal_during_evaluation_stops_it_with_the_weights_already_saved(
    market_root, tmp_path, signal_in_evaluation, monkeypatch, capsys, signum, eval_freq, saved
):
    run = tmp_path / "run"
    command = train_command(market_root, run, f"test.eval_freq={eval_freq}")
    signal_in_evaluation(signum)
    assert cli.main(command) == 128 + signum
    captured = capsys.readouterr()
    checkpoint = run / "checkpoints" / saved
    assert [path.name for path in (run / "checkpoints").glob("*.pt")] == [saved]  # saved before the evaluation
    assert "after the current step" not in captured.out
    assert f"stopping the evaluation at the next batch; the weights are already saved in {checkpoint}" in captured.out
    assert "evaluation" in captured.err and str(checkpoint) in captured.err and f"--resume {run}" in captured.err
    assert not (run / "result.json").exists()

    monkeypatch.undo()  # the resume command finishes the job: evaluates (and trains what is left), writes the result
    assert cli.main([*command, "--resume", str(run)]) == 0
    assert read_result(run)["epochs"] == 2 and load_checkpoint(latest_checkpoint(run))["epoch"] == 2


def test_a_forked_worker_ignores_the_signal_and_the_main_process_reports_it_once(capfd):
    with StopOnSignal() as stop:
        child = os.fork()
        if child == 0:  # a DataLoader worker inherits the handler with the process image
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: no KeyboardInterrupt in the worker either
            os._exit(0 if stop.signum is None else 1)
        _, status = os.waitpid(child, 0)
        os.kill(os.getpid(), signal.SIGINT)
    assert os.waitstatus_to_exitcode(status) == 0
    assert stop.signum == signal.SIGINT
    assert capfd.readouterr().out.count("SIGINT received") == 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "timeout-scancel"])
def test_a_signal_to_the_process_group_with_workers_saves_a_checkpoint_and_prints_one_message(
    market_root, tmp_path, signum
):
    """A terminal's Ctrl-C, ``timeout``, SLURM's ``scancel`` and systemd signal every process of the group."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "ccsc_plugin"]
    command += train_command(market_root, run, "data.workers=2", "train.max_epoch=500", "train.print_freq=1")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    log = run / "train.log"
    deadline = time.time() + 120
    while not (log.is_file() and "epoch: [1/500][1/2]" in log.read_text()):  # workers are running
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.2)
    os.killpg(process.pid, signum)  # the main process and its DataLoader workers alike
    out, err = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, err
    assert out.count(f"{name} received") == 1, out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "DataLoader worker" not in err, err
    checkpoint = latest_checkpoint(run)
    assert "-batch-" in checkpoint.name and f"--resume {run}" in err
    assert load_checkpoint(checkpoint)["epoch"] < 500
