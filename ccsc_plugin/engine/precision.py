"""``train.amp``: which autocast precision a run trains in, and why (``auto`` detects what the hardware has).

``auto`` picks bf16 where the hardware computes it natively, float32 elsewhere: on a CPU with the
``avx512_bf16`` or ``amx_bf16`` instructions (read from ``/proc/cpuinfo``; elsewhere bf16 is emulated and slower
than float32), on a GPU that ``torch.cuda.is_bf16_supported()``. The choice and its reason are logged and
recorded in ``result.json`` (``amp``). The losses stay in float32 under any autocast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MODES = ("auto", *AMP_DTYPES)  # every valid train.amp
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Precision:
    """What ``train.amp`` asked for, what runs (``off`` = float32), and why."""

    requested: str
    used: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        return AMP_DTYPES[self.used]

    def record(self) -> dict[str, str]:
        """The ``amp`` entry of ``result.json``."""
        return asdict(self)


def cpu_bf16_flags(cpuinfo: Path = CPUINFO) -> list[str]:
    """The native-bf16 instruction sets this CPU reports (none where ``/proc/cpuinfo`` is absent)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return []
    present = set(flags.partition(":")[2].split())
    return [flag for flag in CPU_BF16_FLAGS if flag in present]


def resolve(mode: str, device: torch.device, cpuinfo: Path = CPUINFO) -> Precision:
    """The precision ``train.amp: mode`` trains in on ``device``."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {mode!r}.")
    if mode != "auto":
        return Precision(mode, mode, "set by train.amp")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(mode, "bf16", f"{torch.cuda.get_device_name(device)} supports bf16")
        return Precision(mode, "off", f"{torch.cuda.get_device_name(device)} has no bf16: float32")
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return Precision(mode, "bf16", f"the CPU has native bf16 ({', '.join(flags)})")
    return Precision(mode, "off", f"the CPU has no native bf16 ({' or '.join(CPU_BF16_FLAGS)}): float32")
