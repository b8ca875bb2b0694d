"""The package's layout: stage sub-packages that import only downwards, no loops, modules of readable size, and
each sub-package exporting what the other stages import from it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ccsc_plugin"
# top to bottom, as data flows: a module imports its own stage or a lower one, never a higher or a sibling stage
LEVELS = [
    {"cli"},
    {"demo"},
    {"serve"},
    {"pipeline"},
    {"config"},
    {"engine"},
    {"data", "models", "losses", "evaluation"},
    {"errors", "checkpoint", "rng", "_torchreid", "shipped"},
]
LEVEL = {stage: depth for depth, stages in enumerate(LEVELS) for stage in stages}
ENTRY_POINTS = {"__init__", "__main__"}  # the package's own registration and ``python -m ccsc_plugin``
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60


def modules() -> dict[str, Path]:
    """``stage.module`` -> file, over ccsc_plugin/ and the demo folder it ships."""
    files = {
        **{path: PACKAGE for path in PACKAGE.rglob("*.py")},
        **{p: p.parents[1] for p in (PACKAGE.parent / "demo").glob("*.py")},
    }
    found = {}
    for path, root in files.items():
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def imported_stages(path: Path) -> set[str]:
    """The ``ccsc_plugin`` stages a file imports, at module level or inside functions."""
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ccsc_plugin"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("ccsc_plugin.")]
        stages.update(name.split(".")[1] for name in names if name.count(".") >= 1)
    return stages


def stage_of(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("module", sorted(m for m in modules() if stage_of(m) not in ENTRY_POINTS))
def test_imports_point_down_the_stages(module):
    stage = stage_of(module)
    assert stage in LEVEL, f"{module}: new stage {stage!r}; place it in LEVELS"
    upward = {
        other
        for other in imported_stages(modules()[module])
        if other in LEVEL and other != stage and LEVEL[other] <= LEVEL[stage]
    }
    assert not upward, f"{module} imports {sorted(upward)}, which sit at its own level or above it"


def test_the_module_import_graph_has_no_loop():
    names = modules()
    edges = {}
    for module, path in names.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ccsc_plugin"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}".removeprefix("ccsc_plugin.")
                    base = node.module.removeprefix("ccsc_plugin").lstrip(".")
                    targets.add(full if full in names else base)
        edges[module] = {t for t in targets if t in names and t != module}
    edges = {m: {t.removesuffix(".__init__") for t in ts} for m, ts in edges.items()}
    done, active = set(), []

    def visit(module: str) -> None:
        if module in active:
            loop = active[active.index(module) :] + [module]
            pytest.fail("import loop: " + " -> ".join(loop))
        if module in done:
            return
        active.append(module)
        for target in edges.get(module, set()) | edges.get(f"{module}.__init__", set()):
            visit(target)
        active.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module.removesuffix(".__init__"))


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_and_functions_are_short(module):
    path = modules()[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path}: {len(text.splitlines())} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def imports_across_stages() -> set[tuple[str, str]]:
    """(stage, name) for each ``from ccsc_plugin.<stage>.<module> import name`` in a module of another stage."""
    found = set()
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ccsc_plugin."):
                parts = node.module.split(".")
                if len(parts) > 2 and parts[1] != stage_of(module):
                    found.update((parts[1], alias.name) for alias in node.names if not alias.name.startswith("_"))
    return found


@pytest.mark.parametrize("stage", sorted(stage for stage in LEVEL if (PACKAGE / stage / "__init__.py").is_file()))
def test_each_package_exports_the_names_other_stages_import_from_it(stage):
    package = importlib.import_module(f"ccsc_plugin.{stage}")
    exported = set(getattr(package, "__all__", ()))
    wanted = {name for other, name in imports_across_stages() if other == stage}
    assert not wanted - exported, f"ccsc_plugin.{stage}.__all__ lacks {sorted(wanted - exported)}"
    assert all(hasattr(package, name) for name in exported)
