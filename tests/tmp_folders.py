"""Temporary folders that do not outlive their use: CI's disk is small and a trained test run is 100-300 MB."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Iterator[Callable[[str], Path]]:
    """``module_tmp(name)``: a new folder for a module-scoped fixture, all removed when the module ends.

    A trained run leaves 100-300 MB of checkpoints, and CI's disk is small: with pytest's
    ``tmp_path_retention_policy = "failed"`` (pyproject.toml) for per-test folders, the suite holds one
    module's runs at a time. As pytest does for ``tmp_path``, a module with a failed test keeps its folders.
    """
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    failed_before = request.session.testsfailed
    yield lambda name: Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)
