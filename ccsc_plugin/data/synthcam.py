"""SynthCam: a generated multi-camera pedestrian set, written in Market-1501's layout and naming.

No download and no shipped images: the images are drawn deterministically from a seed on first use
(:mod:`ccsc_plugin.data.synthcam_render` draws them, and describes what they model) into
``<data.root>/synthcam/<spec key>/{bounding_box_train,query,bounding_box_test}`` with Market names
(``0001_c2s1_000004_00.jpg``), and read back by the same ``process_dir`` torchreid uses for Market-1501.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ccsc_plugin._torchreid import submodule
from ccsc_plugin.data.synthcam_render import GENERATOR_VERSION, camera_style, draw_person, identity, stream
from ccsc_plugin.errors import RecipeError

Market1501 = submodule("data.datasets.image.market1501").Market1501

SPLITS = ("bounding_box_train", "query", "bounding_box_test")


@dataclass(frozen=True)
class SynthCamSpec:
    """Size and seed of a generated set; hashed into the folder name, so specs never collide."""

    num_train_ids: int = 40
    num_test_ids: int = 20
    num_cams: int = 4
    images_per_cam: int = 3
    height: int = 128
    width: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.num_train_ids < 1 or self.num_test_ids < 1:
            problems.append("num_train_ids and num_test_ids must be >= 1")
        if self.num_cams < 2:
            problems.append("num_cams must be >= 2 (re-ID matches a person across cameras)")
        if self.images_per_cam < 2:
            problems.append("images_per_cam must be >= 2 (one query per camera, the rest gallery)")
        if self.height < 32 or self.width < 16:
            problems.append("height must be >= 32 and width >= 16 pixels")
        if self.seed < 0:
            problems.append("seed must be >= 0")
        if problems:
            raise RecipeError(f"Invalid data.synthcam spec {asdict(self)}: " + "; ".join(problems) + ".")

    def key(self) -> str:
        text = json.dumps({**asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


def image_name(pid: int, cam: int, shot: int) -> str:
    """Market-1501 naming: ``<pid 4 digits>_c<camera from 1>s1_<frame 6 digits>_00.jpg``."""
    return f"{pid:04d}_c{cam + 1}s1_{shot:06d}_00.jpg"


def split_of(index: int, shot: int, spec: SynthCamSpec) -> str:
    """Train identities go to ``bounding_box_train``; each test identity's first shot per camera is a query."""
    if index < spec.num_train_ids:
        return "bounding_box_train"
    return "query" if shot == 0 else "bounding_box_test"


def render_shot(spec: SynthCamSpec, index: int, cam: int, shot: int) -> Image.Image:
    """Shot ``shot`` of identity ``index`` (from 0) by camera ``cam`` (from 0), exactly as ``generate`` writes it."""
    rng = stream(spec.seed, 3, index, cam, shot)
    return draw_person(identity(spec.seed, index), camera_style(spec.seed, cam), (spec.height, spec.width), rng)


def generate(folder: str | Path, spec: SynthCamSpec, progress: bool = True) -> Path:
    """Write the train / query / gallery folders of ``spec`` into ``folder`` (deterministic, atomic).

    Images go to a temporary sibling folder that is renamed into place when complete, so an
    interrupted run never leaves a half-written set behind (a concurrent writer's finished set wins).
    """
    folder = Path(folder)
    if is_complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for split in SPLITS:
        (tmp / split).mkdir(parents=True)
    num_ids = spec.num_train_ids + spec.num_test_ids
    ids = tqdm(range(num_ids), desc=f"Generating synthcam ({num_ids} ids)", unit="id", disable=not progress)
    try:
        for index in ids:
            for cam in range(spec.num_cams):
                for shot in range(spec.images_per_cam):
                    image = render_shot(spec, index, cam, shot)
                    image.save(tmp / split_of(index, shot, spec) / image_name(index + 1, cam, shot), quality=92)
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists() and not is_complete(folder):
        shutil.rmtree(folder)  # an unfinished or damaged set (a split folder deleted): drawn again
    try:
        tmp.rename(folder)
    except OSError:  # another process finished the same set first; keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_complete(folder):
            raise
    return folder


def is_complete(folder: Path) -> bool:
    """A finished set: its ``spec.json`` and every split folder are there."""
    return (folder / "spec.json").is_file() and all((folder / split).is_dir() for split in SPLITS)


class SynthCam(Market1501):
    """torchreid image dataset over a generated SynthCam tree (generated on first use).

    ``spec`` selects the set (default: :class:`SynthCamSpec`'s). torchreid builds datasets by name with its
    own arguments only, so :func:`ccsc_plugin.data.registry.bound_datasets` binds a recipe's spec for one build.
    """

    dataset_dir = "synthcam"

    def __init__(self, root: str = "", spec: SynthCamSpec | None = None, **kwargs) -> None:
        self.spec = spec if spec is not None else SynthCamSpec()
        self.root = str(Path(root).expanduser().resolve())
        folder = generate(Path(self.root) / self.dataset_dir / self.spec.key(), self.spec)
        self.data_dir = str(folder)
        self.train_dir = str(folder / "bounding_box_train")
        self.query_dir = str(folder / "query")
        self.gallery_dir = str(folder / "bounding_box_test")
        train = self.process_dir(self.train_dir, relabel=True)
        query = self.process_dir(self.query_dir, relabel=False)
        gallery = self.process_dir(self.gallery_dir, relabel=False)
        super(Market1501, self).__init__(train, query, gallery, **kwargs)
