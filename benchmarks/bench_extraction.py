"""Feature-extraction throughput (the path of testing and of the demo) against torchreid's
``FeatureExtractor``: same model (resnet50_ccsc, same weights), same images, same batch size, on the CPU.

Ours is ImageCCSCEngine's extraction over torchreid's test loader (``extract_loader_features``); the peer
gets the same images as file paths, one batch per call. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch
from _common import HEADER, alternate, generated_market, log, recipe, row

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2, help="timed passes over the images of each (median)")
    args = parser.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as root:
        generated_market(root, num_train_ids=8, num_test_ids=8, height=args.height, width=args.width)
        cfg = recipe(root, args.batch_size, args.height, args.width)
        with contextlib.redirect_stdout(sys.stderr):  # torchreid's set-up report: keep stdout for the table
            datamanager = pipeline.build_datamanager(cfg)
        loader = datamanager.test_loader["market1501"]["gallery"]
        paths = [item[0] for item in loader.dataset.data]
        ours = pipeline.build_engine(cfg, datamanager)
        ours_contiguous = pipeline.build_engine(
            recipe(root, args.batch_size, args.height, args.width, "train.channels_last=false"), datamanager
        )
        ours_contiguous.model.load_state_dict(ours.model.state_dict())
        weights = Path(root) / "weights.pth"
        torch.save({"state_dict": ours.model.state_dict()}, weights)  # all but the (unused) classifier load
        peer = torchreid.utils.FeatureExtractor(
            "resnet50_ccsc",
            model_path=str(weights),
            image_size=(args.height, args.width),
            device="cpu",
            verbose=False,
        )
        for engine in (ours, ours_contiguous):
            engine.set_model_mode("eval")

        def run_peer():
            return torch.cat([peer(paths[i : i + args.batch_size]) for i in range(0, len(paths), args.batch_size)])

        def run_ours(engine=ours):
            return engine.extract_loader_features(loader, "gallery")[0]

        diff = float((run_peer() - run_ours()).abs().max())
        log(f"timing {args.runs} passes over {len(paths)} images each, in turns ...")
        medians = alternate(args.runs, ours=run_ours, ours_contiguous=lambda: run_ours(ours_contiguous), peer=run_peer)

    size = f"{len(paths)} images, batch {args.batch_size}, {args.height}x{args.width}"
    rate = {name: len(paths) / seconds for name, seconds in medians.items()}
    peer_name = "torchreid FeatureExtractor (same model and weights)"
    print(HEADER)
    print(
        row(
            f"feature extraction images/s, resnet50_ccsc, default channels-last ({size}; max feature diff {diff:.1e})",
            f"{rate['ours']:.1f} img/s",
            peer_name,
            f"{rate['peer']:.1f} img/s",
            f"{rate['ours'] / rate['peer']:.2f}x",
        )
    )
    print(
        row(
            f"feature extraction images/s, same with train.channels_last=false ({size})",
            f"{rate['ours_contiguous']:.1f} img/s",
            peer_name,
            f"{rate['peer']:.1f} img/s",
            f"{rate['ours_contiguous'] / rate['peer']:.2f}x",
        )
    )


if __name__ == "__main__":
    main()
