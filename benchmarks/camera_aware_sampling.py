"""Does camera-aware sampling change the result? torchreid's RandomIdentitySampler (the peer) vs the
plugin's CameraAwareIdentitySampler, softmax + CCSC on the generated SynthCam set, a few seeds.

For each sampler it prints the batches' cross-camera positive pairs (what the CCSC loss averages over)
and, after a short training run per seed, rank-1 and mAP (mean +- std over seeds) and their ratio to
the peer. Short runs on small images: a sanity check of the effect, not a paper number.

    PYTHONPATH=. python benchmarks/camera_aware_sampling.py --seeds 0 1 2 --epochs 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ccsc_plugin import pipeline  # noqa: E402
from ccsc_plugin.config import load_config  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
SAMPLERS = ("RandomIdentitySampler", "CameraAwareIdentitySampler")


def pair_statistics(cfg, epochs: int) -> dict[str, float]:
    """Cross-camera positive pairs per batch, and the share of batches with none, over ``epochs`` epochs."""
    datamanager = pipeline.build_datamanager(cfg)
    dataset = datamanager.train_loader.dataset.train
    sampler = datamanager.train_loader.sampler
    pairs_per_batch = []
    for epoch in range(epochs):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        indices = list(sampler)
        for start in range(0, len(indices) - cfg.train.batch_size + 1, cfg.train.batch_size):
            items = [dataset[i] for i in indices[start : start + cfg.train.batch_size]]
            pids = torch.tensor([item[1] for item in items])
            cams = torch.tensor([item[2] for item in items])
            mask = (pids[:, None] == pids[None]) & (cams[:, None] != cams[None])
            pairs_per_batch.append(int(mask.sum()) // 2)
    return {
        "pairs": statistics.mean(pairs_per_batch),
        "no_pair_share": sum(p == 0 for p in pairs_per_batch) / len(pairs_per_batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-ids", type=int, default=24, help="SynthCam training identities (quickstart: 40)")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--root", default=None, help="data.root for the generated set (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    root = args.root or tempfile.mkdtemp(prefix="synthcam-")
    results: dict[str, dict[str, list[float]]] = {}
    for name in SAMPLERS:
        results[name] = {"rank1": [], "mAP": []}
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as run_dir:
                overrides = [
                    f"sampler.train_sampler={name}",
                    f"train.seed={seed}",
                    f"train.max_epoch={args.epochs}",
                    f"train.stepsize=[{args.epochs - 1}]",
                    f"data.height={args.height}",
                    f"data.width={args.width}",
                    f"data.root={root}",
                    f"data.synthcam.num_train_ids={args.train_ids}",
                    f"data.save_dir={run_dir}",
                    "data.workers=0",
                    "train.print_freq=1000",
                ]
                cfg = load_config(RECIPE, overrides)
                if seed == args.seeds[0]:
                    results[name].update(pair_statistics(cfg, args.epochs))
                with contextlib.redirect_stdout(io.StringIO()):
                    result = pipeline.train(cfg)
            results[name]["rank1"].append(result["rank1"])
            results[name]["mAP"].append(result["mAP"])
            print(f"{name:28s} seed {seed}: rank-1 {result['rank1']:.1%}  mAP {result['mAP']:.1%}", flush=True)

    peer = results[SAMPLERS[0]]
    setting = f"{args.train_ids} train ids x 4 cameras x 3 images, {args.epochs} epochs at {args.height}x{args.width}"
    print(f"\nSynthCam, {setting}, seeds {args.seeds}")
    header = ("sampler", "x-cam pairs/batch", "batches w/o", "rank-1", "mAP", "mAP ratio")
    print(f"{header[0]:28s} {header[1]:>17s} {header[2]:>11s} {header[3]:>14s} {header[4]:>14s} {header[5]:>9s}")
    for name, r in results.items():
        rank1 = f"{statistics.mean(r['rank1']):.1%}+-{statistics.pstdev(r['rank1']):.1%}"
        mean_ap = f"{statistics.mean(r['mAP']):.1%}+-{statistics.pstdev(r['mAP']):.1%}"
        ratio = statistics.mean(r["mAP"]) / statistics.mean(peer["mAP"])
        print(f"{name:28s} {r['pairs']:17.1f} {r['no_pair_share']:11.1%} {rank1:>14s} {mean_ap:>14s} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
