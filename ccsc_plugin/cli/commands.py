"""``ccsc-reid``: train, test and compare CCSC recipes through torchreid's engine."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from ccsc_plugin.checkpoint import NOTHING_TO_TEST, CheckpointError, NoSpaceLeft, latest_checkpoint
from ccsc_plugin.cli.options import RUN_OR_CHECKPOINT, add_flip_option, add_set_option, positive_int
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data.csv_dataset import CSVDatasetError
from ccsc_plugin.data.integrity import BadImageError
from ccsc_plugin.engine.interrupt import TrainingInterrupted
from ccsc_plugin.engine.nonfinite import NonFiniteLoss
from ccsc_plugin.evaluation.results import ResultFileError
from ccsc_plugin.models import PretrainedWeightsUnavailable

# Errors a user can fix from the message alone: printed without a traceback, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    RecipeError,
    FileNotFoundError,
    CheckpointError,
    PretrainedWeightsUnavailable,
    BadImageError,
    CSVDatasetError,
    ResultFileError,
    NoSpaceLeft,
)


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/market1501/softmax_ccsc.yaml")
    add_set_option(parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``ccsc-reid`` parser: one sub-command per ``_add_*_command``."""
    parser = argparse.ArgumentParser(prog="ccsc-reid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_train_command,
        _add_test_command,
        _add_extract_command,
        _add_export_command,
        _add_quickstart_command,
        _add_table_command,
        _add_recipes_command,
        _add_demo_command,
    ):
        add_command(commands)
    return parser


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a recipe, then evaluate; writes checkpoints and result.json")
    _add_recipe_args(train)
    train.add_argument("--resume", help="checkpoint file or run folder to resume from (same as --set model.resume=...)")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="data.save_dir holds an earlier run: remove its checkpoints, result.json, logs and test results first",
    )


def _add_test_command(commands: argparse._SubParsersAction) -> None:
    test = commands.add_parser(
        "test",
        help="evaluate trained weights with a recipe's data and test settings; writes data.save_dir/tests/*.json",
    )
    _add_recipe_args(test)
    test.add_argument("--weights", required=True, help=RUN_OR_CHECKPOINT)
    test.add_argument(
        "--visrank",
        type=positive_int,
        metavar="K",
        help="also draw each query's top-K (green: right identity, red: wrong) and list them in ranks.csv, under "
        "tests/<result>-visrank/<target>/",
    )
    test.add_argument(
        "--visrank-queries",
        type=positive_int,
        metavar="N",
        help="rank lists of the first N queries only (query order; default: all)",
    )


def _add_extract_command(commands: argparse._SubParsersAction) -> None:
    extract = commands.add_parser(
        "extract", help="test features of a folder's or a CSV's images into a .npz (features, paths[, pids, camids])"
    )
    extract.add_argument("weights", metavar="RUN", help=RUN_OR_CHECKPOINT)
    extract.add_argument(
        "--images",
        required=True,
        metavar="FOLDER_OR_CSV",
        help="a folder (every image below it, sorted) or a CSV with a path column (and pid,camid: kept in the .npz)",
    )
    extract.add_argument("--out", required=True, metavar="FEATS.npz", help="archive to write, e.g. feats.npz")
    extract.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default: 64)")
    extract.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_flip_option(extract, "average each image's features with its mirror's")


def _add_export_command(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export a trained model to ONNX (image batch -> 512-d features)")
    export.add_argument("source", help="checkpoint file, run folder (its latest checkpoint) or recipe YAML")
    export.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write, e.g. model.onnx")
    add_set_option(export, scope=" (a recipe SOURCE only: a checkpoint keeps its stored recipe)")
    add_flip_option(export, "export the flip-averaged model (two passes in the graph)")


def _add_quickstart_command(commands: argparse._SubParsersAction) -> None:
    quickstart = commands.add_parser("quickstart", help="train baseline and CCSC on the generated set and compare")
    quickstart.add_argument("--recipe", default=None, help="quickstart recipe (default: recipes/quickstart.yaml)")
    add_set_option(quickstart, scope=" of the quickstart recipe")
    quickstart.add_argument(
        "--real-set",
        metavar="FOLDER",
        help="also evaluate both models on the real crops of FOLDER/labels.csv (path,pid,camid), cross-domain "
        "(expected near chance: they are trained on generated people), e.g. ../shared/data/cuhk03-detected-mini",
    )


def _add_table_command(commands: argparse._SubParsersAction) -> None:
    table = commands.add_parser("table", help="render the paper's Tables 1-3 with measured results beside them")
    table.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, folders of runs, or result.json files")
    table.add_argument("--output", help="also write the Markdown to this file")


def _add_recipes_command(commands: argparse._SubParsersAction) -> None:
    recipes = commands.add_parser("recipes", help="list the recipes: path, dataset, method, paper cell")
    recipes.add_argument("folder", nargs="?", default=None, help="recipe folder (default: the repository's recipes/)")


def _add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="browser demo: top-5 retrievals and response maps, models side by side")
    demo.add_argument(
        "--weights",
        action="append",
        metavar="W",
        help="checkpoint file or run folder, one row each (repeatable; default: runs/quickstart/baseline and "
        "runs/quickstart/ccsc, written by `make quickstart`)",
    )
    demo.add_argument(
        "--dataset",
        help="query/gallery set: a torchreid dataset name (read under --data-root), a CSV path,pid,camid[,split] "
        "or a folder holding labels.csv, or a Market-1501-style folder (default: the first checkpoint's test set)",
    )
    demo.add_argument("--data-root", default="reid-data", help="where torchreid datasets live (default: reid-data)")
    demo.add_argument(
        "--example-query",
        type=int,
        default=0,
        metavar="N",
        help="the query (index into the query set) shown answered when the page opens (default: 0, the first)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, local only)")
    demo.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    demo.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    demo.add_argument("--cache-dir", default=None, help="feature cache (default: ~/.cache/ccsc-reid/features)")
    demo.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload (default: 10)")
    demo.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 is faster on a busy machine)"
    )
    add_flip_option(demo, "average each feature with its mirror image's")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except USER_ERRORS as error:
        print(f"ccsc-reid {args.command}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLoss as error:
        print(f"ccsc-reid {args.command}: error: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        finishes = " (with all its epochs done, it only evaluates and writes result.json)" if stop.in_evaluation else ""
        print(
            f"ccsc-reid {args.command}: stopped by {stop}.\nResume with: {_resume_command(args, stop)}{finishes}",
            file=sys.stderr,
        )
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"ccsc-reid {args.command}: stopped at once; nothing saved since the last checkpoint.", file=sys.stderr)
        return 130


def _resume_command(args: argparse.Namespace, stop: TrainingInterrupted) -> str:
    """The command line that continues an interrupted ``train`` run from its checkpoint."""
    if args.command != "train":
        return f"ccsc-reid train RECIPE --resume {stop.checkpoint.parent.parent} (the run's recipe and --set options)"
    overrides = [arg for item in args.overrides for arg in ("--set", item)]
    run_dir = stop.checkpoint.parent.parent
    return shlex.join(["ccsc-reid", "train", args.recipe, *overrides, "--resume", str(run_dir)])


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("train", "test"):
        from ccsc_plugin import pipeline

    if args.command == "train":
        overrides = list(args.overrides) + ([f"model.resume={args.resume}"] if args.resume else [])
        pipeline.train(load_config(args.recipe, overrides), recipe=args.recipe, overwrite=args.overwrite)
    elif args.command == "test":
        weights = latest_checkpoint(args.weights, NOTHING_TO_TEST)
        cfg = load_config(args.recipe, args.overrides)
        pipeline.evaluate(cfg, weights, args.recipe, visrank=args.visrank, visrank_queries=args.visrank_queries)
    elif args.command == "extract":
        from ccsc_plugin.cli.serving import run_extract

        run_extract(args)
    elif args.command == "export":
        from ccsc_plugin.cli.serving import run_export

        return run_export(args)
    elif args.command == "quickstart":
        from ccsc_plugin.cli.quickstart import run_quickstart

        run_quickstart(args.recipe, args.overrides, real_set=args.real_set)
    elif args.command == "table":
        from ccsc_plugin.evaluation.tables import check_output, find_results, render_tables

        output = check_output(args.output) if args.output else None
        markdown = render_tables(find_results(args.runs))
        print(markdown, end="")
        if output:
            output.write_text(markdown)
    elif args.command == "recipes":
        from ccsc_plugin.cli.recipe_index import format_recipes, list_recipes

        print(format_recipes(list_recipes(args.folder)))
    elif args.command == "demo":
        from ccsc_plugin.cli.serving import run_demo

        return run_demo(args)
    return 0
