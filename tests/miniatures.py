"""Miniature copies of the four benchmarks, in each one's exact folder layout and file naming.

No benchmark can be downloaded here, yet the recipes must run through torchreid's own loaders
(``Market1501``, ``DukeMTMCreID``, ``CUHK03``, ``MSMT17``). :func:`write_miniature` draws a small
pool of pedestrians with SynthCam's generator and lays it out as the real dataset is laid out, down
to CUHK03's ``cuhk-03.mat`` (MATLAB v7.3, i.e. HDF5 with object references) and the 767/700
``cuhk03_new_protocol_config_{labeled,detected}.mat`` files. Each writer returns the counts it wrote
(:class:`MiniatureCounts`) so a test can check torchreid reads back exactly that.

Protocols mirrored: Market-1501 / DukeMTMC-reID / MSMT17 put the training identities in the train
folder and, for each test identity, the first image of every camera in ``query`` and the rest in the
gallery (Market-1501 also has a junk ``-1`` image, which torchreid skips, and a ``0000`` distractor);
CUHK03's new protocol queries one image per view of each test identity.
"""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ccsc_plugin.data.synthcam import SynthCamSpec, generate

BENCHMARKS = ("market1501", "dukemtmcreid", "cuhk03", "msmt17")
MAX_CAMERAS = {"market1501": 6, "dukemtmcreid": 8, "cuhk03": 2, "msmt17": 15}
CUHK03_PAIRS = 5  # camera pairs in the real set
CUHK03_IMAGES_PER_VIEW = 5  # cells per view in cuhk-03.mat (10 per person)
MARKET_NAME = re.compile(r"([-\d]+)_c(\d)")  # the pattern torchreid's Market1501 uses


@dataclass(frozen=True)
class MiniatureSpec:
    """Size of a miniature: identities, cameras, images per identity and camera, image size.

    CUHK03 ignores ``num_cams``: each of its identities is seen by the two views of one camera pair.
    """

    num_train_ids: int = 6
    num_test_ids: int = 4
    num_cams: int = 3
    images_per_cam: int = 2
    height: int = 64
    width: int = 32
    seed: int = 0


@dataclass
class SplitCount:
    """Identities, cameras and images of one split."""

    ids: set[int] = field(default_factory=set)
    cams: set[int] = field(default_factory=set)
    images: int = 0

    def add(self, pid: int, cam: int) -> None:
        self.ids.add(pid)
        self.cams.add(cam)
        self.images += 1


@dataclass
class MiniatureCounts:
    """What a writer put in each split (torchreid's view: distractors count, junk does not)."""

    train: SplitCount = field(default_factory=SplitCount)
    query: SplitCount = field(default_factory=SplitCount)
    gallery: SplitCount = field(default_factory=SplitCount)


Pool = dict[int, dict[int, list[Path]]]  # pid (1-based) -> camera (0-based) -> images


def draw_pool(folder: Path, spec: MiniatureSpec, num_cams: int) -> Pool:
    """Draw ``images_per_cam`` images per identity and camera with SynthCam's generator."""
    synth = SynthCamSpec(
        num_train_ids=spec.num_train_ids,
        num_test_ids=spec.num_test_ids,
        num_cams=num_cams,
        images_per_cam=spec.images_per_cam,
        height=spec.height,
        width=spec.width,
        seed=spec.seed,
    )
    generate(folder, synth)
    pool: Pool = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.rglob("*.jpg")):
        pid, cam = map(int, MARKET_NAME.search(path.name).groups())
        if pid > 0:
            pool[pid][cam - 1].append(path)
    for pid in range(1, spec.num_train_ids + spec.num_test_ids + 1):
        for cam in range(num_cams):
            if len(pool[pid][cam]) < spec.images_per_cam:
                raise RuntimeError(f"SynthCam drew {len(pool[pid][cam])} images of id {pid} in camera {cam + 1}.")
            pool[pid][cam] = pool[pid][cam][: spec.images_per_cam]
    return pool


def _check_spec(name: str, spec: MiniatureSpec) -> None:
    if not 1 <= spec.num_cams <= MAX_CAMERAS[name] and name != "cuhk03":
        raise ValueError(f"{name} has cameras 1..{MAX_CAMERAS[name]}; num_cams={spec.num_cams} does not fit.")
    if spec.num_train_ids < 1 or spec.num_test_ids < 1:
        raise ValueError(f"A miniature needs at least one train and one test identity, got {spec}.")
    if name == "cuhk03" and spec.images_per_cam > CUHK03_IMAGES_PER_VIEW:
        raise ValueError(f"cuhk-03.mat holds at most {CUHK03_IMAGES_PER_VIEW} images per view.")
    if spec.images_per_cam < 2:
        raise ValueError("images_per_cam must be >= 2 so every test identity has gallery images.")


def _save(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


def _train_test_split(
    pool: Pool, spec: MiniatureSpec, save: Callable[[str, int, int, int, Path], str], counts: MiniatureCounts
) -> None:
    """Train ids go to train; per test id and camera, the first image is a query, the rest gallery.

    ``save`` writes one image and returns the split torchreid will put it in ("" for none).
    """
    for pid in sorted(pool):
        is_test = pid > spec.num_train_ids
        for cam, images in sorted(pool[pid].items()):
            for shot, image in enumerate(images):
                split = save("train" if not is_test else ("query" if shot == 0 else "gallery"), pid, cam, shot, image)
                if split:
                    getattr(counts, split).add(pid, cam)


# Market-1501 and DukeMTMC-reID share their split folders.
MARKET_STYLE_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def write_market1501(root: Path, pool: Pool, spec: MiniatureSpec) -> MiniatureCounts:
    """``market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/0002_c1s1_000451_03.jpg``."""
    base = root / "market1501" / "Market-1501-v15.09.15"
    counts = MiniatureCounts()

    def save(split: str, pid: int, cam: int, shot: int, image: Path) -> str:
        _save(
            image, base / MARKET_STYLE_FOLDERS[split] / f"{pid:04d}_c{cam + 1}s1_{shot * 25 + pid:06d}_0{shot % 4}.jpg"
        )
        return split

    _train_test_split(pool, spec, save, counts)
    some_image = pool[1][0][0]
    _save(some_image, base / "bounding_box_test" / "-1_c1s1_000401_03.jpg")  # junk: torchreid skips pid -1
    _save(some_image, base / "bounding_box_test" / "0000_c1s1_000151_01.jpg")  # distractor: pid 0 counts
    counts.gallery.add(0, 0)
    return counts


def write_dukemtmcreid(root: Path, pool: Pool, spec: MiniatureSpec) -> MiniatureCounts:
    """``dukemtmc-reid/DukeMTMC-reID/{bounding_box_train,query,bounding_box_test}/0001_c2_f0046182.jpg``."""
    base = root / "dukemtmc-reid" / "DukeMTMC-reID"
    counts = MiniatureCounts()

    def save(split: str, pid: int, cam: int, shot: int, image: Path) -> str:
        _save(image, base / MARKET_STYLE_FOLDERS[split] / f"{pid:04d}_c{cam + 1}_f{pid * 1000 + shot * 37:07d}.jpg")
        return split

    _train_test_split(pool, spec, save, counts)
    return counts


def write_msmt17(root: Path, pool: Pool, spec: MiniatureSpec) -> MiniatureCounts:
    """``msmt17/MSMT17_V1/{train,test}/<pid>/0000_000_01_0303morning_0015_0.jpg`` and the four list files.

    Train and test identities are numbered from 0 separately; ``list_val.txt`` holds the last image of
    each training identity (torchreid adds it to train only with ``combineall``).
    """
    base = root / "msmt17" / "MSMT17_V1"
    lists: dict[str, list[str]] = {"train": [], "val": [], "query": [], "gallery": []}
    counts = MiniatureCounts()
    index: dict[int, int] = defaultdict(int)

    def save(split: str, pid: int, cam: int, shot: int, image: Path) -> str:
        is_train = split == "train"
        label = pid - 1 if is_train else pid - spec.num_train_ids - 1
        folder = "train" if is_train else "test"
        name = f"{label:04d}/{label:04d}_{index[pid]:03d}_{cam + 1:02d}_0303morning_{shot * 15 + 15:04d}_0.jpg"
        index[pid] += 1
        _save(image, base / folder / name)
        last_of_id = is_train and cam == spec.num_cams - 1 and shot == spec.images_per_cam - 1
        lists["val" if last_of_id else split].append(f"{name} {label}")
        return "" if last_of_id else split

    _train_test_split(pool, spec, save, counts)
    for split, lines in lists.items():
        (base / f"list_{split}.txt").write_text("".join(line + "\n" for line in lines))
    return counts


def _cuhk03_crop(image: np.ndarray, detected: bool, rng: np.random.Generator) -> np.ndarray:
    """Labeled boxes are the drawn image; detected boxes are shifted, rescaled crops of it (as a detector's)."""
    if not detected:
        return image
    height, width = image.shape[:2]
    dy, dx = rng.integers(0, max(2, height // 10)), rng.integers(0, max(2, width // 10))
    crop = image[dy : height - max(1, height // 10 - dy), dx : width - max(1, width // 10 - dx)]
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.BILINEAR))


MAT73_HEADER_SIZE = 512  # a v7.3 MAT-file is HDF5 behind a 512-byte MATLAB header (the HDF5 user block)


def _matlab_class(dataset: h5py.Dataset, data: np.ndarray | None) -> None:
    """Tag a dataset as MATLAB does: ``cell`` for reference arrays, empty cells, or the numeric class."""
    if data is None or data.dtype == h5py.ref_dtype:
        dataset.attrs["MATLAB_class"] = np.bytes_(b"cell")
    elif data.dtype == np.uint64 and not data.any() and data.shape == (2,):
        dataset.attrs["MATLAB_class"] = np.bytes_(b"double")
        dataset.attrs["MATLAB_empty"] = np.uint8(1)
    else:
        dataset.attrs["MATLAB_class"] = np.bytes_(b"uint8" if data.dtype == np.uint8 else b"double")


def _write_mat73_header(path: Path) -> None:
    """The 128-byte MATLAB 7.3 header in the user block: text, subsystem offset, version 0x0200, 'IM'."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: ccsc-reid miniatures HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + bytes(8) + b"\x00\x02" + b"IM"
    with open(path, "r+b") as file:
        file.write(header.ljust(MAT73_HEADER_SIZE, b"\x00"))


def _column(values: list[int]) -> np.ndarray:
    """A MATLAB integer column vector (torchreid indexes arrays with the ``*_idx`` values)."""
    return np.array(values, dtype=np.int32).reshape(-1, 1)


def write_cuhk03(root: Path, pool: Pool, spec: MiniatureSpec) -> dict[str, MiniatureCounts]:
    """``cuhk03/cuhk03_release/cuhk-03.mat`` and ``cuhk03/cuhk03_new_protocol_config_{labeled,detected}.mat``.

    Identities are dealt round-robin over the 5 camera pairs; camera 1 / 2 of the pool are the pair's
    two views (cells 1-5 and 6-10, the rest empty). torchreid extracts the PNGs itself on first load.
    Returns the counts of the new (767/700) protocol for ``labeled`` and ``detected``.
    """
    from scipy.io import savemat

    base = root / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    pids = sorted(pool)
    num_pairs = min(CUHK03_PAIRS, len(pids))
    members: list[list[int]] = [pids[pair::num_pairs] for pair in range(num_pairs)]  # pair -> pool pids
    counts: dict[str, MiniatureCounts] = {}

    mat_path = base / "cuhk03_release" / "cuhk-03.mat"
    with h5py.File(mat_path, "w", userblock_size=MAT73_HEADER_SIZE) as mat:
        refs = mat.create_group("#refs#")

        def ref_to(data: np.ndarray) -> h5py.Reference:
            dataset = refs.create_dataset(str(len(refs)), data=data)
            _matlab_class(dataset, data)
            return dataset.ref

        empty = np.zeros(2, dtype=np.uint64)  # how MATLAB v7.3 stores an empty cell
        for kind in ("labeled", "detected"):
            pair_refs = []
            for pair_members in members:
                cells = np.empty((len(pair_members), 2 * CUHK03_IMAGES_PER_VIEW), dtype=h5py.ref_dtype)
                for row, pid in enumerate(pair_members):
                    for view in range(2):
                        for shot in range(CUHK03_IMAGES_PER_VIEW):
                            images = pool[pid][view]
                            data = empty
                            if shot < len(images):
                                pixels = np.asarray(Image.open(images[shot]).convert("RGB"))
                                data = _cuhk03_crop(pixels, kind == "detected", rng).T  # MATLAB is column-major
                            cells[row, view * CUHK03_IMAGES_PER_VIEW + shot] = ref_to(data)
                pair_refs.append(ref_to(cells.T))
            _matlab_class(mat.create_dataset(kind, data=np.array([pair_refs], dtype=h5py.ref_dtype)), None)
        # 20 classic test sets of [pair, person-in-pair] (1-based, doubles, as in the real file)
        everyone = [(pair + 1, row + 1) for pair, group in enumerate(members) for row in range(len(group))]
        test_sets = []
        for _ in range(20):
            chosen = rng.choice(len(everyone), size=spec.num_test_ids, replace=False)
            test_sets.append(ref_to(np.array([everyone[i] for i in sorted(chosen)], dtype=np.float64).T))
        _matlab_class(mat.create_dataset("testsets", data=np.array([test_sets], dtype=h5py.ref_dtype)), None)
    _write_mat73_header(mat_path)

    for kind in ("labeled", "detected"):
        files, labels, cams, train_idx, query_idx, gallery_idx = [], [], [], [], [], []
        split_counts = MiniatureCounts()
        for pair, pair_members in enumerate(members):
            for row, pid in enumerate(pair_members):
                for view in range(2):
                    for shot in range(len(pool[pid][view])):
                        cell = view * CUHK03_IMAGES_PER_VIEW + shot + 1
                        files.append(f"{pair + 1}_{row + 1:03d}_{view + 1}_{cell:02d}.png")  # torchreid's names
                        labels.append(pid)
                        cams.append(view + 1)
                        split = "train" if pid <= spec.num_train_ids else ("query" if shot == 0 else "gallery")
                        {"train": train_idx, "query": query_idx, "gallery": gallery_idx}[split].append(len(files))
                        getattr(split_counts, split).add(pid, view)
        filelist = np.empty((len(files), 1), dtype=object)
        filelist[:, 0] = files
        savemat(
            base / f"cuhk03_new_protocol_config_{kind}.mat",
            {
                "filelist": filelist,
                "labels": _column(labels),
                "camId": _column(cams),
                "train_idx": _column(train_idx),
                "query_idx": _column(query_idx),
                "gallery_idx": _column(gallery_idx),
            },
        )
        counts[kind] = split_counts
    return counts


WRITERS = {
    "market1501": write_market1501,
    "dukemtmcreid": write_dukemtmcreid,
    "cuhk03": write_cuhk03,
    "msmt17": write_msmt17,
}


def write_miniature(name: str, root: str | Path, spec: MiniatureSpec = MiniatureSpec()):
    """Write a miniature of benchmark ``name`` under ``root`` (a ``data.root``); return what was written.

    CUHK03 returns ``{"labeled": counts, "detected": counts}``; the others one :class:`MiniatureCounts`.
    """
    if name not in WRITERS:
        raise ValueError(f"No miniature for {name!r}; choose one of {', '.join(BENCHMARKS)}.")
    _check_spec(name, spec)
    num_cams = 2 if name == "cuhk03" else spec.num_cams
    with tempfile.TemporaryDirectory(prefix="miniature-pool-") as scratch:
        pool = draw_pool(Path(scratch), spec, num_cams)
        return WRITERS[name](Path(root), pool, spec)
