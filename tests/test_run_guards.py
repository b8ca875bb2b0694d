"""Run folders under real-world stops: two trainings in one folder, a read-only folder, a disk that fills up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_run_overrides

from ccsc_plugin import cli, pipeline
from ccsc_plugin.checkpoint import epoch_checkpoints, leftover_temporaries
from ccsc_plugin.config import load_config
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.evaluation.results import read_result
from ccsc_plugin.pipeline import run_lock

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "recipes" / "base.yaml"


def train_args(market_root: Path, run: Path, *extra: str) -> list[str]:
    overrides = [*tiny_run_overrides(market_root, run), "use_gpu=false", *extra]
    return ["train", str(BASE), *[arg for item in overrides for arg in ("--set", item)]]


@pytest.fixture
def training_elsewhere(market_root, tmp_path):
    """Start a long ``ccsc-reid train`` in another process; yield it once its first step is done, then stop it."""
    started = []

    def start(run: Path) -> subprocess.Popen:
        command = [sys.executable, "-m", "ccsc_plugin", *train_args(market_root, run, "train.max_epoch=500")]
        command += ["--set", "train.print_freq=1"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        deadline = time.time() + 120
        while not ((run / "train.log").is_file() and "epoch: [1/500][1/2]" in (run / "train.log").read_text()):
            assert process.poll() is None and time.time() < deadline, process.communicate()
            time.sleep(0.2)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)


# ------------------------------------------------------------------------------------- one run per folder


def test_the_lock_refuses_a_second_holder_naming_the_first_and_is_released_on_exit(tmp_path):
    with run_lock.hold(tmp_path) as notes:
        assert notes == []
        with pytest.raises(run_lock.RunFolderLocked) as refused, run_lock.hold(tmp_path):
            pass
        message = str(refused.value)
        assert str(tmp_path) in message and f"process {os.getpid()}" in message and "data.save_dir" in message
    with run_lock.hold(tmp_path) as notes:  # released: taken again, and no stale record left behind
        assert notes == []


def test_a_stale_lock_of_a_dead_process_is_named_and_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    record = {"pid": pid, "host": "node-7", "started": "2026-12-01T10:00:00", "command": "ccsc-reid train x.yaml"}
    (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps(record))  # what a SIGKILLed run leaves
    with run_lock.hold(tmp_path) as notes:
        assert len(notes) == 1 and "stale lock" in notes[0] and f"process {pid} on node-7" in notes[0]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["plain", "overwrite", "resume"])
def test_a_second_training_into_a_folder_in_use_exits_2_naming_the_holder(
    training_elsewhere, market_root, tmp_path, capsys, how
):
    run = tmp_path / "run"
    first = training_elsewhere(run)
    extra = {"plain": [], "overwrite": ["--overwrite"], "resume": ["--resume", str(run)]}[how]
    log_before = (run / "train.log").read_text()
    assert cli.main([*train_args(market_root, run), *extra]) == 2
    err = capsys.readouterr().err
    assert f"{run} is in use" in err and f"process {first.pid}" in err and "Traceback" not in err
    assert (run / "train.log").read_text().startswith(log_before)  # nothing of the second run in its log
    assert first.poll() is None  # the first run trains on, its files untouched


@pytest.mark.slow
def test_test_reads_a_folder_beside_the_training_run_that_holds_it(tiny_checkpoint, tiny_overrides, tmp_path):
    with run_lock.hold(tiny_checkpoint):  # a training run holds the folder
        cfg = load_config(BASE, [*tiny_overrides, f"data.save_dir={tiny_checkpoint}"])
        result = pipeline.evaluate(cfg, tiny_checkpoint / "checkpoints" / "epoch-001.pt")
    assert 0 <= result["mAP"] <= 1 and list((tiny_checkpoint / "tests").glob("*.json"))


# ------------------------------------------------------------------------------------ read-only and full


def mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only file system needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount refused here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def filesystem(tmp_path):
    """``make(name, options)``: a tmpfs mounted at ``tmp_path/name`` (``size=20m``, ``ro``), unmounted after."""
    mounted = []

    def make(name: str, options: str) -> Path:
        folder = tmp_path / name
        mount_tmpfs(folder, options)
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_read_only_save_dir_is_named_before_anything_loads(
    filesystem, tiny_checkpoint, market_root, capsys, monkeypatch, command
):
    read_only = filesystem("ro", "ro,size=1m")
    for module in ("ccsc_plugin.pipeline.build", "ccsc_plugin.pipeline.train"):  # where it is called from
        monkeypatch.setattr(sys.modules[module], "build_datamanager", lambda cfg: pytest.fail("data loaded first"))
    if command == "train":
        args = train_args(market_root, read_only / "run")
    else:
        args = ["test", str(BASE), "--weights", str(tiny_checkpoint)]
        args += [arg for item in tiny_run_overrides(market_root, read_only / "run") for arg in ("--set", item)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "data.save_dir" in err and str(read_only / "run") in err and "Read-only file system" in err, err
    assert "Traceback" not in err and "Errno" not in err


@pytest.mark.slow
def test_a_disk_full_at_the_first_checkpoint_exits_2_with_the_space_needed(filesystem, market_root, capsys):
    small = filesystem("small", "size=20m")
    run = small / "run"
    assert cli.main(train_args(market_root, run, "train.max_epoch=1", "train.warmup_epochs=0")) == 2
    err = capsys.readouterr().err
    assert f"no space left on device in {run / 'checkpoints'} (needed about" in err and "MB free" in err, err
    assert "Traceback" not in err and "enforce fail" not in err and "--overwrite" in err
    assert epoch_checkpoints(run) == [] and leftover_temporaries(run / "checkpoints") == []


@pytest.mark.slow
def test_a_disk_full_before_result_json_says_resume_writes_it(filesystem, market_root, capsys, monkeypatch):
    roomy = filesystem("roomy", "size=400m")
    run = roomy / "run"
    original = ImageCCSCEngine._test_saved_weights

    def fill_the_disk_then_test(self, *args, **kwargs):
        with open(roomy / "filler", "wb") as filler:  # another job fills the disk during the final evaluation
            try:
                while True:
                    filler.write(b"\0" * 2**20)
            except OSError:
                pass
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ImageCCSCEngine, "_test_saved_weights", fill_the_disk_then_test)
    args = train_args(market_root, run, "train.max_epoch=1", "train.warmup_epochs=0", "model.name=resnet18_ccsc")
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"no space left on device in {run}" in err and "Training is done" in err and f"--resume {run}" in err
    assert "Traceback" not in err and not (run / "result.json").exists()

    monkeypatch.undo()
    (roomy / "filler").unlink()  # space freed: the resume command evaluates and writes the result
    assert cli.main([*args, "--resume", str(run)]) == 0
    assert read_result(run)["epochs"] == 1
