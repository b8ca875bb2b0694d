"""``ccsc-reid``: train, test and compare CCSC recipes through torchreid's engine."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .checkpoint import CheckpointError, latest_checkpoint
from .config import RecipeError, load_config
from .datasets.csv_dataset import CSVDatasetError
from .model import PretrainedWeightsUnavailable

# Errors a user can fix from the message alone: printed without a traceback, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    RecipeError,
    FileNotFoundError,
    CheckpointError,
    PretrainedWeightsUnavailable,
    CSVDatasetError,
)


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/market1501/softmax_ccsc.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set train.max_epoch=10 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccsc-reid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a recipe, then evaluate; writes checkpoints and result.json")
    _add_recipe_args(train)
    train.add_argument("--resume", help="checkpoint file or run folder to resume from (same as --set model.resume=...)")

    test = commands.add_parser("test", help="evaluate trained weights with a recipe's data and test settings")
    _add_recipe_args(test)
    test.add_argument("--weights", required=True, help="checkpoint file or run folder (its latest checkpoint)")

    quickstart = commands.add_parser("quickstart", help="train baseline and CCSC on the generated set and compare")
    quickstart.add_argument("--recipe", default=None, help="quickstart recipe (default: recipes/quickstart.yaml)")
    quickstart.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except USER_ERRORS as error:
        print(f"ccsc-reid {args.command}: error: {error}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from . import pipeline  # heavy imports (torch, torchreid) only once the arguments parse

    if args.command == "train":
        overrides = list(args.overrides) + ([f"model.resume={args.resume}"] if args.resume else [])
        pipeline.train(load_config(args.recipe, overrides), recipe=args.recipe)
    elif args.command == "test":
        weights = latest_checkpoint(args.weights)
        pipeline.evaluate(load_config(args.recipe, args.overrides), weights, recipe=args.recipe)
    elif args.command == "quickstart":
        from .quickstart import run_quickstart

        run_quickstart(args.recipe, args.overrides)
    return 0
