"""The plugin's P x K identity sampler: camera-aware chunks and identity sharding across DDP ranks."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from ccsc_plugin import pipeline
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data.samplers import IdentitySampler, build_train_sampler

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"


def make_source() -> list[tuple[str, int, int]]:
    """12 identities: balanced 3-camera ones, one dominant camera + 1 stray image, single-camera, tiny."""
    cams_per_pid = {
        **{pid: [0, 0, 1, 1, 2, 2, 2] for pid in range(6)},
        6: [0] * 9 + [1],
        7: [2] * 7 + [0],
        8: [1] * 6,  # one camera only
        9: [0] * 5,  # one camera only
        10: [0, 1],  # fewer than K images
        11: [3, 3, 3, 1],
    }
    return [(f"{pid}_{i}.jpg", pid, cam) for pid, cams in cams_per_pid.items() for i, cam in enumerate(cams)]


def batches(sampler: IdentitySampler) -> list[list[int]]:
    indices = list(sampler)
    return [indices[i : i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_camera_aware_batches_have_cross_camera_pairs_for_every_multi_camera_identity(epoch):
    source = make_source()
    sampler = IdentitySampler(source, batch_size=8, num_instances=4, camera_aware=True, seed=5)
    sampler.set_epoch(epoch)
    seen_pids = set()
    for batch in batches(sampler):
        assert len(batch) == 8
        cams_by_pid = defaultdict(list)
        for index in batch:
            cams_by_pid[source[index][1]].append(source[index][2])
        assert len(cams_by_pid) == 2 and all(len(cams) == 4 for cams in cams_by_pid.values())  # P=2, K=4
        for pid, cams in cams_by_pid.items():
            has_two_cameras = len({cam for _, p, cam in source if p == pid}) >= 2
            assert len(set(cams)) >= 2 or not has_two_cameras, (pid, cams)
        seen_pids |= set(cams_by_pid)
    assert {8, 9} <= seen_pids  # single-camera identities are still sampled


def test_random_order_alone_misses_cross_camera_pairs_on_the_same_data():
    """The reason for the option: without it, identities with a dominant camera give one-camera chunks."""
    source = make_source()
    single_camera_chunks = 0
    for epoch in range(5):
        sampler = IdentitySampler(source, batch_size=8, num_instances=4, camera_aware=False, seed=5)
        sampler.set_epoch(epoch)
        for batch in batches(sampler):
            for start in range(0, 8, 4):
                chunk = batch[start : start + 4]
                if source[chunk[0]][1] in (6, 7) and len({source[i][2] for i in chunk}) == 1:
                    single_camera_chunks += 1
    assert single_camera_chunks > 0


@pytest.mark.parametrize("camera_aware", [False, True])
def test_ranks_share_identity_complete_batches_that_together_are_the_single_process_batches(camera_aware):
    source = make_source()
    world = [
        IdentitySampler(source, 8, 4, camera_aware=camera_aware, rank=rank, world_size=2, seed=3) for rank in (0, 1)
    ]
    single = IdentitySampler(source, 16, 4, camera_aware=camera_aware, seed=3)
    for epoch in (0, 1):
        for sampler in (*world, single):
            sampler.set_epoch(epoch)
        per_rank = [batches(sampler) for sampler in world]
        assert len(per_rank[0]) == len(per_rank[1]) == len(batches(single)) > 0  # same number of steps
        for batch0, batch1, whole in zip(*per_rank, batches(single), strict=True):
            pids0, pids1 = ({source[i][1] for i in batch} for batch in (batch0, batch1))
            assert len(pids0) == len(pids1) == 2 and not pids0 & pids1  # each rank owns P whole identities
            assert batch0 + batch1 == whole
    epoch_one = batches(world[0])
    world[0].set_epoch(0)
    assert batches(world[0]) != epoch_one  # set_epoch reshuffles


def test_too_few_identities_for_the_world_size_is_a_clear_error():
    with pytest.raises(ValueError, match="Lower train.batch_size or the number of processes"):
        IdentitySampler(make_source(), batch_size=16, num_instances=4, rank=0, world_size=4)


def test_build_train_sampler_refuses_samplers_that_cannot_shard(tiny_overrides):
    cfg = load_config(BASE, [*tiny_overrides, "sampler.train_sampler=RandomSampler"])
    with pytest.raises(ValueError, match="cannot be sharded"):
        build_train_sampler(cfg, make_source(), rank=0, world_size=2)


def test_unknown_sampler_name_is_a_recipe_error(tiny_overrides):
    with pytest.raises(RecipeError, match="CameraAwareIdentitySampler"):
        load_config(BASE, [*tiny_overrides, "sampler.train_sampler=CameraAware"])


def test_recipe_option_swaps_the_train_loader_of_the_data_manager(tiny_overrides):
    cfg = load_config(BASE, [*tiny_overrides, "sampler.train_sampler=CameraAwareIdentitySampler"])
    datamanager = pipeline.build_datamanager(cfg)
    loader = datamanager.train_loader
    sampler = loader.sampler.sampler  # the plugin's, wrapped to be resumable mid-epoch
    assert isinstance(sampler, IdentitySampler) and sampler.camera_aware
    for data in loader:
        pids, camids = data["pid"].tolist(), data["camid"].tolist()
        assert len(pids) == 16 and len(set(pids)) == 4
        for pid in set(pids):
            assert len({cam for p, cam in zip(pids, camids, strict=True) if p == pid}) >= 2


def test_plain_recipe_keeps_torchreids_loader(tiny_cfg):
    datamanager = pipeline.build_datamanager(tiny_cfg)
    assert type(datamanager.train_loader.sampler.sampler).__name__ == "RandomIdentitySampler"
