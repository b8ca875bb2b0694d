"""Every shipped recipe resolves to the settings of its snapshot, and ``ccsc-reid recipes`` lists the same lines.

``tests/data/resolved_recipes.json`` holds, for each recipe ``ccsc-reid recipes`` lists (its path under
``recipes/``), the fully resolved config (defaults, then its ``_base_`` chain, then the file) and its line of the
listing: dataset, method and paper cell. Moving settings between recipe files (bases, method files) must leave
both alone: a benchmark compares the stored configs of finished runs with its recipes. When settings change on
purpose, regenerate the snapshot from the checkout root and review its diff before committing it:

    PYTHONPATH=. python tests/test_resolved_recipes.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ccsc_plugin.cli.recipe_index import list_recipes
from ccsc_plugin.config import load_config
from ccsc_plugin.shipped import recipes_dir

SNAPSHOT = Path(__file__).resolve().parent / "data" / "resolved_recipes.json"
PAPER_CELLS = 30  # Tables 1-3: 6 methods x 5 dataset settings


def recipe_key(path: Path) -> str:
    """A recipe's name in the snapshot: its path under ``recipes/``, e.g. ``market1501/softmax.yaml``."""
    return Path(path).resolve().relative_to(recipes_dir().resolve()).as_posix()


def as_json(value: Any) -> str:
    """Stable JSON text of a config or a part of one: key order ignored, ``1`` and ``1.0`` kept apart."""
    return json.dumps(value, indent=1, sort_keys=True)


def current() -> dict[str, dict[str, Any]]:
    """What the shipped recipes resolve to now: ``{"configs": {key: config}, "listed": {key: [dataset, ...]}}``."""
    infos = list_recipes()
    return {
        "configs": {recipe_key(info.path): json.loads(as_json(load_config(info.path))) for info in infos},
        "listed": {recipe_key(info.path): [info.dataset, info.method, info.paper_cell] for info in infos},
    }


def write_snapshot(path: Path = SNAPSHOT) -> None:
    """Write :func:`current` to ``path`` (deliberately: the tests below compare the recipes with it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(as_json(current()) + "\n", encoding="utf-8")


def snapshot_keys() -> list[str]:
    """The recipes of the snapshot (none before it is first written, so that the generator can run)."""
    return sorted(json.loads(SNAPSHOT.read_text(encoding="utf-8"))["configs"]) if SNAPSHOT.is_file() else []


@pytest.fixture(scope="module")
def snapshot() -> dict[str, dict[str, Any]]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def now() -> dict[str, dict[str, Any]]:
    return current()


def test_the_listing_names_the_same_recipes_as_the_snapshot(snapshot, now):
    assert sorted(now["listed"]) == sorted(snapshot["listed"])


def test_the_listing_has_the_same_30_paper_cells_as_the_snapshot(snapshot, now):
    def cells(listed: dict[str, list[str]]) -> dict[str, list[str]]:
        return {key: line for key, line in listed.items() if line[2] != "-"}

    assert len(cells(snapshot["listed"])) == PAPER_CELLS
    assert cells(now["listed"]) == cells(snapshot["listed"])


def test_every_listed_line_is_unchanged(snapshot, now):
    assert now["listed"] == snapshot["listed"]


@pytest.mark.parametrize("key", snapshot_keys())
def test_recipe_resolves_to_its_snapshot(key, snapshot):
    path = recipes_dir() / key
    assert path.is_file(), f"{key} is in the snapshot but not under {recipes_dir()}"
    assert as_json(load_config(path)) == as_json(snapshot["configs"][key])


if __name__ == "__main__":
    write_snapshot()
    print(f"wrote {SNAPSHOT}")
