"""Command-line options shared by several ``ccsc-reid`` sub-commands and the benchmark scripts, each declared once.

``--set KEY=VALUE`` is the one way to override a recipe key from a command line (``train``, ``test``, ``export``,
``quickstart``, ``benchmarks/real_tables.py``...): :func:`add_set_option` declares it alike everywhere, so the
values always land in ``args.overrides``, in the order given, for :func:`ccsc_plugin.config.load_config`.
"""

from __future__ import annotations

import argparse

RUN_OR_CHECKPOINT = "checkpoint file or run folder (its latest checkpoint)"  # what --weights / RUN accept


def add_set_option(parser: argparse.ArgumentParser, scope: str = "") -> argparse.Action:
    """Declare ``--set KEY=VALUE`` (repeatable) on ``parser``, collected in ``args.overrides``.

    ``scope`` says where the overrides apply when that is not simply the command's recipe, e.g. ``" in every run"``.
    """
    return parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a recipe key{scope}, e.g. --set train.max_epoch=10 (repeatable)",
    )


def add_flip_option(parser: argparse.ArgumentParser, what: str) -> argparse.Action:
    """Declare ``--flip`` / ``--no-flip`` (test-time flip: ``what`` it does); absent, the recipe's ``test.flip``."""
    return parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"test-time flip: {what}; --no-flip: off (default: the checkpoint's or recipe's test.flip)",
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value
