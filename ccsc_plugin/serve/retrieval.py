"""Retrieval with a trained checkpoint: gallery features cached on disk, top-k with torchreid's protocol.

:class:`Retriever` wraps a trained model (:func:`ccsc_plugin.pipeline.trained.load_trained`: its input size,
normalisation and metric come from the run's recipe), :func:`cached_features` computes features once and keeps
them keyed by checkpoint and images, and :func:`rank_gallery` returns the top-k (same identity *and* same
camera as the query is skipped), the query's AP and the rank of its first correct match.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin.evaluation.metrics import distance_matrix
from ccsc_plugin.evaluation.ranking import valid_order
from ccsc_plugin.models.flip import flip_averaged
from ccsc_plugin.pipeline.trained import load_trained
from ccsc_plugin.serve.gallery import Item, read_rgb

# --------------------------------------------------------------------------------------------- model


class Retriever:
    """A trained model rebuilt from a checkpoint, with its recipe's input size, normalisation and metric.

    ``flip`` (None: the stored recipe's ``test.flip``) averages each image's features with its mirror's.
    """

    def __init__(self, weights: str | Path, flip: bool | None = None) -> None:
        trained = load_trained(weights)
        self.model, self.cfg, self.path = trained.model, trained.cfg, trained.path
        path = trained.path
        # The run folder ("runs/quickstart/ccsc"), or the file without its suffix for a checkpoint outside one;
        # its name ("ccsc") labels the model.
        self.folder = path.parent.parent if path.parent.name == ckpt.CHECKPOINT_DIR else path.with_suffix("")
        self.label = self.folder.name
        self.size = trained.size
        self.metric = str(self.cfg.test.dist_metric)
        self.normalize_feature = bool(self.cfg.test.normalize_feature)
        self.flip = bool(self.cfg.test.flip) if flip is None else flip
        self.transform = trained.transform
        identity = f"{ckpt.file_sha256(path)}|{self.size}|{self.transform}|flip={self.flip}"
        self.fingerprint = hashlib.sha1(identity.encode()).hexdigest()

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> a normalised batch at the model's input size."""
        return torch.stack([self.transform(image) for image in images])

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Test features (the model's eval-mode output, flip-averaged if ``flip``), L2-normalised if the recipe says."""
        features = flip_averaged(self.model, batch, self.flip)
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
    """Sort the gallery by distance, drop same-identity same-camera items, score the query like torchreid.

    The order is :func:`~ccsc_plugin.evaluation.ranking.valid_order`'s: the one the metrics score.
    """
    g_pids = np.array([-1 if item.pid is None else item.pid for item in gallery])
    g_camids = np.array([-1 if item.camid is None else item.camid for item in gallery])
    labelled = query_pid is not None
    valid = valid_order(distances, g_pids, g_camids, query_pid, query_camid)
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
    ranking = Ranking(matches=matches, skipped=len(distances) - len(valid))
    if labelled:
        hits = g_pids[valid] == query_pid
        if hits.any():
            precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
            ranking.average_precision = float((precision * hits).sum() / hits.sum())
            ranking.first_correct_rank = int(np.argmax(hits)) + 1
        else:
            ranking.notes.append("this identity has no image from another camera in the gallery")
    return ranking
