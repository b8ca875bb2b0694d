"""What the Gradio demo shows, computed without any UI: loaded models, the query set, and per-query answers.

:class:`DemoBackend` loads each checkpoint into a slot (a failed load becomes a message in its slot, so
the demo still serves the others), reads the query/gallery set, computes (or reads from the disk cache)
every slot's query and gallery features, and answers a query - picked by index from the query set or
uploaded as bytes - with one :class:`ModelAnswer` per slot: the top-5 with green/red borders (the
paper's Fig. 3; drawn by :mod:`ccsc_plugin.evaluation.strips`, as the rank lists of ``test --visrank`` are),
and a response map for the query and each match (Grad-CAM or the Fig. 4 intensity).
:meth:`DemoBackend.example_answer` is the answer the page opens with, before any click.
:class:`UploadFiles` reads an uploaded file's bytes once and deletes the file, so uploads never pile up.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ccsc_plugin.checkpoint import CheckpointError
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.evaluation.strips import COLOURS, QUERY_COLOUR, bordered, display_tile
from ccsc_plugin.serve.gallery import DemoInputError, Item, QueryGallery, load_query_gallery, read_rgb
from ccsc_plugin.serve.retrieval import Ranking, Retriever, cached_features, default_cache_dir, rank_gallery
from ccsc_plugin.serve.uploads import MAX_UPLOAD_BYTES, decode_upload
from ccsc_plugin.serve.visualisation import MAP_KINDS, gradcam_maps, intensity_maps, overlay
from ccsc_plugin.shipped import recipe

DEFAULT_WEIGHTS = ("runs/quickstart/baseline", "runs/quickstart/ccsc")


@dataclass
class ModelSlot:
    """One row of the demo: a checkpoint, and either its retriever and features or why it could not load."""

    weights: str
    label: str
    retriever: Retriever | None = None
    error: str | None = None
    query_features: torch.Tensor | None = None
    gallery_features: torch.Tensor | None = None


@dataclass
class ModelAnswer:
    """One slot's answer to a query: captioned tiles for the top-k, and their maps followed by the query's."""

    label: str
    summary: str
    results: list[tuple[np.ndarray, str]] = field(default_factory=list)
    maps: list[tuple[np.ndarray, str]] = field(default_factory=list)
    ranking: Ranking | None = None


@dataclass
class Query:
    """A query to answer: its image, and its identity and camera when it comes from the query set."""

    image: Image.Image
    pid: int | None = None
    camid: int | None = None
    index: int | None = None  # into the query set (its cached feature); None for an upload
    notes: list[str] = field(default_factory=list)


def checkpoint_message(weights: str, error: Exception) -> str:
    """What went wrong with a checkpoint, and the command that makes a usable one."""
    fix = "Run `make quickstart` (or `ccsc-reid quickstart`) to train the default baseline and CCSC models"
    if weights not in DEFAULT_WEIGHTS:
        fix = "Train one with `ccsc-reid train RECIPE`, or run `make quickstart` for the default models"
    problem = f"No checkpoint at `{weights}`." if isinstance(error, FileNotFoundError) else f"{error}"
    return f"{problem} {fix}, or pass `--weights RUN_DIR`."


def distinct_labels(folders: Sequence[Path]) -> list[str]:
    """Row names: each run folder's name, with as many parent folders as it takes to tell the rows apart
    (``softmax/seed-1`` beside ``softmax_ccsc/seed-1``, where both folders are called ``seed-1``)."""
    parts = [folder.parts for folder in folders]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(names[-d:]) for names, d in zip(parts, depth, strict=True)]
        clashes = [i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])]
        if not clashes:
            return labels
        for i in clashes:
            depth[i] += 1


class UploadFiles:
    """Uploaded files, read once and deleted at once: ``stored`` is the set of paths the web server has written
    uploads to (Gradio's ``Blocks.upload_file_set``, only read here), and only those are ever read or deleted.

    The server names an upload by its content's hash and its file name, so identical uploads in flight together
    share one file: the first read deletes it, and the bytes of the last ``remember`` uploads stay in memory for
    the others (one path always holds the same bytes).
    """

    def __init__(self, stored: set[str], max_bytes: int = MAX_UPLOAD_BYTES, remember: int = 8) -> None:
        self.stored, self.max_bytes, self.remember = stored, max_bytes, remember
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, path: str) -> bytes:
        """The upload's bytes (at most ``max_bytes + 1``: more is refused when decoded); its file is gone after."""
        with self._lock:
            if path in self._recent:
                self._recent.move_to_end(path)
                data = self._recent[path]
            elif path in self.stored:
                try:
                    with open(path, "rb") as handle:
                        data = handle.read(self.max_bytes + 1)
                except FileNotFoundError:
                    raise DemoInputError("The upload is no longer on the server: upload the image again.") from None
                self._recent[path] = data
                while len(self._recent) > self.remember:
                    self._recent.popitem(last=False)
            else:
                raise DemoInputError("That file was not uploaded to this demo: upload an image file.")
            _delete_upload(Path(path))  # also when an identical upload wrote it again after the first read
        return data


def _delete_upload(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # the upload's own folder (named by its hash), once empty
    except OSError:
        pass


class DemoBackend:
    """Slots (checkpoints) over one query/gallery set, with features cached on disk.

    ``flip`` (None: each checkpoint's stored ``test.flip``) averages every feature with its mirror image's.
    """

    def __init__(
        self,
        weights: Sequence[str] = DEFAULT_WEIGHTS,
        dataset: str | None = None,
        data_root: str | Path = "reid-data",
        cache_dir: str | Path | None = None,
        topk: int = 5,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        example_query: int = 0,
        flip: bool | None = None,
    ) -> None:
        self.topk = topk
        self.max_upload_bytes = max_upload_bytes
        self.slots = [self._load_slot(str(w), flip) for w in weights]
        folders = [Path(slot.weights) if slot.retriever is None else slot.retriever.folder for slot in self.slots]
        for slot, label in zip(self.slots, distinct_labels(folders), strict=True):
            slot.label = label
        loaded = [slot.retriever for slot in self.slots if slot.retriever is not None]
        cfg = loaded[0].cfg if loaded else load_config(recipe("quickstart.yaml"))
        self.data: QueryGallery = load_query_gallery(dataset, data_root, cfg)
        if not 0 <= example_query < len(self.data.query):
            raise DemoInputError(
                f"--example-query {example_query} does not exist: the query set has {len(self.data.query)} images; "
                f"pick an index from 0 to {len(self.data.query) - 1}."
            )
        self.example_query = example_query
        cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        for slot in self.slots:
            if slot.retriever is not None:
                slot.query_features = cached_features(slot.retriever, self.data.query, cache_dir, desc="query set")
                slot.gallery_features = cached_features(slot.retriever, self.data.gallery, cache_dir, desc="gallery")

    @staticmethod
    def _load_slot(weights: str, flip: bool | None = None) -> ModelSlot:
        try:
            retriever = Retriever(weights, flip)
        except (FileNotFoundError, CheckpointError, RecipeError) as error:  # RecipeError: its stored config
            return ModelSlot(weights, Path(weights).name or weights, error=checkpoint_message(weights, error))
        return ModelSlot(weights, retriever.label, retriever=retriever)

    def warm_up(self) -> None:
        """Answer the example query with each map kind, so the first user's query is as fast as the next."""
        for kind in MAP_KINDS:
            self.example_answer(kind)

    def example_answer(self, map_kind: str = "gradcam") -> tuple[Query, list[ModelAnswer]]:
        """The example query (``example_query`` of the query set) and every slot's answer: what the page
        shows when it opens, so a visitor sees the models at work before any click."""
        query = self.query_from_set(self.example_query)
        return query, self.answer(query, map_kind)

    @property
    def errors(self) -> list[str]:
        return [slot.error for slot in self.slots if slot.error]

    def query_thumbnails(self, limit: int = 200) -> list[tuple[np.ndarray, str]]:
        """Small captioned images of the first ``limit`` queries, for the picker."""
        return [
            (np.asarray(read_rgb(item.path).resize((48, 96))), f"#{index} · id {item.pid} · cam {item.camid}")
            for index, item in enumerate(self.data.query[:limit])
        ]

    def query_from_set(self, index: int) -> Query:
        if not 0 <= index < len(self.data.query):
            raise DemoInputError(f"Query {index} does not exist: the query set has {len(self.data.query)} images.")
        item: Item = self.data.query[index]
        return Query(read_rgb(item.path), item.pid, item.camid, index=index)

    def query_from_upload(self, data: bytes | None) -> Query:
        """An uploaded image (bytes only: no path from the client is ever opened)."""
        if data is None:
            raise DemoInputError("Nothing was uploaded: choose an image file.")
        image, notes = decode_upload(data, max_bytes=self.max_upload_bytes)
        return Query(image, notes=notes)

    def answer(self, query: Query, map_kind: str = "gradcam") -> list[ModelAnswer]:
        """Every slot's top-k and response maps for ``query``."""
        if map_kind not in MAP_KINDS:
            raise DemoInputError(f"Unknown map kind {map_kind!r}; choose one of {', '.join(MAP_KINDS)}.")
        return [self._answer_slot(slot, query, map_kind) for slot in self.slots]

    def _answer_slot(self, slot: ModelSlot, query: Query, map_kind: str) -> ModelAnswer:
        if slot.retriever is None:
            return ModelAnswer(slot.label, f"⚠️ {slot.error}")
        retriever = slot.retriever
        if query.index is not None:
            feature = slot.query_features[query.index]
        else:
            feature = retriever.embed(retriever.preprocess([query.image]))[0]
        distances = retriever.distances(feature[None], slot.gallery_features)[0]
        ranking = rank_gallery(distances, self.data.gallery, query.pid, query.camid, self.topk)
        matched = [read_rgb(self.data.gallery[m.index].path) for m in ranking.matches]
        batch = retriever.preprocess([query.image, *matched])
        if map_kind == "gradcam":
            # The query's map explains its similarity to the direction of its matches; each match's map
            # explains its similarity to the query.
            matches = F.normalize(slot.gallery_features[[m.index for m in ranking.matches]], dim=1)
            references = torch.cat([matches.mean(0, keepdim=True), feature.expand(len(matched), -1)])
            maps = gradcam_maps(retriever.model, batch, references)
        else:
            maps = intensity_maps(retriever.model, batch)
        tiles = [display_tile(image) for image in (query.image, *matched)]
        results, map_tiles = [], []
        for match, tile, heatmap in zip(ranking.matches, tiles[1:], maps[1:], strict=True):
            verdict = {True: " ✓", False: " ✗", None: ""}[match.correct]  # right / wrong identity
            caption = f"#{match.rank} d={match.distance:.3f} cam {match.camid}{verdict}"
            results.append((bordered(tile, COLOURS[match.correct]), caption))
            map_tiles.append((bordered(overlay(tile, heatmap), COLOURS[match.correct]), f"#{match.rank}"))
        map_tiles.append((bordered(overlay(tiles[0], maps[0]), QUERY_COLOUR), "query"))  # last: under no match
        return ModelAnswer(slot.label, summarise(slot, ranking), results, map_tiles, ranking)


def summarise(slot: ModelSlot, ranking: Ranking) -> str:
    """One line of Markdown: the query's AP and first correct rank (or why there are none)."""
    parts = [f"**{slot.label}** (`{slot.retriever.path}`)"]
    if ranking.average_precision is not None:
        parts.append(f"AP **{ranking.average_precision:.3f}**")
        parts.append(f"first correct match at rank **{ranking.first_correct_rank}**")
    elif ranking.matches and ranking.matches[0].correct is None:
        parts.append("identity unknown (uploaded image): no AP")
    parts += ranking.notes
    if ranking.skipped:
        parts.append(f"{ranking.skipped} gallery image(s) of this identity from the query's camera skipped")
    return " · ".join(parts)
