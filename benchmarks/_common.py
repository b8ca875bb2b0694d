"""Shared helpers of the benchmark scripts: the machine's description, medians, mean ± sd and the Markdown table."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from ccsc_plugin.evaluation.machine import describe

HEADER = "| figure | ours | peer | peer value | ratio | machine | command |\n|---|---|---|---|---|---|---|"


def machine() -> str:
    """CPU model, core count and torch version (timings are only comparable on the same machine)."""
    return describe()


def command() -> str:
    return "python " + " ".join(shlex.quote(arg) for arg in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def alternate(runs: int, **functions: Callable[[], object]) -> dict[str, float]:
    """Median seconds of each function, run in turns so that load from other processes hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            times[name].append(timed(function)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator); the deviation of one value is None."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def format_mean_sd(values: Sequence[float], scale: float = 100.0, signed: bool = False, digits: int = 1) -> str:
    """``"12.3 ± 1.4"`` of ``values`` times ``scale`` (fractions -> %); one value has no deviation: ``"12.3"``."""
    mean, sd = mean_sd([scale * value for value in values])
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if sd is None else f"{text} ± {sd:.{digits}f}"


def row(figure: str, ours: str, peer: str, peer_value: str, ratio: str) -> str:
    return f"| {figure} | {ours} | {peer} | {peer_value} | {ratio} | {machine()} | `{command()}` |"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def generated_market(root, num_train_ids: int = 32, num_test_ids: int = 20, height: int = 128, width: int = 64):
    """A generated set in Market-1501's layout under ``root`` (for the data manager); returns ``root``."""
    from pathlib import Path

    from ccsc_plugin.data.synthcam import SynthCamSpec, generate

    spec = SynthCamSpec(num_train_ids, num_test_ids, num_cams=4, images_per_cam=3, height=height, width=width)
    generate(Path(root) / "market1501" / "Market-1501-v15.09.15", spec)
    return Path(root)


def recipe(root, batch_size: int, height: int, width: int, *extra: str):
    """The paper recipe shrunk to the benchmark's batch and input size (random init, no workers)."""
    from pathlib import Path

    from ccsc_plugin.config import load_config

    base = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
    overrides = [
        f"data.root={root}",
        "data.sources=[market1501]",
        f"data.height={height}",
        f"data.width={width}",
        "data.workers=0",
        "model.pretrained=false",
        f"train.batch_size={batch_size}",
        f"test.batch_size={batch_size}",
        f"data.save_dir={Path(root) / 'run'}",
        *extra,
    ]
    return load_config(base, overrides)
