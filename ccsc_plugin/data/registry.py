"""Datasets: the plugin's own (registered with torchreid) and a presence check for the benchmarks.

torchreid tries to *download* a benchmark whose folder is missing, which fails offline with an
obscure error; :func:`check_dataset` fails first, naming the path and the expected layout.

torchreid builds a dataset by name with its own arguments only: ``ImageDataManager(...)`` calls
``init_image_dataset(name, root=..., mode=...)``, which looks ``name`` up in its registry while the data
manager is constructed, and never again. The recipe's ``data.csv`` and ``data.synthcam`` options therefore reach
the plugin's datasets through :func:`bound_datasets`: for one construction the registry holds the classes with
those options bound, then the plain classes again. Each data manager (each run, several in one process)
sees its own options, and none is left behind for the next.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ccsc_plugin._torchreid import image_dataset_registry, torchreid
from ccsc_plugin.data.csv_dataset import CSVDataset
from ccsc_plugin.data.images import bind_torchreid_reader
from ccsc_plugin.data.synthcam import SynthCam, SynthCamSpec
from ccsc_plugin.errors import RecipeError

PLUGIN_DATASETS: dict[str, type] = {"synthcam": SynthCam, "csv": CSVDataset}

# Where torchreid looks for each benchmark under data.root, and what it expects to find there.
EXPECTED_LAYOUTS: dict[str, tuple[str, str]] = {
    "market1501": (
        "market1501",
        "market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/0002_c1s1_000451_03.jpg",
    ),
    "dukemtmcreid": (
        "dukemtmc-reid",
        "dukemtmc-reid/DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/0001_c2_f0046182.jpg",
    ),
    "cuhk03": (
        "cuhk03",
        "cuhk03/cuhk03_release/cuhk-03.mat and cuhk03/cuhk03_new_protocol_config_{detected,labeled}.mat",
    ),
    "msmt17": (
        "msmt17",
        "msmt17/MSMT17_V1/{train,test}/<pid>/0000_000_01_0303morning_0015_0.jpg and "
        "msmt17/MSMT17_V1/list_{train,val,query,gallery}.txt (or MSMT17_V2 with mask_{train,test}_v2)",
    ),
}


# What torchreid's loader needs under data.root, as alternatives (any one complete layout will do).
_SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
_MSMT_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
REQUIRED_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "market1501": (
        tuple(f"market1501/Market-1501-v15.09.15/{d}" for d in _SPLIT_DIRS),
        tuple(f"market1501/{d}" for d in _SPLIT_DIRS),  # the older flat layout torchreid still accepts
    ),
    "dukemtmcreid": (tuple(f"dukemtmc-reid/DukeMTMC-reID/{d}" for d in _SPLIT_DIRS),),
    "cuhk03": (
        (
            "cuhk03/cuhk03_release/cuhk-03.mat",
            "cuhk03/cuhk03_new_protocol_config_detected.mat",
            "cuhk03/cuhk03_new_protocol_config_labeled.mat",
        ),
    ),
    "msmt17": (
        tuple(f"msmt17/MSMT17_V1/{p}" for p in ("train", "test", *_MSMT_LISTS)),
        tuple(f"msmt17/MSMT17_V2/{p}" for p in ("mask_train_v2", "mask_test_v2", *_MSMT_LISTS)),
    ),
}


class DatasetNotFound(FileNotFoundError):
    """A benchmark's folder, or a file its loader reads, is missing under ``data.root``."""


def dataset_setting(name: str, cuhk03_labeled: bool = False, cuhk03_classic_split: bool = False) -> str:
    """The paper's name for a dataset as configured: CUHK03 splits into ``cuhk03-labeled`` / ``cuhk03-detected``."""
    if name != "cuhk03":
        return name
    return f"cuhk03-{'labeled' if cuhk03_labeled else 'detected'}{'-classic' if cuhk03_classic_split else ''}"


def check_known_dataset(name: str, key: str = "data.sources") -> None:
    """Raise :class:`~ccsc_plugin.errors.RecipeError` if ``name`` is no registered dataset, naming the nearest."""
    registry = image_dataset_registry()
    if name in registry:
        return
    nearest = difflib.get_close_matches(str(name), registry, n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(map(repr, nearest))}?" if nearest else ""
    torchreid_names = sorted(set(registry) - set(PLUGIN_DATASETS))
    raise RecipeError(
        f"{key}: unknown dataset {name!r}.{hint} torchreid datasets: {', '.join(torchreid_names)}; "
        f"the plugin's: {', '.join(PLUGIN_DATASETS)}."
    )


def check_dataset(name: str, root: str | Path, key: str = "data.sources") -> None:
    """Raise :class:`DatasetNotFound` naming the missing path and the expected layout.

    Every path the benchmark's torchreid loader reads is checked, so a half-copied dataset fails here
    with the path rather than inside torchreid (which would otherwise try to download it). An unknown
    name is a :class:`~ccsc_plugin.errors.RecipeError` naming ``key`` and the nearest known names.
    """
    check_known_dataset(name, key)
    if name not in EXPECTED_LAYOUTS:
        return
    folder, layout = EXPECTED_LAYOUTS[name]
    base = Path(root).expanduser().resolve()
    missing_per_layout = [[base / p for p in paths if not (base / p).exists()] for paths in REQUIRED_PATHS[name]]
    if any(not missing for missing in missing_per_layout):
        return
    missing = min(missing_per_layout, key=len)
    if not (base / folder).is_dir():
        problem = f"{base / folder} does not exist"
    else:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        problem = f"{base / folder} is incomplete: {missing[0]} is missing{more}"
    raise DatasetNotFound(
        f"Dataset {name!r} not found: {problem}. torchreid expects, under data.root={root}: {layout}. "
        "Download it by hand (see torchreid's dataset docs) and set data.root."
    )


def csv_options(csv_node: Any) -> dict[str, Any]:
    """The ``csv`` dataset's construction arguments from a recipe's ``data.csv`` section (paths made absolute)."""

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve()) if path else ""

    return {"csv_path": absolute(csv_node.path), "test_path": absolute(csv_node.test_path), "val_ids": csv_node.val_ids}


@contextlib.contextmanager
def bound_datasets(synthcam: Mapping[str, Any] | None = None, csv: Any | None = None) -> Iterator[None]:
    """While the block runs, torchreid builds ``synthcam`` and ``csv`` by name with a recipe's options bound.

    ``synthcam`` is a recipe's ``data.synthcam`` (checked as a :class:`SynthCamSpec` first), ``csv`` its
    ``data.csv`` section; a dataset not given keeps its plain class. The options travel as a
    ``functools.partial`` in torchreid's registry (which ``register_image_dataset`` would refuse to replace),
    and the previous entries are put back when the block ends, however it ends.
    """
    bound = {}
    if synthcam is not None:
        bound["synthcam"] = functools.partial(SynthCam, spec=SynthCamSpec(**synthcam))
    if csv is not None:
        bound["csv"] = functools.partial(CSVDataset, **csv_options(csv))
    registry = image_dataset_registry()
    previous = {name: registry[name] for name in bound}
    registry.update(bound)
    try:
        yield
    finally:
        registry.update(previous)


def register_datasets() -> None:
    """Register the plugin's datasets with torchreid (idempotent: re-registration is skipped).

    Also binds the plugin's one image reader into torchreid's datasets (``images.bind_torchreid_reader``), so
    every dataset, torchreid's benchmarks included, reads images as the demo and feature extraction do (16-bit
    PNGs scaled, not clipped; huge images refused); this runs at plugin import, as the registration does.
    """
    bind_torchreid_reader()
    registry = image_dataset_registry()
    for name, cls in PLUGIN_DATASETS.items():
        if name not in registry:
            torchreid.data.register_image_dataset(name, cls)
