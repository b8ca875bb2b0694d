"""Demo latency: one query's answer (top-5 + response maps, baseline and CCSC rows) on a 2,000-image gallery.

Budget (issue 6): at most 1 s once warm, on 2 CPU cores. Prints the median and 90th percentile per
kind of query and map, the ratio to the budget, and the ratio against the peer: pytorch-grad-cam's
plain Grad-CAM, which back-propagates through the whole backbone instead of stopping at the last stage.

    PYTHONPATH=. python benchmarks/demo_latency.py [--weights W W] [--threads 2] [--repeats 10]

Without --weights it uses runs/quickstart/{baseline,ccsc} if they exist, else two untrained checkpoints
of the same model and input size (latency does not depend on the weights' values). Gallery features
are computed once (progress bar) and cached under --cache-dir, as the demo does.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import ccsc_plugin  # noqa: E402,F401
from ccsc_plugin._torchreid import torchreid  # noqa: E402
from ccsc_plugin.checkpoint import checkpoint_path, save_checkpoint  # noqa: E402
from ccsc_plugin.cli.quickstart import DEFAULT_RECIPE  # noqa: E402
from ccsc_plugin.config import load_config  # noqa: E402
from ccsc_plugin.data.synthcam import SynthCamSpec, generate  # noqa: E402
from ccsc_plugin.serve import demo_backend  # noqa: E402
from ccsc_plugin.serve.visualisation import gradcam_maps  # noqa: E402

BUDGET_S = 1.0
# 250 test identities x 4 cameras x 3 shots; each identity's first shot per camera is a query:
# 1,000 queries and a 2,000-image gallery.
SPEC = SynthCamSpec(num_train_ids=4, num_test_ids=250, num_cams=4, images_per_cam=3, height=128, width=64, seed=7)


def untrained_checkpoints(folder: Path) -> list[str]:
    """Two untrained resnet50_ccsc checkpoints with the quickstart's recipe (input size, normalisation)."""
    cfg = load_config(DEFAULT_RECIPE)
    runs = []
    for seed, name in enumerate(("baseline", "ccsc")):
        torch.manual_seed(seed)
        model = torchreid.models.build_model(cfg.model.name, 4, loss="ccsc", pretrained=False)
        state = {"state_dict": model.state_dict(), "config": cfg.dump(), "num_classes": 4, "epoch": 0}
        save_checkpoint(state, checkpoint_path(folder / name, 0))
        runs.append(str(folder / name))
    return runs


def time_answers(backend: demo_backend.DemoBackend, make_query, kind: str, repeats: int):
    """Wall-clock and process CPU seconds per answer (with 1 thread, CPU time = wall time on a free core)."""
    wall, cpu = [], []
    for index in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        backend.answer(make_query(index), kind)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.9 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", help="checkpoints (default: quickstart's, else untrained)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the budget is for 2 cores)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "ccsc-demo-bench"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    quickstart = [Path("runs/quickstart/baseline"), Path("runs/quickstart/ccsc")]
    weights = args.weights or (
        [str(p) for p in quickstart] if all(p.is_dir() for p in quickstart) else untrained_checkpoints(work)
    )
    dataset = work / f"synthcam-{SPEC.key()}"  # Market layout: query/ and bounding_box_test/
    if not (dataset / "spec.json").is_file():
        print(f"generating the 2,000-image gallery in {dataset} ...")
        generate(dataset, SPEC)
    backend = demo_backend.DemoBackend(weights, dataset=str(dataset), cache_dir=work / "cache")
    assert not backend.errors, backend.errors
    print(f"weights: {weights}")
    print(f"gallery: {len(backend.data.gallery)} images, {len(backend.data.query)} queries; threads: {args.threads}")
    # Other processes on the same cores inflate the figure (2 torch threads on oversubscribed cores spin-wait).
    print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    backend.warm_up()

    uploads = []
    for item in backend.data.query[: args.repeats]:
        buffer = io.BytesIO()
        demo_backend.read_rgb(item.path).save(buffer, format="PNG")
        uploads.append(buffer.getvalue())
    backend.answer(backend.query_from_upload(uploads[0]))  # warm the batch-of-one path too

    def from_set(index: int):
        return backend.query_from_set(index)

    def from_upload(index: int):
        return backend.query_from_upload(uploads[index])

    print(f"\n{'query':<8}{'map':<11}{'wall median s':>14}{'wall p90 s':>11}{'CPU median s':>13}{'wall / budget':>14}")
    results, cpu_results = {}, {}
    for source, make_query in (("set", from_set), ("upload", from_upload)):
        for kind in ("gradcam", "intensity"):
            wall, cpu = time_answers(backend, make_query, kind, args.repeats)
            results[source, kind], cpu_results[source, kind] = statistics.median(wall), statistics.median(cpu)
            print(f"{source:<8}{kind:<11}{statistics.median(wall):>14.3f}{p90(wall):>11.3f}"
                  f"{statistics.median(cpu):>13.3f}{statistics.median(wall) / BUDGET_S:>14.2f}")  # fmt: skip

    demo_backend.gradcam_maps = functools.partial(gradcam_maps, fast=False)  # the peer: full back-propagation
    plain_wall, plain_cpu = (statistics.median(v) for v in time_answers(backend, from_set, "gradcam", args.repeats))
    print(f"\npeer (pytorch-grad-cam, full backprop), query from the set: wall {plain_wall:.3f} s, CPU {plain_cpu:.3f}")
    print(f"speed-up of the demo's Grad-CAM over the peer (CPU time): {plain_cpu / cpu_results['set', 'gradcam']:.2f}x")
    print(f"load average after timing: {os.getloadavg()[0]:.1f}")
    worst, worst_cpu = max(results.values()), max(cpu_results.values())
    verdict = "OK" if worst <= BUDGET_S else "OVER"
    print(f"worst median: wall {worst:.3f} s = {worst / BUDGET_S:.2f} x the budget ({verdict}), CPU {worst_cpu:.2f}")


if __name__ == "__main__":
    main()
