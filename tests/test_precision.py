"""``train.amp: auto``: bf16 where the hardware has it natively, float32 elsewhere, said and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ccsc_plugin import pipeline
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.engine import precision

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
CPU = torch.device("cpu")


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.parametrize(
    ("flags", "used", "named"),
    [
        ("avx512f avx512_bf16", "bf16", "avx512_bf16"),
        ("amx_bf16 amx_tile", "bf16", "amx_bf16"),
        ("avx512f avx512_vnni", "off", "no native bf16"),
        ("", "off", "no native bf16"),
    ],
    ids=["epyc-zen4", "sapphire-rapids", "avx512-without-bf16", "avx2-only"],
)
def test_auto_on_a_cpu_picks_bf16_only_with_native_instructions(tmp_path, flags, used, named):
    chosen = precision.resolve("auto", CPU, cpuinfo(tmp_path, flags))
    assert chosen.used == used and named in chosen.reason and chosen.requested == "auto"
    assert chosen.dtype == (torch.bfloat16 if used == "bf16" else None)


def test_auto_without_cpuinfo_is_float32(tmp_path):
    assert precision.resolve("auto", CPU, tmp_path / "absent").used == "off"


@pytest.mark.parametrize("mode", ["off", "bf16", "fp16"])
def test_an_explicit_mode_is_used_as_set(tmp_path, mode):
    chosen = precision.resolve(mode, CPU, cpuinfo(tmp_path, ""))
    assert chosen.record() == {"requested": mode, "used": mode, "reason": "set by train.amp"}


@pytest.mark.parametrize(("supported", "used"), [(True, "bf16"), (False, "off")])
def test_auto_on_a_gpu_asks_torch(monkeypatch, supported, used):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "GPU-X")
    chosen = precision.resolve("auto", torch.device("cuda", 0))
    assert chosen.used == used and "GPU-X" in chosen.reason


def test_an_unknown_mode_is_a_recipe_error_naming_the_choices():
    with pytest.raises(RecipeError, match="train.amp") as error:
        load_config(BASE, ["train.amp=bfloat16"])
    assert "auto" in str(error.value)


@pytest.mark.slow
def test_a_run_logs_and_records_what_auto_chose(tiny_overrides, tmp_path, capsys):
    overrides = [*tiny_overrides, "train.amp=auto", "train.max_epoch=1", "train.warmup_epochs=0"]
    result = pipeline.train(load_config(BASE, [*overrides, "model.name=resnet18_ccsc"]))
    expected = precision.resolve("auto", CPU)
    assert result["amp"] == expected.record()
    assert f"=> train.amp=auto: {expected.used} ({expected.reason})" in capsys.readouterr().out
