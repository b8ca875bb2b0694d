"""Datasets: the plugin's own (registered with torchreid) and a presence check for the benchmarks.

torchreid tries to *download* a benchmark whose folder is missing, which fails offline with an
obscure error; :func:`check_dataset` fails first, naming the path and the expected layout.
"""

from __future__ import annotations

from pathlib import Path

from .._torchreid import image_dataset_registry, torchreid
from .csv_dataset import CSVDataset
from .synthcam import SynthCam

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
        "msmt17/MSMT17_V1/{train,test}/<pid>/<image>.jpg with list_{train,val,query,gallery}.txt",
    ),
}


class DatasetNotFound(FileNotFoundError):
    """A benchmark's folder is missing under ``data.root``."""


def check_dataset(name: str, root: str | Path) -> None:
    """Raise :class:`DatasetNotFound` naming the path and layout if a benchmark folder is missing."""
    if name not in EXPECTED_LAYOUTS:
        if name not in image_dataset_registry():
            raise ValueError(
                f"Unknown dataset {name!r}. Registered with torchreid: {sorted(image_dataset_registry())}."
            )
        return
    folder, layout = EXPECTED_LAYOUTS[name]
    path = Path(root).expanduser() / folder
    if not path.is_dir():
        raise DatasetNotFound(
            f"Dataset {name!r} not found: {path.resolve()} does not exist. torchreid expects, under "
            f"data.root={root}: {layout}. Download it by hand (see torchreid's dataset docs) and set data.root."
        )


def register_datasets() -> None:
    """Register the plugin's datasets with torchreid (idempotent: re-registration is skipped)."""
    registry = image_dataset_registry()
    for name, cls in PLUGIN_DATASETS.items():
        if name not in registry:
            torchreid.data.register_image_dataset(name, cls)
