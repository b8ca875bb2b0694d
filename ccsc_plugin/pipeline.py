"""From a config to a trained, evaluated run: data manager -> model -> optimiser/schedule -> engine.

``train(cfg)`` and ``evaluate(cfg, weights)`` are what ``ccsc-reid train`` / ``test`` call. Each run
folder (``data.save_dir``) ends with ``checkpoints/epoch-NNN.pt``, ``train.log`` and ``result.json``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode as CN

from . import checkpoint as ckpt
from . import distributed, samplers
from ._torchreid import torchreid
from .config import RecipeError
from .datasets import PLUGIN_DATASETS, check_dataset, dataset_setting
from .datasets.checks import DataChecks
from .datasets.csv_dataset import CSVDataset
from .datasets.synthcam import SynthCam, SynthCamSpec
from .engine import ImageCCSCEngine
from .loaders import build_train_loader
from .model import PretrainedWeightsUnavailable
from .results import git_commit, write_result
from .resumable_sampler import ResumableSampler
from .schedule import WarmupMultiStepLR


def use_gpu(cfg: CN) -> bool:
    return bool(cfg.use_gpu and torch.cuda.is_available())


def method_name(cfg: CN) -> str:
    """The paper's name for the loss combination, e.g. ``softmax+ccsc+triplet``."""
    if cfg.experiment.method:
        return cfg.experiment.method
    parts = ["softmax"]
    if cfg.loss.ccsc.weight > 0:
        parts.append("ccsc" if cfg.loss.ccsc.cross_camera else "ccsc-noconstraint")
    if cfg.loss.triplet.weight > 0:
        parts.append("triplet")
    if cfg.loss.center.weight > 0:
        parts.append("center")
    return "+".join(parts)


def prepare_datasets(cfg: CN) -> None:
    """Check benchmark folders exist and set the plugin datasets' options before torchreid loads them."""
    SynthCam.spec = SynthCamSpec(**dict(cfg.data.synthcam))
    CSVDataset.csv_path = str(Path(cfg.data.csv.path).expanduser().resolve()) if cfg.data.csv.path else ""
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    csv_file = Path(CSVDataset.csv_path)
    trains_and_tests_csv = "csv" in cfg.data.sources and "csv" in targets
    if trains_and_tests_csv and csv_file.is_file() and not CSVDataset.has_split_column(csv_file):
        warnings.warn(
            f"{CSVDataset.csv_path} has no split column: the csv dataset trains on every row, so its evaluation "
            "scores identities seen in training. Add a split column (train/query/gallery) for a held-out test.",
            stacklevel=2,
        )
    for key in ("sources", "targets"):
        for name in cfg.data[key]:
            if name not in PLUGIN_DATASETS:
                check_dataset(name, cfg.data.root, key=f"data.{key}")


def build_datamanager(cfg: CN):
    """torchreid's ``ImageDataManager`` for ``cfg``, checked while it loads (see ``datasets.checks``).

    Unreadable images are screened out and identities counted before the sampler is built; the
    findings are kept as ``datamanager.data_checks`` for ``result.json``. The train loader is then rebuilt
    with the recipe's loader switches (``loaders.build_train_loader``) and, with the plugin's sampler
    (camera-aware, or any identity sampler under DDP), around that sampler, made resumable mid-epoch.
    """
    prepare_datasets(cfg)
    rank, world_size = distributed.rank(), distributed.world_size()
    plugin_sampler = samplers.uses_plugin_sampler(cfg, world_size)
    checks = DataChecks(
        cfg.data.on_bad_image, cfg.sampler.train_sampler, cfg.train.batch_size, cfg.sampler.num_instances
    )
    with checks.hooked():
        datamanager = _image_datamanager(
            cfg, samplers.TORCHREID_IDENTITY_SAMPLER if plugin_sampler else cfg.sampler.train_sampler
        )
    datamanager.data_checks = checks
    sampler = None
    if plugin_sampler:
        train_items = datamanager.train_loader.dataset.train
        sampler = ResumableSampler(samplers.build_train_sampler(cfg, train_items, rank, world_size))
    datamanager.train_loader = build_train_loader(cfg, datamanager, sampler=sampler, on_gpu=use_gpu(cfg))
    return datamanager


def _image_datamanager(cfg: CN, train_sampler: str):
    """torchreid's ``ImageDataManager`` from the ``data``, ``sampler``, ``train`` and ``test`` sections."""
    return torchreid.data.ImageDataManager(
        root=cfg.data.root,
        sources=list(cfg.data.sources),
        targets=list(cfg.data.targets) or None,
        height=cfg.data.height,
        width=cfg.data.width,
        transforms=list(cfg.data.transforms),
        norm_mean=list(cfg.data.norm_mean),
        norm_std=list(cfg.data.norm_std),
        use_gpu=use_gpu(cfg),
        split_id=cfg.data.split_id,
        combineall=cfg.data.combineall,
        batch_size_train=cfg.train.batch_size,
        batch_size_test=cfg.test.batch_size,
        workers=cfg.data.workers,
        num_instances=cfg.sampler.num_instances,
        train_sampler=train_sampler,
        cuhk03_labeled=cfg.data.cuhk03_labeled,
        cuhk03_classic_split=cfg.data.cuhk03_classic_split,
        market1501_500k=cfg.data.market1501_500k,
    )


def build_model(cfg: CN, num_classes: int) -> torch.nn.Module:
    """The recipe's model from torchreid's factory; falls back to random init only if the recipe allows."""
    pretrained: bool | str = cfg.model.pretrained_path or cfg.model.pretrained
    try:
        model = torchreid.models.build_model(cfg.model.name, num_classes, loss="ccsc", pretrained=pretrained)
    except PretrainedWeightsUnavailable as error:
        if not cfg.model.allow_random_init:
            raise
        warnings.warn(f"{error} Continuing with random init (model.allow_random_init=True).", stacklevel=2)
        model = torchreid.models.build_model(cfg.model.name, num_classes, loss="ccsc", pretrained=False)
    if cfg.model.load_weights:
        load_weights(model, cfg.model.load_weights)
    return model


def load_weights(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` and return the checkpoint.

    Layers whose shape differs (another dataset's classifier) are skipped and listed.
    """
    checkpoint = ckpt.load_checkpoint(path)
    state = ckpt.strip_module_prefix(checkpoint["state_dict"])
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    if skipped:
        print(f"Not loaded from {path} (absent or another shape): {', '.join(skipped)}")
    model.load_state_dict(usable, strict=False)
    return checkpoint


def build_optimizer(cfg: CN, model: torch.nn.Module) -> torch.optim.Optimizer:
    return torchreid.optim.build_optimizer(
        model,
        optim=cfg.train.optim,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        adam_beta1=cfg.adam.beta1,
        adam_beta2=cfg.adam.beta2,
    )


def build_scheduler(cfg: CN, optimizer: torch.optim.Optimizer):
    """The paper's warm-up multi-step schedule, or any of torchreid's by name."""
    if cfg.train.lr_scheduler == "warmup_multistep":
        return WarmupMultiStepLR(
            optimizer,
            milestones=list(cfg.train.stepsize),
            gamma=cfg.train.gamma,
            warmup_epochs=cfg.train.warmup_epochs,
            warmup_start_lr=cfg.train.warmup_start_lr,
        )
    return torchreid.optim.build_lr_scheduler(
        optimizer,
        lr_scheduler=cfg.train.lr_scheduler,
        stepsize=list(cfg.train.stepsize),
        gamma=cfg.train.gamma,
        max_epoch=cfg.train.max_epoch,
    )


def build_engine(cfg: CN, datamanager=None) -> ImageCCSCEngine:
    """Data manager, model, optimiser, schedule and engine for ``cfg``."""
    datamanager = datamanager or build_datamanager(cfg)
    model = build_model(cfg, datamanager.num_train_pids)
    optimizer = build_optimizer(cfg, model)
    return ImageCCSCEngine(
        datamanager,
        model,
        optimizer,
        scheduler=build_scheduler(cfg, optimizer),
        use_gpu=use_gpu(cfg),
        weight_id=cfg.loss.softmax.weight,
        label_smooth=cfg.loss.softmax.label_smooth,
        weight_ccsc=cfg.loss.ccsc.weight,
        cross_camera=cfg.loss.ccsc.cross_camera,
        include_self=cfg.loss.ccsc.include_self,
        weight_triplet=cfg.loss.triplet.weight,
        margin=cfg.loss.triplet.margin,
        weight_center=cfg.loss.center.weight,
        center_alpha=cfg.loss.center.alpha,
        amp=cfg.train.amp,
        channels_last=cfg.train.channels_last,
        compile_model=cfg.train.compile,
        checkpoint_extras={"config": cfg.dump(), "num_classes": int(datamanager.num_train_pids)},
        ddp=distributed.is_enabled(),
        gather_features=cfg.loss.gather_features,
    )


class _Tee(io.TextIOBase):
    """Write to several text streams at once (torchreid's Logger closes the console when collected)."""

    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def log_to(path: Path):
    """Tee stdout into ``path`` for the duration of a run (line-buffered: the log follows the run live).

    Under DDP only rank 0 logs.
    """
    if not distributed.is_main_process():
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log_file, contextlib.redirect_stdout(_Tee(sys.stdout, log_file)):
        yield


def _run_engine(engine: ImageCCSCEngine, cfg: CN, **kwargs: Any) -> None:
    engine.run(
        save_dir=cfg.data.save_dir,
        print_freq=cfg.train.print_freq,
        dist_metric=cfg.test.dist_metric,
        normalize_feature=cfg.test.normalize_feature,
        ranks=list(cfg.test.ranks),
        **kwargs,
    )


def summarise(cfg: CN, engine: ImageCCSCEngine, recipe: str | None, seconds: float, epochs: int) -> dict[str, Any]:
    """The ``result.json`` of a run: the first target's metrics at top level, every target below."""
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    first = engine.test_results.get(targets[0], {})
    checks = getattr(engine.datamanager, "data_checks", None)
    return {
        "recipe": recipe,
        "dataset": dataset_setting(targets[0], cfg.data.cuhk03_labeled, cfg.data.cuhk03_classic_split),
        "method": method_name(cfg),
        "paper_cell": cfg.experiment.paper_cell,
        **{key: first.get(key) for key in ("rank1", "rank5", "rank10", "mAP")},
        "targets": engine.test_results,
        "epochs": epochs,
        "seed": cfg.train.seed,
        "git_commit": git_commit(),
        "wall_time_s": round(seconds, 1),
        "save_dir": str(Path(cfg.data.save_dir).resolve()),
        **(checks.summary() if checks is not None else {}),
    }


def train(cfg: CN, recipe: str | None = None) -> dict[str, Any]:
    """Train (resuming if ``model.resume`` is set), evaluate, and write ``result.json``.

    SIGINT / SIGTERM save a resumable checkpoint after the current step and raise
    :class:`~ccsc_plugin.interrupt.TrainingInterrupted`; a NaN or infinite loss raises
    :class:`~ccsc_plugin.nonfinite.NonFiniteLoss` before its step, leaving the last good checkpoint.
    Under ``torchrun`` each process trains its shard with DDP; rank 0 logs, evaluates and writes.
    """
    ddp = distributed.init_from_env(cfg.train.dist_backend, use_gpu(cfg))
    if ddp and cfg.train.fixbase_epoch > 0:
        raise RecipeError("train.fixbase_epoch > 0 is not supported with DDP (torchrun): set it to 0.")
    save_dir = Path(cfg.data.save_dir)
    start = time.time()
    try:
        result = _train(cfg, recipe, save_dir, start)
    finally:
        if ddp:
            distributed.shutdown()
    return result


def _train(cfg: CN, recipe: str | None, save_dir: Path, start: float) -> dict[str, Any]:
    with log_to(save_dir / "train.log"):
        if distributed.world_size() > 1:
            print(f"=> DDP: {distributed.world_size()} processes, backend {torch.distributed.get_backend()}")
        torchreid.utils.set_random_seed(cfg.train.seed + distributed.rank())  # ranks differ in augmentation
        with distributed.main_process_first():  # rank 0 generates / checks the data first
            datamanager = build_datamanager(cfg)
        engine = build_engine(cfg, datamanager)
        start_epoch = engine.resume(cfg.model.resume) if cfg.model.resume else cfg.train.start_epoch
        if start_epoch:
            print(f"=> Resuming at epoch {start_epoch + 1}")
        _run_engine(
            engine,
            cfg,
            max_epoch=cfg.train.max_epoch,
            start_epoch=start_epoch,
            fixbase_epoch=cfg.train.fixbase_epoch,
            open_layers=list(cfg.train.open_layers),
            start_eval=cfg.test.start_eval,
            eval_freq=cfg.test.eval_freq,
        )
        result = summarise(cfg, engine, recipe, time.time() - start, cfg.train.max_epoch)
        if distributed.is_main_process():
            path = write_result(save_dir, result)
            print(f"=> Results written to {path}")
    return result


def evaluate(cfg: CN, weights: str | Path, recipe: str | None = None) -> dict[str, Any]:
    """Evaluate trained ``weights`` on the recipe's targets; writes ``result.json`` in ``data.save_dir``."""
    save_dir = Path(cfg.data.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with log_to(save_dir / "test.log"):
        engine = build_engine(cfg)
        checkpoint = load_weights(engine.model, weights)
        _run_engine(engine, cfg, test_only=True)
        result = summarise(cfg, engine, recipe, time.time() - start, checkpoint.get("epoch", 0))
        result["weights"] = str(Path(weights).resolve())
        write_result(save_dir, result)
    return result
