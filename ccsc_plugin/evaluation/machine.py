"""Which machine a run's time was measured on: CPU model, cores it could use, torch threads, GPU, torch version.

A wall time means little without its machine: the same recipe took 10 minutes on one 2-core CPU and 15 on
another, and one torch thread pinned to one core takes about twice as long as two threads on two idle cores.
``result.json`` records this beside ``wall_time_s``; the benchmark scripts print :func:`describe` beside their
figures.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows."""
    try:
        with cpuinfo.open() as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which ``taskset`` or a scheduler may narrow."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def machine_record(device: torch.device | None = None) -> dict[str, Any]:
    """The ``machine`` entry of ``result.json``: CPU, cores (all / usable), torch threads, GPU and torch version."""
    gpu = torch.cuda.get_device_name(device) if device is not None and device.type == "cuda" else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__.split("+")[0],
    }


def describe(record: dict[str, Any] | None = None) -> str:
    """``"AMD EPYC, 2 cores, torch 2.14.1"``, with the usable cores and threads when they are fewer than all."""
    record = record or machine_record()
    text = f"{record['cpu']}, {record['cores']} cores"
    if record["usable_cores"] != record["cores"] or record["torch_threads"] != record["cores"]:
        text += f" ({record['usable_cores']} usable, {record['torch_threads']} torch threads)"
    if record.get("gpu"):
        text += f", {record['gpu']}"
    return f"{text}, torch {record['torch']}"
