"""DDP on the CPU with gloo: two processes stay in sync, torchrun runs the CLI, world size 1 changes nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.config import load_config
from ccsc_plugin.engine import distributed
from ccsc_plugin.evaluation.results import read_result

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "recipes" / "base.yaml"
DDP_OVERRIDES = [
    "train.batch_size=8",  # per process: P=4 x K=2
    "sampler.num_instances=2",
    "sampler.train_sampler=CameraAwareIdentitySampler",
    "loss.gather_features=true",
    "loss.triplet.weight=1.0",
    "loss.center.weight=0.003",
    "train.dist_backend=gloo",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_one_epoch(rank: int, world_size: int, port: int, overrides: list[str], out: str) -> None:
    """One rank: join the group as torchrun would, train one epoch, save parameters and what it saw."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    cfg = load_config(BASE, overrides)
    assert distributed.init_from_env(cfg.train.dist_backend, use_gpu=False)
    torchreid.utils.set_random_seed(cfg.train.seed + rank)
    with distributed.main_process_first():
        datamanager = pipeline.build_datamanager(cfg)
    engine = pipeline.build_engine(cfg, datamanager)
    gathered_sizes = []
    compute_losses = engine.compute_losses

    def recording(logits, features, pids, camids):
        gathered_sizes.append(len(distributed.all_gather_with_grad(features)))
        return compute_losses(logits, features, pids, camids)

    engine.compute_losses = recording
    engine.epoch, engine.max_epoch = 0, 1
    engine.train(print_freq=100)
    torch.save(
        {
            "parameters": {name: p.detach() for name, p in engine.bare_model.named_parameters()},
            "pids": [sorted(set(data["pid"].tolist())) for data in engine.train_loader],
            "gathered_sizes": gathered_sizes,
            "centers": engine.loss_terms["center"].module.centers,
        },
        Path(out) / f"rank{rank}.pt",
    )
    distributed.shutdown()


@pytest.mark.slow
def test_two_gloo_processes_end_with_identical_parameters(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, *DDP_OVERRIDES]
    torchreid.utils.set_random_seed(1)
    initial = pipeline.build_engine(load_config(BASE, overrides)).model.state_dict()
    context = mp.spawn(_train_one_epoch, args=(2, free_port(), overrides, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("two-process training did not finish in 300 s (a collective is stuck)")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    params = [r["parameters"] for r in ranks]  # BN running stats: rank 0's are broadcast at each forward
    assert params[0].keys() == params[1].keys() and "classifier.weight" in params[0]
    for key in params[0]:
        assert torch.equal(params[0][key], params[1][key]), key
    assert not torch.equal(params[0]["classifier.weight"], initial["classifier.weight"])  # it trained
    assert torch.equal(ranks[0]["centers"], ranks[1]["centers"]) and ranks[0]["centers"].abs().sum() > 0
    steps = list(zip(ranks[0]["pids"], ranks[1]["pids"], strict=True))
    assert len(steps) >= 2
    for pids0, pids1 in steps:  # each rank its own 4 identities in every step
        assert len(pids0) == len(pids1) == 4 and not set(pids0) & set(pids1)
    assert ranks[0]["gathered_sizes"] == [16] * len(steps)  # the losses saw both ranks' 8 features


@pytest.mark.slow
def test_torchrun_trains_and_only_rank_zero_logs_and_writes(tiny_overrides, tmp_path):
    save_dir = tmp_path / "ddp-run"
    sets = [f"--set={item}" for item in [*tiny_overrides, *DDP_OVERRIDES, f"data.save_dir={save_dir}"]]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "ccsc_plugin", "train", str(BASE), *sets, "--set=train.max_epoch=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (save_dir / "train.log").read_text()
    assert "DDP: 2 processes, backend gloo" in log
    assert log.count("=> Start training") == 1 and log.count("** Results") == 1
    assert sorted(p.name for p in (save_dir / "checkpoints").iterdir()) == ["epoch-002.pt"]
    result = read_result(save_dir)
    assert result["epochs"] == 2 and 0.0 < result["mAP"] <= 1.0
    assert len(list(save_dir.glob("events.out.tfevents*"))) == 1  # one tensorboard log, rank 0's


def test_world_size_one_ddp_path_matches_the_plain_engine(tiny_overrides, tmp_path):
    """The DDP wrapper, the gathers and the sampler hook leave a one-process step exactly as it was."""
    cfg = load_config(BASE, [*tiny_overrides, "loss.triplet.weight=1.0"])
    torchreid.utils.set_random_seed(1)
    plain = pipeline.build_engine(cfg)
    batches = [data for _, data in zip(range(2), plain.train_loader, strict=False)]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torchreid.utils.set_random_seed(1)
        wrapped = pipeline.build_engine(
            load_config(BASE, [*tiny_overrides, "loss.triplet.weight=1.0", "loss.gather_features=true"])
        )
        assert isinstance(wrapped.model, torch.nn.parallel.DistributedDataParallel)
        sampler = wrapped.train_loader.sampler  # torchreid's, only wrapped to be resumable mid-epoch
        assert type(sampler.sampler).__name__ == "RandomIdentitySampler"
        for engine in (plain, wrapped):
            engine.set_model_mode("train")
        for data in batches:
            assert plain.forward_backward(data) == wrapped.forward_backward(data)
    finally:
        dist.destroy_process_group()
    for (name, a), (_, b) in zip(
        plain.model.state_dict().items(), wrapped.bare_model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
