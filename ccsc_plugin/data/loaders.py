"""The train loader with the recipe's DataLoader speed switches, and workers that leave signals to the main process.

torchreid's ``ImageDataManager`` hard-codes ``pin_memory=use_gpu`` and no ``persistent_workers``; this
rebuilds its train loader around the same dataset, sampler, batch size and ``drop_last`` with
``data.workers``, ``data.pin_memory`` and ``data.persistent_workers`` from the recipe.

Every loader's workers ignore SIGINT and SIGTERM (:func:`leave_signals_to_main_process`): a terminal's Ctrl-C,
``timeout``, SLURM's ``scancel`` and systemd signal the whole process group, and a worker killed by it makes the
main process fail in the middle of a step, before the checkpoint it promised (torch's own worker handler dies on
a SIGTERM that its parent did not send). The main process decides; workers end when it shuts them down.
"""

from __future__ import annotations

import signal

import torch
from torch.utils.data import DataLoader, Sampler
from yacs.config import CfgNode as CN


def loader_options(cfg: CN, on_gpu: bool) -> dict[str, int | bool]:
    """DataLoader keyword arguments for the recipe's speed switches.

    Pinned memory only helps host-to-GPU copies, so it is used only when training on a GPU; persistent
    workers need workers, so they are used only when ``data.workers > 0``.
    """
    workers = int(cfg.data.workers)
    return {
        "num_workers": workers,
        "pin_memory": bool(cfg.data.pin_memory and on_gpu),
        "persistent_workers": bool(cfg.data.persistent_workers and workers > 0),
    }


def leave_signals_to_main_process(worker_id: int) -> None:
    """``worker_init_fn`` of every loader: this worker ignores SIGINT and SIGTERM sent to its process group."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def protect_test_loaders(datamanager) -> None:
    """Give the workers of torchreid's query and gallery loaders :func:`leave_signals_to_main_process`."""
    for loaders in datamanager.test_loader.values():
        for loader in loaders.values():
            loader.worker_init_fn = leave_signals_to_main_process


def build_train_loader(cfg: CN, datamanager, sampler: Sampler | None = None, on_gpu: bool | None = None) -> DataLoader:
    """A train loader over ``datamanager``'s train set with ``sampler`` (default: the one torchreid built).

    Batch size and ``drop_last=True`` are torchreid's; workers, pinning and persistence follow the recipe.
    """
    current = datamanager.train_loader
    if on_gpu is None:
        on_gpu = bool(cfg.use_gpu and torch.cuda.is_available())
    return DataLoader(
        current.dataset,
        sampler=current.sampler if sampler is None else sampler,
        batch_size=cfg.train.batch_size,
        drop_last=True,
        worker_init_fn=leave_signals_to_main_process,
        **loader_options(cfg, on_gpu),
    )
