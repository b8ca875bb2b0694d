"""Files: a crash while writing keeps the previous checkpoint/result; untrusted checkpoints cannot run code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin.cli import main
from ccsc_plugin.evaluation.results import read_result, write_result

BASE = str(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_crash_inside_torch_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = ckpt.checkpoint_path(tmp_path, 1)
    ckpt.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
    before = path.read_bytes()

    def half_written_then_crash(obj, target):
        Path(target).write_bytes(before[: len(before) // 2])  # a torn write, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", half_written_then_crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)

    assert path.read_bytes() == before
    assert _leftovers(path.parent) == []
    assert torch.equal(ckpt.load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


def test_crash_while_writing_result_json_keeps_the_previous_result(tmp_path, monkeypatch):
    write_result(tmp_path, {"rank1": 0.5})

    def torn_write(self, text, *args, **kwargs):
        with open(self, "w") as handle:
            handle.write(text[:3])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", torn_write)
    with pytest.raises(KeyboardInterrupt):
        write_result(tmp_path, {"rank1": 0.9})
    monkeypatch.undo()

    assert read_result(tmp_path) == {"rank1": 0.5}
    assert _leftovers(tmp_path) == []


def test_successful_write_leaves_no_temp_file_and_normal_permissions(tmp_path):
    path = ckpt.save_checkpoint({"state_dict": {}}, tmp_path / "a.pt")
    assert _leftovers(tmp_path) == []
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


class _RunsCodeWhenUnpickled:
    """What a malicious 'checkpoint' holds: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def crafted_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "epoch": 1, "payload": _RunsCodeWhenUnpickled(marker)}, path)
    return path, marker


def test_crafted_pickle_is_refused_and_never_runs(crafted_checkpoint):
    path, marker = crafted_checkpoint
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint this plugin can load safely"):
        ckpt.load_checkpoint(path)
    assert not marker.exists()


def test_cli_refuses_a_crafted_checkpoint_with_exit_2(crafted_checkpoint, tiny_overrides, capsys):
    path, marker = crafted_checkpoint
    args = [arg for item in tiny_overrides for arg in ("--set", item)]
    assert main(["test", BASE, "--weights", str(path), *args]) == 2
    assert "can load safely" in capsys.readouterr().err
    assert not marker.exists()
