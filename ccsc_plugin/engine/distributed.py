"""DistributedDataParallel helpers: process group from torchrun's environment, DDP wrapping, gathers.

``torchrun --nproc_per_node=N -m ccsc_plugin train RECIPE`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` (plus the rendezvous address) in each process; ``init_from_env`` turns them into a
process group (nccl on GPUs, gloo on the CPU). Without them everything here is a no-op and a run is
the plain single-process one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as _all_gather_autograd
from torch.nn.parallel import DistributedDataParallel

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
DIST_BACKENDS = ("auto", "gloo", "nccl")  # every valid train.dist_backend


def launched_by_torchrun() -> bool:
    """True when this process was started by ``torchrun`` (or sets its variables by hand)."""
    return all(name in os.environ for name in TORCHRUN_VARS)


def is_enabled() -> bool:
    """True once a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_enabled() else 0


def world_size() -> int:
    return dist.get_world_size() if is_enabled() else 1


def is_main_process() -> bool:
    """Rank 0 (or no DDP): the process that logs, evaluates and writes files."""
    return rank() == 0


def pick_backend(backend: str, use_gpu: bool) -> str:
    """``auto`` -> nccl when the run uses CUDA, gloo otherwise."""
    if backend not in DIST_BACKENDS:
        raise ValueError(f"train.dist_backend must be one of {', '.join(DIST_BACKENDS)}; got {backend!r}.")
    if backend == "auto":
        return "nccl" if use_gpu else "gloo"
    return backend


def init_from_env(backend: str = "auto", use_gpu: bool = False) -> bool:
    """Join the process group torchrun describes; return whether DDP is on.

    On GPUs each process uses ``cuda:LOCAL_RANK``. Called twice, the second call changes nothing.
    """
    if is_enabled():
        return True
    if not launched_by_torchrun():
        return False
    backend = pick_backend(backend, use_gpu)
    if use_gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend)
    return True


def shutdown() -> None:
    """Leave the process group (end of a run)."""
    if is_enabled():
        dist.destroy_process_group()


def barrier() -> None:
    if is_enabled():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generating a data set on disk), then the other ranks."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` on this rank's device (rank 0's weights are broadcast)."""
    if device.type != "cuda":
        return DistributedDataParallel(model)
    return DistributedDataParallel(
        model, device_ids=[torch.cuda.current_device() if device.index is None else device.index]
    )


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank (rank order) keeping the gradient to each rank's slice.

    Each rank then computes the loss over the whole global batch; with DDP's gradient averaging the
    step equals one on the gathered batch.
    """
    if world_size() == 1:
        return tensor
    return torch.cat(_all_gather_autograd(tensor), dim=0)


@torch.no_grad()
def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank (rank order), without gradient (labels, camera ids)."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
