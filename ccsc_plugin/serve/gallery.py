"""Query/gallery sets for retrieval: a torchreid dataset, a Market-layout folder or a ``path,pid,camid`` CSV.

:func:`load_query_gallery` reads one into :class:`QueryGallery` (items with identity and camera), and
:class:`DemoInputError` is what the demo shows for input it cannot use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from yacs.config import CfgNode as CN

from ccsc_plugin._torchreid import image_dataset_registry, torchreid
from ccsc_plugin.data.csv_dataset import CSVDatasetError, read_rows, split_rows
from ccsc_plugin.data.images import read_image
from ccsc_plugin.data.registry import PLUGIN_DATASETS, bound_datasets, check_dataset

_MARKET_NAME = re.compile(r"([-\d]+)_c(\d)")


class DemoInputError(ValueError):
    """Input the demo cannot use (an upload, a dataset, a checkpoint); the message says what to do."""


@dataclass(frozen=True, order=True)
class Item:
    """One image of a query or gallery set; ``pid`` / ``camid`` are None when unknown (an upload)."""

    path: str
    pid: int | None = None
    camid: int | None = None


@dataclass
class QueryGallery:
    """A named query set and gallery set."""

    name: str
    query: list[Item]
    gallery: list[Item]

    def __post_init__(self) -> None:
        if not self.query or not self.gallery:
            raise DemoInputError(
                f"Dataset {self.name!r} has {len(self.query)} query and {len(self.gallery)} gallery images; "
                "the demo needs both."
            )


# ---------------------------------------------------------------------------------------------- data


def load_query_gallery(
    source: str | Path | None = None, root: str | Path = "reid-data", cfg: CN | None = None
) -> QueryGallery:
    """The query/gallery set to search, from one of:

    - ``None``: the test split of ``cfg``'s dataset (``data.targets[0]`` or ``data.sources[0]``);
    - a name registered with torchreid (``market1501``, ``synthcam``...), read under ``root``;
    - a CSV file ``path,pid,camid[,split]`` or a folder holding ``labels.csv`` (paths relative to it);
    - a folder in Market-1501's layout (``query/`` and ``bounding_box_test/``, names ``0001_c1...jpg``).
    """
    if source is None:
        if cfg is None:
            raise DemoInputError("No dataset given and no checkpoint config to take one from: pass --dataset.")
        names = list(cfg.data.targets) or list(cfg.data.sources)
        return _torchreid_split(names[0], cfg.data.root, cfg)
    path = Path(source).expanduser()
    if path.suffix.lower() == ".csv" or (path / "labels.csv").is_file():
        return read_csv_split(path if path.suffix.lower() == ".csv" else path / "labels.csv")
    if path.is_dir():
        return read_market_folder(path)
    return _torchreid_split(str(source), root, cfg)


def _torchreid_split(name: str, root: str | Path, cfg: CN | None) -> QueryGallery:
    if name not in image_dataset_registry():
        raise DemoInputError(
            f"Unknown dataset {name!r}: give a torchreid dataset name ({', '.join(sorted(image_dataset_registry()))}), "
            "a CSV file (path,pid,camid) or a folder with query/ and bounding_box_test/."
        )
    # the checkpoint's options of a plugin dataset: its synthcam spec, or its csv test set (test_path, val_ids...)
    options = {name: cfg.data[name]} if name in PLUGIN_DATASETS and cfg is not None else {}
    if name not in PLUGIN_DATASETS:
        check_dataset(name, root)
    with bound_datasets(**options):
        dataset = torchreid.data.datasets.init_image_dataset(name, root=str(root), mode="query", verbose=False)
    return QueryGallery(
        name=name,
        query=[Item(str(row[0]), int(row[1]), int(row[2])) for row in dataset.query],
        gallery=[Item(str(row[0]), int(row[1]), int(row[2])) for row in dataset.gallery],
    )


def read_market_folder(folder: Path) -> QueryGallery:
    """``query/`` and ``bounding_box_test/`` with Market-1501 names (pid -1 = junk, skipped)."""
    splits = {}
    for split in ("query", "bounding_box_test"):
        if not (folder / split).is_dir():
            raise DemoInputError(
                f"{folder} is neither a CSV dataset (no labels.csv) nor a Market-1501-style folder "
                f"(no {split}/ with images named like 0001_c1s1_000151_01.jpg)."
            )
        items = []
        for image in sorted((folder / split).glob("*.jpg")):
            match = _MARKET_NAME.search(image.name)
            if match and int(match.group(1)) >= 0:
                items.append(Item(str(image), int(match.group(1)), int(match.group(2)) - 1))
        splits[split] = items
    return QueryGallery(folder.name, splits["query"], splits["bounding_box_test"])


def read_csv_split(csv_path: Path) -> QueryGallery:
    """A ``path,pid,camid[,split]`` CSV read by the ``csv`` dataset type (same checks, same protocol:
    without a split column, per identity the first image of each camera is a query)."""
    try:
        rows, has_split = read_rows(csv_path)
    except CSVDatasetError as error:
        raise DemoInputError(str(error)) from error
    _, query, gallery = split_rows(rows, has_split)
    return QueryGallery(csv_path.parent.name, [Item(*q) for q in query], [Item(*g) for g in gallery])


def read_rgb(path: str | Path) -> Image.Image:
    """A dataset image as RGB (the gallery's own files: paths never come from a client), read as training
    and ``test`` read it (:func:`ccsc_plugin.data.images.read_image`)."""
    return read_image(path)
