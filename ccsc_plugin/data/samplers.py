"""P x K identity samplers the CCSC loss needs: camera-aware, and sharded across DDP ranks.

torchreid's ``RandomIdentitySampler`` draws K images per identity by pid only, so a batch may hold no
cross-camera positive pair (the only pairs the CCSC loss uses), and it knows nothing of ranks.
``IdentitySampler`` keeps its P x K scheme and adds two things:

* ``camera_aware=True``: each K-image chunk of an identity seen by two or more cameras holds at least
  two cameras (images are dealt round-robin over the identity's cameras), so every batch has
  cross-camera pairs whenever the data have them. Single-camera identities are still sampled.
* ``rank`` / ``world_size``: every rank draws the same global sequence of batches of P x world_size
  identities from a shared seed (``set_epoch`` reshuffles, like ``DistributedSampler``) and keeps its
  own P identities of each, so each rank's batch is identity-complete and all ranks take the same
  number of steps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler
from yacs.config import CfgNode as CN

from ccsc_plugin._torchreid import submodule

CAMERA_AWARE = "CameraAwareIdentitySampler"
PLUGIN_SAMPLERS = (CAMERA_AWARE,)
TORCHREID_IDENTITY_SAMPLER = "RandomIdentitySampler"
TORCHREID_SAMPLERS = tuple(submodule("data.sampler").AVAI_SAMPLERS)  # what torchreid's data manager builds
SAMPLERS = (*TORCHREID_SAMPLERS, *PLUGIN_SAMPLERS)  # every valid sampler.train_sampler
# The samplers that draw K images per identity (sampler.num_instances matters), and the ones that can shard.
IDENTITY_SAMPLERS = (TORCHREID_IDENTITY_SAMPLER, CAMERA_AWARE)


class IdentitySampler(Sampler[int]):
    """P x K identity sampler (``batch_size`` = P x K per rank), optionally camera-aware and sharded.

    Args:
        data_source: torchreid's ``train`` list of ``(img_path, pid, camid, ...)``.
        batch_size: images per batch on this rank (P x K).
        num_instances: K, images per identity in a batch.
        camera_aware: deal each identity's images round-robin over its cameras (>= 2 cameras per chunk).
        rank, world_size: this process's place in the DDP group (0 and 1 without DDP).
        seed: shared by all ranks; the order of epoch ``e`` depends only on ``(seed, e)``.
    """

    def __init__(
        self,
        data_source: Sequence[tuple],
        batch_size: int,
        num_instances: int,
        camera_aware: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of num_instances ({num_instances}): "
                "a batch is P identities x K images."
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes.")
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.pids_per_batch = batch_size // num_instances
        self.camera_aware = camera_aware
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0
        self.camids = [int(item[2]) for item in data_source]
        self.index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, item in enumerate(data_source):
            self.index_by_pid[int(item[1])].append(index)
        self.pids = sorted(self.index_by_pid)
        needed = self.pids_per_batch * world_size
        if len(self.pids) < needed:
            raise ValueError(
                f"The training set has {len(self.pids)} identities but a step needs P x world_size = "
                f"{self.pids_per_batch} x {world_size} = {needed}. Lower train.batch_size or the number of processes."
            )
        self._cache: tuple[int, list[list[list[int]]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``; call it on every rank before each epoch (the engine does)."""
        self.epoch = int(epoch)

    def _ordered_images(self, rng: np.random.Generator, indices: list[int]) -> list[int]:
        """The identity's images shuffled; camera-aware: dealt round-robin over its shuffled cameras."""
        if not self.camera_aware:
            return [indices[i] for i in rng.permutation(len(indices))]
        by_cam: dict[int, list[int]] = defaultdict(list)
        for index in indices:
            by_cam[self.camids[index]].append(index)
        groups = [[group[i] for i in rng.permutation(len(group))] for group in by_cam.values()]
        groups = [groups[i] for i in rng.permutation(len(groups))]
        return [group[i] for i in range(max(map(len, groups))) for group in groups if i < len(group)]

    def _chunks(self, rng: np.random.Generator, pid: int) -> list[list[int]]:
        """The identity's K-image chunks for one epoch (identities with < K images repeat images)."""
        k = self.num_instances
        indices = self.index_by_pid[pid]
        order = self._ordered_images(rng, indices)
        if len(order) < k:
            if self.camera_aware:  # cycling the round-robin order keeps the cameras mixed
                order = [order[i % len(order)] for i in range(k)]
            else:
                order = order + [indices[i] for i in rng.integers(0, len(indices), size=k - len(order))]
        chunks = [order[start : start + k] for start in range(0, len(order) - k + 1, k)]
        cams = {self.camids[index] for index in indices}
        if self.camera_aware and k >= 2 and len(cams) >= 2:
            for chunk in chunks:
                chunk_cams = {self.camids[index] for index in chunk}
                if len(chunk_cams) == 1:  # a dominant camera filled the chunk: swap in another camera's image
                    others = [index for index in indices if self.camids[index] not in chunk_cams]
                    chunk[-1] = others[int(rng.integers(len(others)))]
        return chunks

    def global_batches(self) -> list[list[list[int]]]:
        """This epoch's batches over all ranks: each a list of P x world_size identity chunks."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = {pid: self._chunks(rng, pid) for pid in self.pids}
        available = [pid for pid in self.pids if chunks[pid]]
        group = self.pids_per_batch * self.world_size
        batches = []
        while len(available) >= group:
            selected = [available[i] for i in rng.choice(len(available), size=group, replace=False)]
            batches.append([chunks[pid].pop() for pid in selected])
            available = [pid for pid in available if chunks[pid]]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[int]:
        start, stop = self.rank * self.pids_per_batch, (self.rank + 1) * self.pids_per_batch
        for batch in self.global_batches():
            for chunk in batch[start:stop]:
                yield from chunk

    def __len__(self) -> int:
        return len(self.global_batches()) * self.batch_size


def uses_plugin_sampler(cfg: CN, world_size: int = 1) -> bool:
    """Whether the train loader must be rebuilt with the plugin's sampler (named in the recipe, or DDP)."""
    return cfg.sampler.train_sampler in PLUGIN_SAMPLERS or world_size > 1


def build_train_sampler(cfg: CN, data_source: Sequence[tuple], rank: int = 0, world_size: int = 1) -> IdentitySampler:
    """The plugin's identity sampler for ``cfg`` on this rank.

    ``sampler.train_sampler: CameraAwareIdentitySampler`` gives the camera-aware sampler; under DDP
    ``RandomIdentitySampler`` becomes its sharded equivalent. Other torchreid samplers cannot shard.
    """
    name = cfg.sampler.train_sampler
    if name not in IDENTITY_SAMPLERS:
        raise ValueError(
            f"sampler.train_sampler={name!r} cannot be sharded across {world_size} processes: use "
            f"{TORCHREID_IDENTITY_SAMPLER} or {CAMERA_AWARE} for distributed training."
        )
    return IdentitySampler(
        data_source,
        batch_size=cfg.train.batch_size,
        num_instances=cfg.sampler.num_instances,
        camera_aware=name == CAMERA_AWARE,
        rank=rank,
        world_size=world_size,
        seed=cfg.train.seed,
    )
