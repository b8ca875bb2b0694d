"""Training speed on the CPU: ImageCCSCEngine (resnet50_ccsc or --model, softmax + CCSC) against torchreid's
ImageSoftmaxEngine with torchreid's resnet50_fc512, same batches and input size; bf16 autocast
(``train.amp=bf16``) against float32, with what ``train.amp=auto`` picks on this CPU and why; and CCSC's own
cost (loss forward + backward) as a fraction of a training step. Prints a Markdown table.

With --epoch, instead: the wall time of one whole epoch of a recipe, end to end (``pipeline.build_engine``,
which checks every image and fills the image cache, then one ``engine.train`` epoch), with
``data.cache_images`` on against off, for each of --workers. Run it from the checkout root (the recipes'
CSV paths are relative to it); --max-batches caps the epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from _common import HEADER, alternate, generated_market, log, recipe, row, timed

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.cli.options import add_set_option
from ccsc_plugin.config import load_config
from ccsc_plugin.engine import precision

EPOCH_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "cpu_cuhk03" / "softmax_ccsc.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each engine")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each engine (median)")
    parser.add_argument("--model", default="resnet50_ccsc", help="our model.name (resnet18_ccsc: recipes/cpu_cuhk03)")
    parser.add_argument("--epoch", action="store_true", help="time one end-to-end epoch, cache on / off (see above)")
    parser.add_argument(
        "--recipe", default=str(EPOCH_RECIPE), help="--epoch: the recipe (recipes/cpu_cuhk03/softmax_ccsc.yaml)"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="--epoch: data.workers values")
    parser.add_argument("--max-batches", type=int, default=0, help="--epoch: stop each epoch after N (0: all)")
    parser.add_argument("--repeats", type=int, default=1, help="--epoch: epochs of each setting, in turns (median)")
    add_set_option(parser, scope=" (--epoch only)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.epoch:
        epoch_table(args)
        return

    with tempfile.TemporaryDirectory() as root:
        generated_market(root, height=args.height, width=args.width)
        ours_model = f"model.name={args.model}"
        cfg = recipe(root, args.batch_size, args.height, args.width, ours_model)
        with contextlib.redirect_stdout(sys.stderr):  # torchreid's set-up report: keep stdout for the table
            datamanager = pipeline.build_datamanager(cfg)
        batches = iter(datamanager.train_loader)
        batch = next(batches)

        ours = pipeline.build_engine(cfg, datamanager)
        ours_contiguous = pipeline.build_engine(
            recipe(root, args.batch_size, args.height, args.width, ours_model, "train.channels_last=false"), datamanager
        )
        ours_bf16 = pipeline.build_engine(
            recipe(root, args.batch_size, args.height, args.width, ours_model, "train.amp=bf16"), datamanager
        )
        model = torchreid.models.build_model(
            "resnet50_fc512", datamanager.num_train_pids, loss="softmax", pretrained=False
        )
        optimizer = torchreid.optim.build_optimizer(model, optim="adam", lr=cfg.train.lr)
        theirs = torchreid.engine.ImageSoftmaxEngine(datamanager, model, optimizer, use_gpu=False)
        engines = {"ours": ours, "ours_contiguous": ours_contiguous, "ours_bf16": ours_bf16, "theirs": theirs}
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
            ours.loss_terms["ccsc"].module(features, pids, camids).backward()

        for _ in range(5):
            ccsc_step()
        ccsc_seconds = statistics.median(timed(ccsc_step)[0] for _ in range(50))

    size = f"batch {args.batch_size}, {args.height}x{args.width}, {args.model}"
    rate = {name: args.batch_size / seconds for name, seconds in medians.items()}
    peer = "torchreid ImageSoftmaxEngine + resnet50_fc512"
    print(HEADER)
    print(
        row(
            f"training images/s, ImageCCSCEngine, default channels-last ({size})",
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
    auto = precision.resolve("auto", torch.device("cpu"))
    print(
        row(
            f"training images/s, train.amp=bf16 autocast ({size}); train.amp=auto picks "
            f"{'bf16' if auto.used == 'bf16' else 'float32'} here: {auto.reason}",
            f"{rate['ours_bf16']:.1f} img/s",
            "same in float32 (train.amp=off)",
            f"{rate['ours']:.1f} img/s",
            f"{rate['ours_bf16'] / rate['ours']:.2f}x",
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


class FirstBatches:
    """A train loader cut to its first ``count`` batches (its length too), for a capped epoch."""

    def __init__(self, loader, count: int) -> None:
        self.loader, self.count = loader, min(count, len(loader))

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.count)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)  # sampler, batch_size, dataset...


def one_epoch(recipe_path: str, overrides: list[str], max_batches: int) -> tuple[float, float]:
    """Seconds to build the engine (images checked, and cached when on) and then to train one epoch."""
    cfg = load_config(recipe_path, overrides)
    torchreid.utils.set_random_seed(cfg.train.seed)
    with contextlib.redirect_stdout(sys.stderr):  # torchreid's report and the epoch's lines: keep stdout for the table
        loading, engine = timed(lambda: pipeline.build_engine(cfg))
        if max_batches:
            engine.train_loader = FirstBatches(engine.train_loader, max_batches)
        engine.epoch, engine.max_epoch = 0, 1
        open_layers = list(cfg.train.open_layers)
        training, _ = timed(lambda: engine.train(print_freq=cfg.train.print_freq, open_layers=open_layers))
    return loading, loading + training


def epoch_table(args: argparse.Namespace) -> None:
    """Median end-to-end epoch (loading included) with the image cache on and off, per data.workers value."""
    cap = f", first {args.max_batches} batches" if args.max_batches else ""
    with tempfile.TemporaryDirectory() as save_dir:
        base = [*args.overrides, f"data.save_dir={save_dir}/run"]
        log("reading every image once, untimed (the files into the OS page cache) ...")
        with contextlib.redirect_stdout(sys.stderr):
            pipeline.build_datamanager(load_config(args.recipe, [*base, "data.workers=0"]))
        times: dict[tuple[int, bool], list[tuple[float, float]]] = {}
        for repeat in range(args.repeats):
            for workers in args.workers:
                for cache in (False, True) if repeat % 2 == 0 else (True, False):  # in turns: load hits both
                    log(f"epoch {repeat + 1}/{args.repeats}: data.workers={workers} data.cache_images={cache}{cap}")
                    overrides = [*base, f"data.workers={workers}", f"data.cache_images={str(cache).lower()}"]
                    times.setdefault((workers, cache), []).append(one_epoch(args.recipe, overrides, args.max_batches))
                    gc.collect()  # the last engine's loader workers end before the next setting
    name = os.path.relpath(args.recipe, EPOCH_RECIPE.parents[2])
    print(HEADER)
    for workers in args.workers:
        (on_load, on), (off_load, off) = (
            [statistics.median(values) for values in zip(*times[(workers, cache)], strict=True)]
            for cache in (True, False)
        )
        print(
            row(
                f"one epoch end to end, loading included ({name}, data.workers={workers}{cap})",
                f"{on:.1f} s with data.cache_images (loading {on_load:.1f} s)",
                "same without the cache",
                f"{off:.1f} s (loading {off_load:.1f} s)",
                f"{on / off:.2f}x (with cache / without)",
            )
        )


if __name__ == "__main__":
    main()
