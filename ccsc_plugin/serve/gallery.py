"""Retrieval with trained checkpoints: query/gallery sets, cached gallery features, top-k with the protocol.

The demo's logic, free of any UI: :func:`load_query_gallery` reads a query/gallery set (a torchreid
dataset, a Market-layout folder or a ``path,pid,camid`` CSV), :class:`Retriever` rebuilds a trained
model from a checkpoint (input size and normalisation from the run's recipe), :func:`cached_features`
computes features once and keeps them on disk keyed by checkpoint and images, :func:`rank_gallery`
returns the top-k with torchreid's protocol (same identity *and* same camera as the query is skipped),
the query's AP and the rank of its first correct match, and :func:`decode_upload` turns untrusted
uploaded bytes into an RGB image or a clear error.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T
from tqdm import tqdm
from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin._torchreid import image_dataset_registry, torchreid
from ccsc_plugin.data.csv_dataset import CSVDatasetError, read_rows, split_rows
from ccsc_plugin.data.registry import PLUGIN_DATASETS, check_dataset, configure_csv, configure_synthcam
from ccsc_plugin.evaluation.metrics import distance_matrix
from ccsc_plugin.serve.inference import model_from_checkpoint

MAX_UPLOAD_BYTES = 10 * 2**20  # 10 MiB: a person crop is a few tens of kB
MAX_UPLOAD_PIXELS = 4096 * 4096  # larger is not a person crop, and decoding it costs memory
MIN_IMAGE_SIDE = 16  # below this a crop carries no identity (the models see 128x64 or more)
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
    if name == "synthcam" and cfg is not None:
        configure_synthcam(cfg.data.synthcam)
    if name == "csv" and cfg is not None:
        configure_csv(cfg.data.csv)  # the checkpoint's test set: data.csv.test_path, val_ids or its split
    if name not in PLUGIN_DATASETS:
        check_dataset(name, root)
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
    """A dataset image as RGB (the gallery's own files: paths never come from a client)."""
    with Image.open(path) as image:
        return image.convert("RGB")


# --------------------------------------------------------------------------------------------- model


class Retriever:
    """A trained model rebuilt from a checkpoint, with its recipe's input size, normalisation and metric."""

    def __init__(self, weights: str | Path) -> None:
        path = ckpt.latest_checkpoint(weights) if Path(weights).is_dir() else Path(weights)
        self.model, self.cfg = model_from_checkpoint(ckpt.load_checkpoint(path), origin=str(path))
        self.path = path
        # The run folder ("runs/quickstart/ccsc"), or the file without its suffix for a checkpoint outside one;
        # its name ("ccsc") labels the model.
        self.folder = path.parent.parent if path.parent.name == ckpt.CHECKPOINT_DIR else path.with_suffix("")
        self.label = self.folder.name
        self.size = (int(self.cfg.data.height), int(self.cfg.data.width))
        self.metric = str(self.cfg.test.dist_metric)
        self.normalize_feature = bool(self.cfg.test.normalize_feature)
        self.transform = T.Compose(
            [
                T.Resize(self.size),
                T.ToTensor(),
                T.Normalize(list(self.cfg.data.norm_mean), list(self.cfg.data.norm_std)),
            ]
        )
        self.fingerprint = hashlib.sha1(f"{ckpt.file_sha256(path)}|{self.size}|{self.transform}".encode()).hexdigest()

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> a normalised batch at the model's input size."""
        return torch.stack([self.transform(image) for image in images])

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Test features (the model's eval-mode output), L2-normalised if the recipe says so."""
        features = self.model(batch).float()
        return torch.nn.functional.normalize(features, dim=1) if self.normalize_feature else features

    def distances(self, query: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
        """Query x gallery distances with the recipe's metric (torchreid's definitions)."""
        return distance_matrix(query, gallery, self.metric).numpy()


# ------------------------------------------------------------------------------------------- caching


def images_fingerprint(items: Sequence[Item]) -> str:
    """Identifies a list of images by path, size and modification time (cheap; changes if a file does)."""
    digest = hashlib.sha1()
    for item in items:
        stat = os.stat(item.path)
        digest.update(f"{item.path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ccsc-reid" / "features"


def cached_features(
    retriever: Retriever, items: Sequence[Item], cache_dir: str | Path, batch_size: int = 64, desc: str = "features"
) -> torch.Tensor:
    """Features of ``items``: read from ``cache_dir`` if this checkpoint has seen these images, else computed
    (with a progress bar) and stored there atomically."""
    key = hashlib.sha1(f"{retriever.fingerprint}|{images_fingerprint(items)}".encode()).hexdigest()
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            features = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(features, torch.Tensor) and features.shape[0] == len(items):
                return features
        except Exception as error:  # a damaged cache file is recomputed, never trusted
            warnings.warn(f"Ignoring unreadable feature cache {path} ({error}); recomputing.", stacklevel=2)
    chunks = []
    for start in tqdm(range(0, len(items), batch_size), desc=f"{retriever.label}: {desc}", unit="batch"):
        batch = retriever.preprocess([read_rgb(item.path) for item in items[start : start + batch_size]])
        chunks.append(retriever.embed(batch))
    features = torch.cat(chunks)
    ckpt.save_checkpoint(features, path)
    return features


# ------------------------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Match:
    """One retrieved gallery image."""

    rank: int
    index: int  # into the gallery
    distance: float
    pid: int | None
    camid: int | None
    correct: bool | None  # None when the query's identity is unknown


@dataclass
class Ranking:
    """Top-k matches and, when the query's identity is known, its AP and first correct rank."""

    matches: list[Match]
    average_precision: float | None = None
    first_correct_rank: int | None = None
    skipped: int = 0  # same identity, same camera: not counted (torchreid's protocol)
    notes: list[str] = field(default_factory=list)


def rank_gallery(
    distances: np.ndarray, gallery: Sequence[Item], query_pid: int | None = None, query_camid: int | None = None, topk=5
) -> Ranking:
    """Sort the gallery by distance, drop same-identity same-camera items, score the query like torchreid."""
    order = np.argsort(distances, kind="stable")
    g_pids = np.array([-1 if item.pid is None else item.pid for item in gallery])
    g_camids = np.array([-1 if item.camid is None else item.camid for item in gallery])
    labelled = query_pid is not None
    if labelled and query_camid is not None:
        keep = ~((g_pids[order] == query_pid) & (g_camids[order] == query_camid))
    else:
        keep = np.ones(len(order), dtype=bool)
    valid = order[keep]
    matches = [
        Match(
            rank=rank,
            index=int(index),
            distance=float(distances[index]),
            pid=gallery[index].pid,
            camid=gallery[index].camid,
            correct=bool(g_pids[index] == query_pid) if labelled else None,
        )
        for rank, index in enumerate(valid[:topk], start=1)
    ]
    ranking = Ranking(matches=matches, skipped=int((~keep).sum()))
    if labelled:
        hits = g_pids[valid] == query_pid
        if hits.any():
            precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
            ranking.average_precision = float((precision * hits).sum() / hits.sum())
            ranking.first_correct_rank = int(np.argmax(hits)) + 1
        else:
            ranking.notes.append("this identity has no image from another camera in the gallery")
    return ranking


# ------------------------------------------------------------------------------------------- uploads


def decode_upload(
    data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> tuple[Image.Image, list[str]]:
    """Decode uploaded bytes (never a path) into an RGB image; return it with notes on what was converted.

    Raises :class:`DemoInputError` for an empty, oversized, undecodable, huge or tiny upload.
    """
    if not data:
        raise DemoInputError("The upload is empty: choose a JPEG or PNG image of one person.")
    if len(data) > max_bytes:
        raise DemoInputError(
            f"The upload is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB. "
            "Upload a cropped person image (a few hundred pixels high)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DemoInputError(
                    f"The image is {width}x{height} pixels, more than the {max_pixels // 10**6} megapixel limit. "
                    "Crop the person first (re-ID models see about 256x128)."
                )
            image.load()
    except DemoInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DemoInputError(
            f"The image is too large to decode safely ({error}). Crop the person first (re-ID models see about "
            "256x128)."
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DemoInputError(
            f"The upload is not an image that can be decoded ({type(error).__name__}). Upload a JPEG, PNG or "
            "WebP picture of one person."
        ) from error
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DemoInputError(
            f"The image is only {width}x{height} pixels; at least {MIN_IMAGE_SIDE} pixels a side are needed "
            "(a person crop is usually 128x64 or larger)."
        )
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append("an animated image: only its first frame is used")
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        notes.append("a grayscale image: copied to 3 channels, so colour cues are lost and matches are weaker")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        notes.append("an image with transparency: the alpha channel was dropped (transparent areas on gray)")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), notes
    if image.mode in ("I", "I;16", "F"):
        array = np.asarray(image, dtype=np.float32)
        span = max(float(array.max() - array.min()), 1e-6)
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8))
    if image.mode == "CMYK":
        notes.append("a CMYK image: converted to RGB")
    return image.convert("RGB"), notes
