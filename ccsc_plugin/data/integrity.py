"""Unreadable images are found before training starts, never inside a DataLoader worker.

torchreid's own ``read_image`` retried a corrupt file forever ("Will redo. Don't worry. Just chill.") and a
missing file kills a worker mid-epoch. :class:`ImageScreen` reads every listed image once, up front, with the
reader training will use (:func:`ccsc_plugin.data.images.read_image`, bound into torchreid's datasets), in
threads and with a progress bar. Bad images (missing, not an image, corrupt, or above
:data:`~ccsc_plugin.data.images.MAX_IMAGE_PIXELS`, refused from the header before decoding) are then dropped
with a warning naming each file and why (``data.on_bad_image: skip``) or stop the run with one error listing
them (``data.on_bad_image: error``). With ``data.cache_images`` the same pass hands each decoded image to the
in-memory cache (:mod:`.image_cache`), so no image is decoded twice before training.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from tqdm import tqdm

from ccsc_plugin.data.images import ImageReadError, read_image

ON_BAD_IMAGE = ("skip", "error")  # every valid data.on_bad_image


class BadImageError(ValueError):
    """Images cannot be decoded and the recipe says ``data.on_bad_image: error`` (or nothing is left)."""


class BadImageWarning(UserWarning):
    """An unreadable image was dropped from a split."""


def unreadable_reason(path: str, keep: Callable[[str, Image.Image], None] | None = None) -> str | None:
    """Why ``path`` cannot be read as training reads it (:func:`~ccsc_plugin.data.images.read_image`), or None.

    A readable image is passed to ``keep`` (the image cache's, see :mod:`.image_cache`), if given.
    """
    try:
        image = read_image(path)
    except ImageReadError as error:  # not an image, corrupt, or too large to decode
        return error.reason
    except FileNotFoundError:
        return "no such file"
    if keep is not None:
        keep(path, image)
    return None


class ImageScreen:
    """Checks each image path once and drops (or rejects) the unreadable ones from torchreid item lists."""

    def __init__(self, on_bad_image: str = "skip", threads: int | None = None) -> None:
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}; got {on_bad_image!r}.")
        self.on_bad_image = on_bad_image
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.reasons: dict[str, str | None] = {}  # every path checked so far -> None (fine) or the reason
        self.skipped: dict[str, str] = {}  # path -> reason, for the run's summary

    def _check(self, paths: list[str], desc: str, keep: Callable[[str, Image.Image], None] | None = None) -> None:
        todo = [path for path in dict.fromkeys(paths) if path not in self.reasons]
        if not todo:
            return
        # PIL warns (DecompressionBombWarning) when it opens an image above ~89 megapixels; the reader refuses
        # those itself, naming the file. One filter here, in the calling thread, covers the pool's threads.
        with warnings.catch_warnings(), ThreadPoolExecutor(self.threads) as pool:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            results = pool.map(functools.partial(unreadable_reason, keep=keep), todo, chunksize=32)
            for path, reason in zip(
                todo, tqdm(results, total=len(todo), desc=desc, unit="img", leave=False), strict=True
            ):
                self.reasons[path] = reason

    def filter_items(
        self, items: list[tuple], desc: str = "Checking images", keep: Callable[[str, Image.Image], None] | None = None
    ) -> list[tuple]:
        """``items`` (torchreid's ``(img_path, pid, camid, ...)``) without the unreadable images.

        ``keep`` receives each image decoded by this check (not those checked before), path and RGB image.
        """
        paths = [item[0] for item in items if isinstance(item[0], str)]
        self._check(paths, desc, keep)
        bad = {path: self.reasons[path] for path in paths if self.reasons[path]}
        if not bad:
            return items
        kept = [item for item in items if item[0] not in bad]
        listing = "\n  ".join(f"{path} ({reason})" for path, reason in list(bad.items())[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        if self.on_bad_image == "error" or not kept:
            fix = (
                "Replace or delete these files, or set data.on_bad_image=skip to train without them."
                if kept
                else "No readable image is left in this split: check data.root."
            )
            raise BadImageError(f"{len(bad)} unreadable image(s) ({desc}):\n  {listing}{more}\n{fix}")
        for path, reason in bad.items():
            if path not in self.skipped:
                warnings.warn(f"Skipping unreadable image {path} ({reason})", BadImageWarning, stacklevel=2)
                self.skipped[path] = reason
        return kept
