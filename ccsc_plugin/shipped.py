"""The files the package ships beside its code: the paper's recipes and the Gradio demo.

In the source tree they are the top-level ``recipes/`` and ``demo/`` folders; ``pyproject.toml`` maps them
into the package as ``ccsc_plugin.recipes`` and ``ccsc_plugin.demo``, so a wheel carries them and an
editable install finds them where they are. Both are found through :mod:`importlib.resources`.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from types import ModuleType

RECIPES_PACKAGE = "ccsc_plugin.recipes"
DEMO_APP_MODULE = "ccsc_plugin.demo.app"


def recipes_dir() -> Path:
    """The folder of the shipped recipes (``recipes/`` of a checkout, ``ccsc_plugin/recipes`` of a wheel)."""
    return Path(str(resources.files(RECIPES_PACKAGE)))


def recipe(name: str) -> Path:
    """A shipped recipe by its path under ``recipes/``, e.g. ``recipe("quickstart.yaml")``."""
    return recipes_dir() / name


def demo_app() -> ModuleType:
    """The Gradio demo's module (``demo/app.py``), imported as part of the package."""
    return importlib.import_module(DEMO_APP_MODULE)
