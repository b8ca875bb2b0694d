"""Config -> the objects of a run: torchreid data manager, model, optimiser, schedule and the CCSC engine."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.data import image_cache, samplers
from ccsc_plugin.data.checks import DataChecks
from ccsc_plugin.data.csv_dataset import seen_identities_warning
from ccsc_plugin.data.loaders import build_train_loader, protect_test_loaders
from ccsc_plugin.data.registry import PLUGIN_DATASETS, bound_datasets, check_dataset, csv_options
from ccsc_plugin.data.resumable_sampler import ResumableSampler
from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.engine.schedule import WARMUP_MULTISTEP, WarmupMultiStepLR
from ccsc_plugin.losses.terms import active_terms
from ccsc_plugin.models import DEFAULT_NECK, PretrainedWeightsUnavailable, create_model, is_ccsc_model
from ccsc_plugin.pipeline.engine_args import engine_arguments


def use_gpu(cfg: CN) -> bool:
    return bool(cfg.use_gpu and torch.cuda.is_available())


def method_name(cfg: CN) -> str:
    """The paper's name for the loss combination, e.g. ``softmax+ccsc+triplet``; ``+bnneck`` ends a BNNeck run's.

    Each term with weight > 0 adds its part, in the order of the table of terms (``losses.terms.LOSS_TERMS``).
    The suffix keeps BoT-head runs out of the paper's table cells (its model has no BNNeck).
    """
    if cfg.experiment.method:
        return cfg.experiment.method
    parts = [term.part_of_method(cfg.loss[term.section]) for term in active_terms(cfg.loss)]
    if is_ccsc_model(cfg.model.name) and cfg.model.neck != DEFAULT_NECK:
        parts.append(cfg.model.neck)
    return "+".join(parts)


def prepare_datasets(cfg: CN) -> None:
    """Before torchreid loads anything: check the benchmark folders exist, and warn of scores on seen identities."""
    if warning := seen_identities(cfg):
        warnings.warn(warning, stacklevel=2)
    for key in ("sources", "targets"):
        for name in cfg.data[key]:
            if name not in PLUGIN_DATASETS:
                check_dataset(name, cfg.data.root, key=f"data.{key}")


def seen_identities(cfg: CN) -> str | None:
    """Why ``cfg`` scores identities it also trains on (the ``csv`` dataset trained and tested alike), or None.

    The warning qualifies every score of such a run: it is printed and recorded in ``result.json``.
    """
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    if "csv" not in cfg.data.sources or "csv" not in targets:
        return None
    return seen_identities_warning(**csv_options(cfg.data.csv))


def build_datamanager(cfg: CN):
    """torchreid's ``ImageDataManager`` for ``cfg``, checked while it loads (:mod:`ccsc_plugin.data.checks`).

    Unreadable images are screened out and identities counted before the sampler is built; the
    findings are kept as ``datamanager.data_checks`` for ``result.json``. With ``data.cache_images`` the same
    pass fills the in-memory image cache, installed before any loader iterates (``data.image_cache``); a
    previous data manager's cache is dropped first. The train loader is then rebuilt
    with the recipe's loader switches (``loaders.build_train_loader``) and, with the plugin's sampler
    (camera-aware, or any identity sampler under DDP), around that sampler, made resumable mid-epoch.
    """
    prepare_datasets(cfg)
    rank, world_size = distributed.rank(), distributed.world_size()
    plugin_sampler = samplers.uses_plugin_sampler(cfg, world_size)
    image_cache.install(None)  # one cache per process: the last one's memory goes before this one fills
    cache = image_cache.ImageCache(cfg.data.height, cfg.data.width, cfg.data.cache_max_mb)  # empty until filled
    checks = DataChecks(
        cfg.data.on_bad_image,
        cfg.sampler.train_sampler,
        cfg.train.batch_size,
        cfg.sampler.num_instances,
        cache=cache if cfg.data.cache_images else None,  # None: every epoch reads the files
    )
    with bound_datasets(dict(cfg.data.synthcam), cfg.data.csv), checks.hooked():  # this run's dataset options
        datamanager = _image_datamanager(
            cfg, samplers.TORCHREID_IDENTITY_SAMPLER if plugin_sampler else cfg.sampler.train_sampler
        )
    image_cache.install(checks.cache)
    datamanager.data_checks = checks
    sampler = None
    if plugin_sampler:
        train_items = datamanager.train_loader.dataset.train
        sampler = ResumableSampler(samplers.build_train_sampler(cfg, train_items, rank, world_size))
    datamanager.train_loader = build_train_loader(cfg, datamanager, sampler=sampler, on_gpu=use_gpu(cfg))
    protect_test_loaders(datamanager)
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
    """The recipe's model (``model.name``, ``.neck``, ``test.neck_feat``); random init only if allowed.

    The fallback covers hub weights that cannot be fetched; a ``model.pretrained_path`` that cannot be used is
    always an error (the recipe named that file).
    """
    pretrained: bool | str = cfg.model.pretrained_path or cfg.model.pretrained
    head = {"neck": cfg.model.neck, "neck_feat": cfg.test.neck_feat}
    try:
        model = create_model(cfg.model.name, num_classes, pretrained, **head)
    except PretrainedWeightsUnavailable as error:
        if not cfg.model.allow_random_init or cfg.model.pretrained_path:
            raise
        warnings.warn(f"{error} Continuing with random init (model.allow_random_init=True).", stacklevel=2)
        model = create_model(cfg.model.name, num_classes, False, **head)
    if cfg.model.load_weights:
        fix = (
            f"Set model.load_weights to a checkpoint of {model_keys(cfg)} written by `ccsc-reid train`, "
            "or to '' to start from the ImageNet (or random) init."
        )
        load_weights(model, cfg.model.load_weights, fix=fix)
    return model


def model_keys(cfg: CN) -> str:
    """The recipe keys that select ``cfg``'s weights: ``model.name=X`` (and ``model.neck`` for the ``_ccsc``
    models). ``test.neck_feat`` is not one: it picks the test feature of the same weights."""
    keys = f"model.name={cfg.model.name}"
    return f"{keys} model.neck={cfg.model.neck}" if is_ccsc_model(cfg.model.name) else keys


def load_weights(
    model: torch.nn.Module,
    path: str | Path,
    checkpoint: dict[str, Any] | None = None,
    fix: str = ckpt.DEFAULT_FIT_FIX,
) -> dict[str, Any]:
    """Load a checkpoint's weights (``checkpoint``, or read from ``path``) into ``model``; return the checkpoint.

    Every key must fit (see ``checkpoint.load_model_state``) except another dataset's classifier, which
    features do not use: it is left as built, and a line says so.
    """
    checkpoint = ckpt.load_checkpoint(path) if checkpoint is None else checkpoint
    skipped = ckpt.load_model_state(model, checkpoint, path, other_classes=True, fix=fix)
    if skipped:
        print(f"=> Not loaded from {path}: {', '.join(skipped)} (another dataset's classifier; features do not use it)")
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
    if cfg.train.lr_scheduler == WARMUP_MULTISTEP:
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
    """Data manager, model, optimiser, schedule and engine for ``cfg`` (its settings: ``engine_args``)."""
    datamanager = datamanager or build_datamanager(cfg)
    model = build_model(cfg, datamanager.num_train_pids)
    optimizer = build_optimizer(cfg, model)
    return ImageCCSCEngine(
        datamanager,
        model,
        optimizer,
        scheduler=build_scheduler(cfg, optimizer),
        use_gpu=use_gpu(cfg),
        **engine_arguments(cfg),
        checkpoint_extras={"config": cfg.dump(), "num_classes": int(datamanager.num_train_pids)},
        ddp=distributed.is_enabled(),
    )
