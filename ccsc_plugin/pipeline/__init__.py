"""From a config to a trained, evaluated run: data manager -> model -> optimiser/schedule -> engine.

``train(cfg)`` and ``evaluate(cfg, weights)`` are what ``ccsc-reid train`` / ``test`` call. Each run
folder (``data.save_dir``) belongs to one run (:mod:`ccsc_plugin.pipeline.run_folder`) and ends with
``checkpoints/epoch-NNN.pt``, ``train.log`` and ``result.json``; a test writes ``tests/<name>.json`` beside it.
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

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.config import RecipeError
from ccsc_plugin.data import samplers
from ccsc_plugin.data.checks import DataChecks, ccsc_inactive_warning
from ccsc_plugin.data.csv_dataset import describe_test_set, seen_identities_warning
from ccsc_plugin.data.loaders import build_train_loader
from ccsc_plugin.data.registry import PLUGIN_DATASETS, check_dataset, configure_csv, csv_options, dataset_setting
from ccsc_plugin.data.resumable_sampler import ResumableSampler
from ccsc_plugin.data.synthcam import SynthCam, SynthCamSpec
from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.engine.schedule import WarmupMultiStepLR
from ccsc_plugin.evaluation.results import RESULT_FILE, TEST_DIR, git_commit, read_result, write_result
from ccsc_plugin.models.ccsc_resnet import MODEL_NAME, PretrainedWeightsUnavailable, create_model
from ccsc_plugin.pipeline import run_folder
from ccsc_plugin.serve.inference import config_from_checkpoint


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
    csv_opts = configure_csv(cfg.data.csv)
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    trains_and_tests_csv = "csv" in cfg.data.sources and "csv" in targets
    if trains_and_tests_csv and (warning := seen_identities_warning(**csv_opts)):
        warnings.warn(warning, stacklevel=2)
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
    """The recipe's model (``model.name``, ``model.backbone``); falls back to random init only if the recipe allows.

    The fallback covers hub weights that cannot be fetched; a ``model.pretrained_path`` that cannot be used is
    always an error (the recipe named that file).
    """
    pretrained: bool | str = cfg.model.pretrained_path or cfg.model.pretrained
    try:
        model = create_model(cfg.model.name, num_classes, pretrained, cfg.model.backbone)
    except PretrainedWeightsUnavailable as error:
        if not cfg.model.allow_random_init or cfg.model.pretrained_path:
            raise
        warnings.warn(f"{error} Continuing with random init (model.allow_random_init=True).", stacklevel=2)
        model = create_model(cfg.model.name, num_classes, False, cfg.model.backbone)
    if cfg.model.load_weights:
        fix = (
            f"Set model.load_weights to a checkpoint of {model_keys(cfg)} written by `ccsc-reid train`, "
            "or to '' to start from the ImageNet (or random) init."
        )
        load_weights(model, cfg.model.load_weights, fix=fix)
    return model


def model_keys(cfg: CN) -> str:
    """The recipe keys that select ``cfg``'s model: ``model.name=X`` (and ``model.backbone=Y`` for resnet50_ccsc)."""
    keys = f"model.name={cfg.model.name}"
    return f"{keys} model.backbone={cfg.model.backbone}" if cfg.model.name == MODEL_NAME else keys


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
        loss=cfg.loss,
        train=cfg.train,
        checkpoint_extras={"config": cfg.dump(), "num_classes": int(datamanager.num_train_pids)},
        ddp=distributed.is_enabled(),
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


def summarise(
    cfg: CN, engine: ImageCCSCEngine, recipe: str | None, seconds: float, epochs: int, training: bool = True
) -> dict[str, Any]:
    """The ``result.json`` of a run: the first target's metrics (and camera gap) at top level, every target below.

    ``test_set`` names what the first target scored: for ``csv`` the test CSV's folder, or the validation ids
    (``validation: last N ids of <folder>``); for a benchmark its ``dataset`` name.

    A training run (``training``) also records whether its CCSC term could act (``ccsc_active``) and why not.
    """
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    first = engine.test_results.get(targets[0], {})
    dataset = dataset_setting(targets[0], cfg.data.cuhk03_labeled, cfg.data.cuhk03_classic_split)
    checks = getattr(engine.datamanager, "data_checks", None)
    result = {
        "recipe": recipe,
        "dataset": dataset,
        "test_set": describe_test_set(**csv_options(cfg.data.csv)) if targets[0] == "csv" else dataset,
        "method": method_name(cfg),
        "paper_cell": cfg.experiment.paper_cell,
        **{key: first.get(key) for key in ("rank1", "rank5", "rank10", "mAP", "camera_gap")},
        "targets": engine.test_results,
        "epochs": epochs,
        "seed": cfg.train.seed,
        "git_commit": git_commit(),
        "wall_time_s": round(seconds, 1),
        "save_dir": str(Path(cfg.data.save_dir).resolve()),
        "input_size": [cfg.data.height, cfg.data.width],
        **(checks.summary() if checks is not None else {}),
    }
    if training:
        warning = ccsc_warning(cfg, engine.datamanager)
        result.update(ccsc_active=cfg.loss.ccsc.weight > 0 and warning is None, warnings=[warning] if warning else [])
    return result


def ccsc_warning(cfg: CN, datamanager) -> str | None:
    """Why ``cfg``'s CCSC term can never act on ``datamanager``'s train set (see ``datasets.checks``), or None."""
    checks = getattr(datamanager, "data_checks", None)
    counts = checks.identities if checks is not None else None
    return ccsc_inactive_warning(counts, cfg.loss.ccsc.weight, cfg.loss.ccsc.cross_camera)


def scored(checkpoint: str | Path) -> dict[str, str]:
    """The ``result.json`` entries naming the exact weights a result scored: path and SHA-256."""
    return {"checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": ckpt.file_sha256(checkpoint)}


def train(cfg: CN, recipe: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train (resuming if ``model.resume`` is set), evaluate, and write ``result.json``.

    ``data.save_dir`` must be free, hold the run being resumed, or be cleared by ``overwrite``
    (:func:`ccsc_plugin.pipeline.run_folder.claim`); anything else stops before a file is written.

    A resumed run that has done all ``train.max_epoch`` epochs is not trained again: it returns its
    ``result.json``, or evaluates its last checkpoint when that result is missing (see ``finished_result``).
    SIGINT / SIGTERM save a resumable checkpoint after the current step, or stop an evaluation (whose
    checkpoint is saved before it starts), and raise :class:`~ccsc_plugin.engine.interrupt.TrainingInterrupted`;
    a NaN or infinite loss raises :class:`~ccsc_plugin.engine.nonfinite.NonFiniteLoss` before its step, leaving the
    last good checkpoint.
    Under ``torchrun`` each process trains its shard with DDP; rank 0 logs, evaluates and writes.
    """
    save_dir = Path(cfg.data.save_dir)
    if cfg.model.resume and (finished := finished_result(cfg, save_dir, recipe)) is not None:
        return finished
    ddp = distributed.init_from_env(cfg.train.dist_backend, use_gpu(cfg))
    if ddp and cfg.train.fixbase_epoch > 0:
        raise RecipeError("train.fixbase_epoch > 0 is not supported with DDP (torchrun): set it to 0.")
    start = time.time()
    try:
        result = _train(cfg, recipe, save_dir, start, overwrite)
    finally:
        if ddp:
            distributed.shutdown()
    return result


def finished_result(cfg: CN, save_dir: Path, recipe: str | None) -> dict[str, Any] | None:
    """The result of the run ``model.resume`` continues if that run has done all ``train.max_epoch`` epochs.

    ``None`` when there is training left, or evaluation: no ``result.json`` in ``save_dir`` for that many
    epochs (e.g. stopped during the final evaluation), which the resumed run then writes. A checkpoint
    beyond ``train.max_epoch`` is a :class:`RecipeError`.
    """
    checkpoint = ckpt.latest_checkpoint(cfg.model.resume)
    state = ckpt.load_checkpoint(checkpoint)
    epochs, mid_epoch, max_epoch = int(state["epoch"]), "sampler" in state, cfg.train.max_epoch
    if epochs + mid_epoch > max_epoch:
        done = f"{epochs} epochs" + (" and part of the next" if mid_epoch else "")
        raise RecipeError(
            f"{checkpoint} has done {done}, more than train.max_epoch={max_epoch}. To continue that run, set "
            f"train.max_epoch={epochs + mid_epoch} or more (with --resume); to train {max_epoch} epochs, start a "
            "new run in another data.save_dir, without --resume."
        )
    result_file = save_dir / RESULT_FILE
    result = read_result(result_file) if epochs == max_epoch and result_file.is_file() else None
    if result is None or result.get("epochs") != epochs:
        return None
    print(
        f"=> {save_dir} is complete: {checkpoint} has done all {epochs} epochs (train.max_epoch={max_epoch}) and "
        f"{result_file} holds its result. Nothing to do. To train it longer, resume with a larger max_epoch: "
        f"ccsc-reid train {recipe or 'RECIPE'} --set train.max_epoch=N --resume {cfg.model.resume} (N > {epochs})"
    )
    return result


def _train(cfg: CN, recipe: str | None, save_dir: Path, start: float, overwrite: bool) -> dict[str, Any]:
    notes = run_folder.claim(save_dir, cfg.model.resume, overwrite)
    with log_to(save_dir / run_folder.TRAIN_LOG):
        for note in notes:
            print(note)
        if distributed.world_size() > 1:
            print(f"=> DDP: {distributed.world_size()} processes, backend {torch.distributed.get_backend()}")
        torchreid.utils.set_random_seed(cfg.train.seed + distributed.rank())  # ranks differ in augmentation
        with distributed.main_process_first():  # rank 0 generates / checks the data first
            datamanager = build_datamanager(cfg)
        engine = build_engine(cfg, datamanager)
        if warning := ccsc_warning(cfg, datamanager):
            print(f"=> WARNING: {warning}")
        start_epoch = engine.resume(cfg.model.resume) if cfg.model.resume else cfg.train.start_epoch
        if cfg.model.resume and start_epoch == cfg.train.max_epoch:  # its result.json is missing (finished_result)
            print(f"=> {engine.saved_weights} has done all {start_epoch} epochs: evaluating it")
        elif start_epoch:
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
        result = {**summarise(cfg, engine, recipe, time.time() - start, cfg.train.max_epoch), "kind": "train"}
        if distributed.is_main_process():  # rank 0 wrote the checkpoints
            result.update(scored(engine.saved_weights))  # the weights the final evaluation scored
            path = write_result(save_dir, result)
            print(f"=> Results written to {path}")
    return result


def evaluate(cfg: CN, weights: str | Path, recipe: str | None = None) -> dict[str, Any]:
    """Evaluate the checkpoint ``weights`` on the recipe's targets.

    The weights are tested at the input size they were trained at (their stored recipe), whatever the recipe
    says. The result goes beside, never over, a training result in ``data.save_dir``:
    ``tests/<targets>-<checkpoint>-<key>.json`` (:func:`ccsc_plugin.pipeline.run_folder.path_for_test_result`).
    """
    start = time.time()
    with log_to(Path(cfg.data.save_dir) / TEST_DIR / run_folder.TEST_LOG):
        checkpoint = ckpt.load_checkpoint(weights)
        stored = config_from_checkpoint(checkpoint, origin=str(weights)) if "config" in checkpoint else None
        cfg = at_trained_input_size(cfg, stored, weights)
        engine = build_engine(cfg)
        load_weights(engine.model, weights, checkpoint, fix=_weights_fix(cfg, stored))
        weights_scored = scored(weights)
        _run_engine(engine, cfg, test_only=True)
        result = summarise(cfg, engine, recipe, time.time() - start, checkpoint.get("epoch", 0), training=False)
        result.update(kind="test", **weights_scored)
        path = write_result(run_folder.path_for_test_result(cfg, weights, weights_scored["checkpoint_sha256"]), result)
        print(f"=> Test result written to {path}")
    return result


def at_trained_input_size(cfg: CN, stored: CN | None, weights: str | Path) -> CN:
    """``cfg`` at the input size of the checkpoint's stored recipe ``stored``, with a line when that changes it.

    Weights trained at one size score far lower at another; testing at another size on purpose takes a
    checkpoint trained (or fine-tuned) at that size.
    """
    if stored is None or (stored.data.height, stored.data.width) == (cfg.data.height, cfg.data.width):
        return cfg
    print(
        f"=> {weights} was trained at {stored.data.height}x{stored.data.width}: testing at that size, not at "
        f"the recipe's data.height x data.width = {cfg.data.height}x{cfg.data.width}"
    )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.data.height, cfg.data.width = stored.data.height, stored.data.width
    cfg.freeze()
    return cfg


def _weights_fix(cfg: CN, stored: CN | None) -> str:
    """What to do when ``--weights`` do not fit the recipe's model."""
    if stored is not None and model_keys(stored) != model_keys(cfg):
        overrides = " ".join(f"--set {key}" for key in model_keys(stored).split())
        return f"They were trained as {model_keys(stored)}: add {overrides}."
    return f"Pass --weights a checkpoint of {model_keys(cfg)} written by `ccsc-reid train`."
