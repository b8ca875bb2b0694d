"""The wheel: it lists every sub-package, carries the recipes and the demo, and an installed copy runs on its own.

The wheel is built once (from a copy of the sources: a build in the checkout would reuse a stale ``build/``)
and installed with ``pip --target`` into a folder; the commands then run from another folder, with only that
folder on ``PYTHONPATH`` and the venv's interpreter, so the dependencies resolve but the checkout is not read.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from test_quickstart import TINY_QUICKSTART

from ccsc_plugin.checkpoint import latest_checkpoint
from ccsc_plugin.cli.recipe_index import METHODS_FOLDER
from ccsc_plugin.evaluation.results import read_result

REPO = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "ccsc_plugin", "recipes", "demo")  # what the build reads
SHIPPED_FOLDERS = {"ccsc_plugin.recipes": "recipes", "ccsc_plugin.demo": "demo"}  # top-level folders in the package
CHECKOUT_RECIPES = sorted(p.relative_to(REPO / "recipes") for p in (REPO / "recipes").rglob("*.yaml"))
LISTED_RECIPES = [path for path in CHECKOUT_RECIPES if path.parts[0] != METHODS_FOLDER]  # method files: not runs
COMMAND_TIMEOUT, DEMO_START_TIMEOUT = 900, 300  # seconds, on 2 busy cores


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``command``; on failure, fail the test with its output."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def _installed_env(target: Path) -> dict[str, str]:
    """The environment of a command that imports ``ccsc_plugin`` from ``target`` only."""
    return {**os.environ, "PYTHONPATH": str(target)}


def _run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m ARGS`` with the venv's interpreter, from ``cwd``, importing the package from ``target``."""
    return _run([sys.executable, "-m", *args], cwd=cwd, env=_installed_env(target))


def _as_set_options(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="module")
def wheel(module_tmp) -> Path:
    """The package's wheel, built without build isolation (offline) from a fresh copy of the sources."""
    source = module_tmp("wheel-source")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    out = module_tmp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", str(out)]
    _run(pip_wheel, cwd=source)
    (built,) = out.glob("ccsc_reid-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, module_tmp) -> Path:
    """A folder holding the installed wheel (``pip install --target``), no dependencies."""
    target = module_tmp("installed")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], cwd=REPO)
    return target


@pytest.fixture(scope="module")
def quickstart_runs(installed, module_tmp) -> tuple[Path, str]:
    """The installed ``quickstart`` run at its smallest (TINY_QUICKSTART): its runs folder and its output."""
    work = module_tmp("quickstart")
    runs = work / "runs" / "quickstart"
    overrides = [*TINY_QUICKSTART, f"data.root={work / 'data'}", f"data.save_dir={runs / 'ccsc'}"]
    done = _run_installed(installed, work, "ccsc_plugin", "quickstart", *_as_set_options(overrides))
    return runs, done.stdout


def test_the_wheel_lists_every_sub_package_and_the_shipped_folders():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    inits = (REPO / "ccsc_plugin").rglob("__init__.py")
    sub_packages = {".".join(init.parent.relative_to(REPO).parts) for init in inits}
    assert sorted(setuptools["packages"]) == sorted(sub_packages | set(SHIPPED_FOLDERS))
    assert setuptools["package-dir"] == SHIPPED_FOLDERS
    assert all((REPO / folder / "__init__.py").is_file() for folder in SHIPPED_FOLDERS.values())


def test_the_wheel_carries_the_code_the_recipes_and_the_demo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "ccsc_plugin").rglob("*.py")}
    expected.add("ccsc_plugin/evaluation/paper_results.yaml")
    expected |= {f"ccsc_plugin/recipes/{p.as_posix()}" for p in CHECKOUT_RECIPES}
    expected |= {f"ccsc_plugin/demo/{p.name}" for p in (REPO / "demo").glob("*.py")}
    assert sorted(expected - names) == []
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/", "recipes/", "demo/"))]


@pytest.mark.parametrize("module", ["ccsc_plugin", "ccsc_plugin.cli"])
def test_the_installed_wheel_lists_its_own_recipes(installed, tmp_path, module):
    lines = _run_installed(installed, tmp_path, module, "recipes").stdout.splitlines()
    paths = [Path(line.split()[0]) for line in lines]
    assert len(paths) == len(LISTED_RECIPES)
    # recipes_dir() is the recipes folder of the ccsc_plugin that was imported: the installed one
    shipped = installed / "ccsc_plugin" / "recipes"
    assert all(path.is_relative_to(shipped) for path in paths), lines
    assert sorted(path.relative_to(shipped) for path in paths) == LISTED_RECIPES


@pytest.mark.slow
def test_the_installed_wheel_runs_the_quickstart_on_its_own_recipe(installed, quickstart_runs):
    runs, out = quickstart_runs
    for folder in ("baseline", "ccsc"):
        assert latest_checkpoint(runs / folder).name == "epoch-002.pt"
        result = read_result(runs / folder / "result.json")
        assert Path(result["recipe"]) == installed / "ccsc_plugin" / "recipes" / "quickstart.yaml"
    assert "| synthcam | softmax (baseline) |" in out and "| synthcam | softmax + CCSC |" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_http(url: str, server: subprocess.Popen, log: Path) -> str:
    """The body ``url`` answers once the server is up; fails if it exits or stays silent too long."""
    deadline = time.monotonic() + DEMO_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the demo exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    pytest.fail(f"the demo did not answer {url} within {DEMO_START_TIMEOUT} s:\n{log.read_text()}")


@pytest.mark.slow
def test_the_installed_wheel_serves_the_demo_on_the_quickstart_checkpoints(installed, quickstart_runs, tmp_path):
    runs, _ = quickstart_runs
    port = _free_port()
    weights = ["--weights", str(runs / "baseline"), "--weights", str(runs / "ccsc")]
    options = ["--port", str(port), "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    command = [sys.executable, "-m", "ccsc_plugin", "demo", *weights, *options]
    log = tmp_path / "demo.log"
    with open(log, "w") as handle:
        server = subprocess.Popen(command, cwd=tmp_path, env=_installed_env(installed), stdout=handle, stderr=handle)
        try:
            config = _wait_for_http(f"http://127.0.0.1:{port}/config", server, log)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    assert "ccsc-reid: who is this person?" in config and "Dataset **synthcam**" in config
