"""The one place that imports torchreid, whichever layout is installed.

PyPI ``torchreid==0.2.5`` repackages upstream under ``torchreid.reid.*``; upstream installed
from source exposes the same modules as ``torchreid.*``. Every other module of the plugin
imports torchreid through this shim: ``from ccsc_plugin._torchreid import torchreid``.
"""

from __future__ import annotations

import importlib
import types
import warnings


def _import_root() -> types.ModuleType:
    """Return the module that holds ``data``, ``engine``, ``losses``, ... for this install."""
    with warnings.catch_warnings():
        # 0.2.5 warns at import that its Cython evaluator is missing; the plugin has its own.
        warnings.filterwarnings("ignore", message="Cython evaluation")
        try:
            root = importlib.import_module("torchreid.reid")
        except ModuleNotFoundError as error:
            if error.name not in ("torchreid.reid",):
                raise
            root = importlib.import_module("torchreid")
        for name in ("data", "engine", "losses", "metrics", "models", "optim", "utils"):
            importlib.import_module(f"{root.__name__}.{name}")
    return root


torchreid = _import_root()
LAYOUT = torchreid.__name__  # "torchreid.reid" (PyPI 0.2.5) or "torchreid" (upstream)


def submodule(path: str) -> types.ModuleType:
    """Import ``torchreid.<path>`` in the installed layout, e.g. ``submodule('data.sampler')``."""
    return importlib.import_module(f"{LAYOUT}.{path}")


def model_factory() -> dict:
    """torchreid's model factory dict (``models.__model_factory``; it has no register function)."""
    return getattr(torchreid.models, "__model_factory")


def image_dataset_registry() -> dict:
    """torchreid's image dataset dict behind ``register_image_dataset``."""
    return getattr(submodule("data.datasets"), "__image_datasets")
