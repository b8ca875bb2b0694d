"""``ccsc-reid recipes``: every shipped recipe with its dataset, method and the paper cell it reproduces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ccsc_plugin.config import load_config
from ccsc_plugin.shipped import recipes_dir

# recipes/methods/: one method's losses per file, a part that recipes combine with a base through _base_, not a run
METHODS_FOLDER = "methods"


@dataclass(frozen=True)
class RecipeInfo:
    path: Path
    dataset: str
    method: str
    paper_cell: str


def describe(path: str | Path) -> RecipeInfo:
    """Resolve a recipe (with its bases) and say what it trains."""
    from ccsc_plugin.data.registry import dataset_setting
    from ccsc_plugin.pipeline import method_name

    cfg = load_config(path)
    dataset = dataset_setting(cfg.data.sources[0], cfg.data.cuhk03_labeled, cfg.data.cuhk03_classic_split)
    return RecipeInfo(Path(path), dataset, method_name(cfg), cfg.experiment.paper_cell or "-")


def list_recipes(folder: str | Path | None = None) -> list[RecipeInfo]:
    """All ``*.yaml`` recipes under ``folder`` (default: the shipped ones), sorted by path.

    Method files (those in a ``methods/`` folder) are left out: each is a recipe's loss terms, not a run.
    """
    folder = Path(folder) if folder is not None else recipes_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"Recipe folder {folder} does not exist; pass a folder of recipes.")
    paths = (path for path in sorted(folder.rglob("*.yaml")) if METHODS_FOLDER not in path.relative_to(folder).parts)
    return [describe(path) for path in paths]


def format_recipes(infos: list[RecipeInfo], relative_to: Path | None = None) -> str:
    """One aligned line per recipe: path, dataset, method, paper cell."""
    base = relative_to or Path.cwd()
    paths = [
        str(info.path.resolve().relative_to(base)) if info.path.resolve().is_relative_to(base) else str(info.path)
        for info in infos
    ]
    width_path = max(map(len, paths), default=0)
    width_data = max((len(i.dataset) for i in infos), default=0)
    width_method = max((len(i.method) for i in infos), default=0)
    return "\n".join(
        f"{path:<{width_path}}  {info.dataset:<{width_data}}  {info.method:<{width_method}}  {info.paper_cell}"
        for path, info in zip(paths, infos, strict=True)
    )
