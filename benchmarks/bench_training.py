"""Training speed on the CPU: ImageCCSCEngine (resnet50_ccsc, softmax + CCSC) against torchreid's
ImageSoftmaxEngine with torchreid's resnet50_fc512, same batches and input size; and CCSC's own cost
(loss forward + backward) as a fraction of a training step. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile

import torch
from _common import HEADER, alternate, generated_market, log, recipe, row, timed

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each engine")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each engine (median)")
    parser.add_argument("--backbone", default="resnet50", help="model.backbone of ours (resnet18: recipes/cpu_cuhk03)")
    args = parser.parse_args()
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as root:
        generated_market(root, height=args.height, width=args.width)
        backbone = f"model.backbone={args.backbone}"
        cfg = recipe(root, args.batch_size, args.height, args.width, backbone)
        with contextlib.redirect_stdout(sys.stderr):  # torchreid's set-up report: keep stdout for the table
            datamanager = pipeline.build_datamanager(cfg)
        batches = iter(datamanager.train_loader)
        batch = next(batches)

        ours = pipeline.build_engine(cfg, datamanager)
        ours_contiguous = pipeline.build_engine(
            recipe(root, args.batch_size, args.height, args.width, backbone, "train.channels_last=false"), datamanager
        )
        model = torchreid.models.build_model(
            "resnet50_fc512", datamanager.num_train_pids, loss="softmax", pretrained=False
        )
        optimizer = torchreid.optim.build_optimizer(model, optim="adam", lr=cfg.train.lr)
        theirs = torchreid.engine.ImageSoftmaxEngine(datamanager, model, optimizer, use_gpu=False)
        engines = {"ours": ours, "ours_contiguous": ours_contiguous, "theirs": theirs}
        for engine in engines.values():
            engine.set_model_mode("train")
        log(f"warming up ({args.warmup} steps each) ...")
        for _ in range(args.warmup):
            for engine in engines.values():
                engine.forward_backward(batch)
        log(f"timing {args.steps} steps each, in turns ...")
        medians = alternate(
            args.steps, **{name: (lambda e=e: e.forward_backward(batch)) for name, e in engines.items()}
        )

        features = torch.randn(args.batch_size, ours.model.feature_dim, requires_grad=True)
        pids, camids = batch["pid"], batch["camid"]

        def ccsc_step():
            ours.criterion_ccsc(features, pids, camids).backward()

        for _ in range(5):
            ccsc_step()
        ccsc_seconds = statistics.median(timed(ccsc_step)[0] for _ in range(50))

    size = f"batch {args.batch_size}, {args.height}x{args.width}, {args.backbone} backbone"
    rate = {name: args.batch_size / seconds for name, seconds in medians.items()}
    peer = "torchreid ImageSoftmaxEngine + resnet50_fc512"
    print(HEADER)
    print(
        row(
            f"training images/s, ImageCCSCEngine + resnet50_ccsc, default channels-last ({size})",
            f"{rate['ours']:.1f} img/s",
            peer,
            f"{rate['theirs']:.1f} img/s",
            f"{rate['ours'] / rate['theirs']:.2f}x",
        )
    )
    print(
        row(
            f"training images/s, same with train.channels_last=false ({size})",
            f"{rate['ours_contiguous']:.1f} img/s",
            peer,
            f"{rate['theirs']:.1f} img/s",
            f"{rate['ours_contiguous'] / rate['theirs']:.2f}x",
        )
    )
    share = ccsc_seconds / medians["ours"]
    print(
        row(
            f"CCSC loss forward + backward, share of a training step ({size})",
            f"{ccsc_seconds * 1e3:.2f} ms ({share:.3%})",
            "ImageCCSCEngine training step",
            f"{medians['ours'] * 1e3:.0f} ms",
            "target <= 1%: " + ("met" if share <= 0.01 else "NOT met"),
        )
    )


if __name__ == "__main__":
    main()
