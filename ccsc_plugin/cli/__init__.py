"""Command line: ``ccsc-reid train | test | extract | export | quickstart | recipes | table | demo`` (the top level).

Each command reads a recipe or a run folder and calls the stage below it: ``pipeline`` to train and test,
``serve`` for the demo, feature extraction and export (:mod:`.serving`), ``evaluation`` for the tables.
"""

from ccsc_plugin.cli.commands import USER_ERRORS, build_parser, main

__all__ = ["USER_ERRORS", "build_parser", "main"]
