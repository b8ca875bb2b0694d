"""An optional in-memory cache of decoded, resized crops (``data.cache_images``), so epochs do not decode JPEGs.

Why: on a machine with few cores, decoding every JPEG and resizing it again each epoch competes with the
training threads. Every image is already decoded once, up front, by the image screen (:mod:`.integrity`);
with the cache on, that same pass also keeps each readable image resized to the run's ``data.height`` x
``data.width`` as one row of a compact ``uint8`` array, keyed by its path, and torchreid's datasets then read
through :func:`read_cached` (bound by :func:`install`) instead of the file.

Exact: a row is made by the dataset's own first transform, torchreid's ``Resize((height, width))``, and
torchvision's ``Resize`` returns an image already at its size unchanged, so the transform that follows
(flip, erasing, ... drawn anew for every item and epoch) gets the very pixels it would get from the file:
items with and without the cache are identical under the same random seed, and so are trained weights.

Bounded: before each split is decoded (train first, then each target's query and gallery, as torchreid
loads them), its size is estimated as images x height x width x 3 bytes; a split that does not fit in
what is left of ``data.cache_max_mb`` (MB = 2**20 bytes) is read from disk as without the cache, and one
warning after loading names the sizes, the limit and the fix. Training goes on either way.

Sharing: the cache is filled in the main process before any loader iterates, so forked DataLoader workers
(Linux's default) share its pages copy-on-write; spawned workers would read from disk (still exact). Under
DDP every rank fills its own. One cache per process: building a data manager replaces the previous one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from torchvision.transforms import Resize

from ccsc_plugin._torchreid import submodule
from ccsc_plugin.data.images import read_image

MB = 2**20  # data.cache_max_mb counts these

Keep = Callable[[str, Image.Image], None]  # called by the image screen with each readable path and its image


class ImageCacheWarning(UserWarning):
    """Some images do not fit in ``data.cache_max_mb``: they are read from disk each time."""


@dataclass
class SplitPlan:
    """One split's place in the cache: its label, new images, estimated bytes, and whether it is cached."""

    label: str
    images: int
    bytes: int
    cached: bool
    why: str = ""


def leading_resize(transform: Any, size: tuple[int, int]) -> Resize | None:
    """The transform's first step if it is a ``Resize`` to ``size`` (torchreid's train and test transforms)."""
    steps = getattr(transform, "transforms", None)
    first = steps[0] if steps else None
    if isinstance(first, Resize) and isinstance(first.size, (list, tuple)) and tuple(first.size) == size:
        return first
    return None


class ImageCache:
    """Resized crops of ``height`` x ``width`` in memory, at most ``max_mb`` MB, split by split."""

    def __init__(self, height: int, width: int, max_mb: float) -> None:
        self.size = (int(height), int(width))
        self.limit = int(max_mb * MB)
        self.max_mb = max_mb
        self.used = 0  # bytes reserved by the cached splits
        self.plans: list[SplitPlan] = []
        self._rows: dict[str, np.ndarray] = {}  # path -> its row (a view of one split's block)
        self._blocks: list[np.ndarray] = []

    @property
    def image_bytes(self) -> int:
        return self.size[0] * self.size[1] * 3

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, path: str) -> np.ndarray | None:
        """The cached ``height x width x 3`` pixels of ``path``, or None."""
        return self._rows.get(path)

    def plan(self, dataset: Any, label: str) -> Keep | None:
        """Reserve room for ``dataset``'s images if they fit; return what keeps each one (None: not cached).

        Called before the split is screened; ``dataset.data`` lists torchreid's ``(path, pid, camid, ...)``.
        """
        paths = [p for p in dict.fromkeys(item[0] for item in dataset.data) if isinstance(p, str)]
        paths = [path for path in paths if path not in self._rows]
        need = len(paths) * self.image_bytes
        resize = leading_resize(getattr(dataset, "transform", None), self.size)
        if resize is None:
            why = f"its transform does not start with Resize({self.size[0]}x{self.size[1]})"
            self.plans.append(SplitPlan(label, len(paths), need, False, why))
            return None
        if self.used + need > self.limit:
            self.plans.append(SplitPlan(label, len(paths), need, False, "does not fit"))
            return None
        self.used += need
        self.plans.append(SplitPlan(label, len(paths), need, True))
        block = np.empty((len(paths), *self.size, 3), np.uint8)  # pages are committed as rows are filled
        self._blocks.append(block)
        slots = {path: index for index, path in enumerate(paths)}

        def keep(path: str, image: Image.Image) -> None:
            # In the screen's threads: each path has its own row, and one dict store is atomic.
            if (slot := slots.get(path)) is not None:
                row = block[slot]
                row[...] = np.asarray(resize(image))
                self._rows[path] = row

        return keep

    def finish(self) -> str | None:
        """After loading: rows made read-only, one line printed; the warning text when a split did not fit."""
        for block in self._blocks:
            block.flags.writeable = False
        h, w = self.size
        left_out = [plan for plan in self.plans if not plan.cached]
        rest = f"; {sum(plan.images for plan in left_out):,} are read from disk: see the warning" if left_out else ""
        print(
            f"=> Cached {len(self):,} images at {h}x{w} in memory ({self.used / MB:,.1f} MB of "
            f"data.cache_max_mb={self.max_mb:g}), read from there each epoch (data.cache_images){rest}"
        )
        if not left_out:
            return None
        message = self.not_fitting_message(left_out)
        warnings.warn(message, ImageCacheWarning, stacklevel=2)
        return message

    def not_fitting_message(self, left_out: list[SplitPlan]) -> str:
        """One line: what the crops need, the limit, what is read from disk, and the fix."""
        h, w = self.size
        total = sum(plan.bytes for plan in self.plans)
        images = sum(plan.images for plan in self.plans)
        splits = ", ".join(f"{plan.label} {plan.images:,}" for plan in self.plans)
        cached = ", ".join(plan.label for plan in self.plans if plan.cached) or "nothing"
        disk = ", ".join(
            plan.label if plan.why == "does not fit" else f"{plan.label} ({plan.why})" for plan in left_out
        )
        return (
            f"data.cache_images: the decoded crops need {total / MB:,.1f} MB ({images:,} images x {h}x{w}x3 bytes: "
            f"{splits}), more than data.cache_max_mb={self.max_mb:g}; cached: {cached}; read from disk each time as "
            f"without the cache: {disk}. To cache them all: --set data.cache_max_mb={math.ceil(total / MB)} "
            "(or --set data.cache_images=false to turn the cache off)."
        )


_active: ImageCache | None = None


def read_cached(path: str) -> Image.Image:
    """torchreid's ``read_image`` while a cache is installed: the cached crop, else the file (:func:`read_image`)."""
    cache = _active
    row = cache.get(path) if cache is not None else None
    return read_image(path) if row is None else Image.fromarray(row)  # a copy: the cache is never changed


def install(cache: ImageCache | None) -> None:
    """Make torchreid's datasets read through ``cache`` (None: straight from the files, the plain reader)."""
    global _active
    _active = cache
    submodule("data.datasets.dataset").read_image = read_image if cache is None else read_cached


def active() -> ImageCache | None:
    """The installed cache, if any."""
    return _active
