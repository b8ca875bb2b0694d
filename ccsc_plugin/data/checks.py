"""Checks run while torchreid's ``ImageDataManager`` loads the data, before any sampler or loader exists.

torchreid builds datasets, the train sampler and the loaders inside ``ImageDataManager.__init__`` with no
hook in between, so :meth:`DataChecks.hooked` wraps its two factories (``init_image_dataset`` and
``build_train_sampler``) for the duration of that call only:

- each dataset's split is screened for unreadable images (:mod:`.integrity`) and the bad ones dropped;
- the final train list is counted per identity: an identity with fewer than K images is sampled with
  replacement (torchreid's ``RandomIdentitySampler`` does it) and one seen by a single camera has no CCSC
  pair; both are reported. A K no identity can fill, or more identities per batch than the train set
  has, is a :class:`~ccsc_plugin.errors.RecipeError` naming the key;
- the train sampler is wrapped in a :class:`~ccsc_plugin.data.resumable_sampler.ResumableSampler`, so an
  interrupted epoch can be resumed at the batch where it stopped;
- with an :class:`~ccsc_plugin.data.image_cache.ImageCache` (``data.cache_images``), the screen's decoded images
  are kept, resized, split by split while they fit (see :mod:`.image_cache`).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from ccsc_plugin._torchreid import submodule
from ccsc_plugin.data.image_cache import ImageCache
from ccsc_plugin.data.integrity import ImageScreen
from ccsc_plugin.data.resumable_sampler import ResumableSampler
from ccsc_plugin.data.samplers import IDENTITY_SAMPLERS
from ccsc_plugin.errors import RecipeError


@dataclass
class IdentityCounts:
    """What the train split holds, per identity."""

    images: int
    identities: int
    max_images_per_identity: int
    fewer_than_k: int  # identities with fewer than K images: sampled with replacement
    single_camera: int  # identities seen by one camera only: no cross-camera pair for CCSC


def count_identities(train: list[tuple], num_instances: int) -> IdentityCounts:
    """Per-identity image and camera counts of torchreid's ``(img_path, pid, camid, ...)`` train list."""
    images: dict[int, int] = defaultdict(int)
    cameras: dict[int, set] = defaultdict(set)
    for item in train:
        images[item[1]] += 1
        cameras[item[1]].add(item[2])
    return IdentityCounts(
        images=len(train),
        identities=len(images),
        max_images_per_identity=max(images.values(), default=0),
        fewer_than_k=sum(count < num_instances for count in images.values()),
        single_camera=sum(len(cams) == 1 for cams in cameras.values()),
    )


def check_sampler_fits(counts: IdentityCounts, train_sampler: str, batch_size: int, num_instances: int) -> None:
    """Reject a P x K batch the train set cannot fill (a RecipeError naming the key)."""
    if train_sampler not in IDENTITY_SAMPLERS:
        return
    if num_instances > counts.max_images_per_identity:
        raise RecipeError(
            f"sampler.num_instances (K={num_instances}) is larger than every identity's image count in the "
            f"train set (at most {counts.max_images_per_identity}): every identity would be sampled with "
            f"replacement. Set sampler.num_instances to at most {counts.max_images_per_identity}."
        )
    per_batch = batch_size // num_instances
    if per_batch > counts.identities:
        raise RecipeError(
            f"train.batch_size ({batch_size}) / sampler.num_instances ({num_instances}) = {per_batch} identities "
            f"per batch, but the train set has only {counts.identities}. Set train.batch_size to at most "
            f"{counts.identities * num_instances}."
        )


def ccsc_inactive_warning(counts: IdentityCounts | None, ccsc_weight: float, cross_camera: bool) -> str | None:
    """Why the CCSC term can never be non-zero on this train set (cross-camera pairs, one camera each), or None."""
    if counts is None or ccsc_weight <= 0 or not cross_camera or counts.single_camera < counts.identities:
        return None
    return (
        f"no training identity has images from two cameras ({counts.identities} identities, each seen by one "
        f"camera only), so no cross-camera pair can ever form: loss.ccsc (weight {ccsc_weight:g}) contributes "
        "nothing and this run is the softmax baseline. Train on data from several cameras, or set "
        "loss.ccsc.cross_camera=false for the variant without the cross-camera constraint."
    )


class DataChecks:
    """Screens images and checks identities while torchreid loads the data; keeps what it found."""

    def __init__(
        self,
        on_bad_image: str,
        train_sampler: str,
        batch_size: int,
        num_instances: int,
        cache: ImageCache | None = None,
    ) -> None:
        self.screen = ImageScreen(on_bad_image)
        self.cache = cache  # filled by the screen while the data loads (None: no image cache)
        self.train_sampler = train_sampler
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.identities: IdentityCounts | None = None

    def _screen_dataset(self, dataset: Any, name: str, mode: str) -> Any:
        # ``data`` is the list the loader reads (``train`` itself in train mode): filter it in place.
        keep = self.cache.plan(dataset, f"{name} {mode}") if self.cache is not None else None
        desc = f"Checking {'and caching ' if keep else ''}{name} {mode} images"
        dataset.data[:] = self.screen.filter_items(dataset.data, desc, keep)
        return dataset

    def _check_train_set(self, train: list[tuple]) -> None:
        counts = count_identities(train, self.num_instances)
        check_sampler_fits(counts, self.train_sampler, self.batch_size, self.num_instances)
        self.identities = counts
        notes = [f"{counts.single_camera} seen by one camera only (no cross-camera pair for the CCSC loss)"]
        if self.train_sampler in IDENTITY_SAMPLERS:
            notes.insert(
                0,
                f"{counts.fewer_than_k} with fewer than K={self.num_instances} images "
                "(sampled with replacement, as torchreid's RandomIdentitySampler does)",
            )
        print(f"=> Train set: {counts.images} images of {counts.identities} identities; {'; '.join(notes)}")

    @contextlib.contextmanager
    def hooked(self) -> Iterator[DataChecks]:
        """Run the checks inside torchreid's ``ImageDataManager(...)`` construction (see module doc)."""
        module = submodule("data.datamanager")
        original_init, original_sampler = module.init_image_dataset, module.build_train_sampler

        def init_image_dataset(name: str, **kwargs: Any) -> Any:
            return self._screen_dataset(original_init(name, **kwargs), name, kwargs.get("mode", "train"))

        def build_train_sampler(data_source: list, train_sampler: str, **kwargs: Any) -> ResumableSampler:
            self._check_train_set(data_source)
            return ResumableSampler(original_sampler(data_source, train_sampler, **kwargs))

        module.init_image_dataset, module.build_train_sampler = init_image_dataset, build_train_sampler
        try:
            yield self
        finally:
            module.init_image_dataset, module.build_train_sampler = original_init, original_sampler
        if self.screen.skipped:
            print(f"=> Skipped {len(self.screen.skipped)} unreadable image(s); listed in result.json")
        if self.cache is not None:
            self.cache.finish()

    def summary(self) -> dict[str, Any]:
        """The ``result.json`` entries: ``skipped_images`` and ``data_checks``."""
        return {
            "skipped_images": len(self.screen.skipped),
            "data_checks": {
                "skipped_files": dict(self.screen.skipped),
                "num_instances": self.num_instances,
                **(asdict(self.identities) if self.identities else {}),
            },
        }
