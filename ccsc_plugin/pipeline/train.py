"""``ccsc-reid train``: one run from its config to checkpoints and ``result.json`` in its own folder."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.config import RecipeError
from ccsc_plugin.data.checks import ccsc_inactive_warning
from ccsc_plugin.data.csv_dataset import describe_test_set
from ccsc_plugin.data.registry import csv_options, dataset_setting
from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.evaluation.machine import machine_record
from ccsc_plugin.evaluation.provenance import provenance
from ccsc_plugin.evaluation.results import RESULT_FILE, read_result, write_result
from ccsc_plugin.pipeline import run_folder, run_lock
from ccsc_plugin.pipeline.build import build_datamanager, build_engine, method_name, seen_identities, use_gpu
from ccsc_plugin.pipeline.resume import ResumePoint, resolve_resume
from ccsc_plugin.pipeline.run_log import log_to


def run_engine(engine: ImageCCSCEngine, cfg: CN, **kwargs: Any) -> None:
    engine.run(
        save_dir=cfg.data.save_dir,
        print_freq=cfg.train.print_freq,
        dist_metric=cfg.test.dist_metric,
        normalize_feature=cfg.test.normalize_feature,
        ranks=list(cfg.test.ranks),
        rerank=cfg.test.rerank,
        use_metric_cuhk03=cfg.test.use_metric_cuhk03,
        **kwargs,
    )


def summarise(
    cfg: CN, engine: ImageCCSCEngine, recipe: str | None, seconds: float, epochs: int, training: bool = True
) -> dict[str, Any]:
    """The ``result.json`` of a run: the first target's metrics (rank-1/5/10, mAP, mINP), how they were ranked
    (``rerank``, ``use_metric_cuhk03``) and its camera gap at top level; every target's below (``targets``).

    ``test_set`` names what the first target scored: for ``csv`` the test CSV's folder, or the validation ids
    (``validation: last N ids of <folder>``); for a benchmark its ``dataset`` name.

    ``config`` is the full resolved recipe the run used; ``warnings`` every warning that qualifies the result: for a
    training run, identities scored that were seen in training, and a CCSC term that could never act (which
    ``ccsc_active`` also records); a test adds its own (``pipeline.evaluate``).
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
        **{key: first.get(key) for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "camera_gap")},
        "rerank": first.get("rerank", {"used": False}),  # whether, and how, the distances were re-ranked
        "use_metric_cuhk03": first.get("use_metric_cuhk03", False),  # CUHK03's single-shot CMC
        "targets": engine.test_results,
        "epochs": epochs,
        "seed": cfg.train.seed,
        **provenance(),
        "config": cfg.dump(),
        "wall_time_s": round(seconds, 1),
        "machine": machine_record(engine.device),  # what the wall time was measured on
        "save_dir": str(Path(cfg.data.save_dir).resolve()),
        "input_size": [cfg.data.height, cfg.data.width],
        **(checks.summary() if checks is not None else {}),
    }
    result["warnings"] = []
    if training:
        warning = ccsc_warning(cfg, engine.datamanager)
        result["ccsc_active"] = cfg.loss.ccsc.weight > 0 and warning is None
        result["amp"] = engine.precision.record()  # train.amp, what ran, and why
        result["warnings"] = [text for text in (seen_identities(cfg), warning) if text]
    return result


def ccsc_warning(cfg: CN, datamanager) -> str | None:
    """Why ``cfg``'s CCSC term can never act on ``datamanager``'s train set, or None.

    The identity counts come from the data manager's checks (:mod:`ccsc_plugin.data.checks`).
    """
    checks = getattr(datamanager, "data_checks", None)
    counts = checks.identities if checks is not None else None
    return ccsc_inactive_warning(counts, cfg.loss.ccsc.weight, cfg.loss.ccsc.cross_camera)


def scored(checkpoint: str | Path) -> dict[str, str]:
    """The ``result.json`` entries naming the exact weights a result scored: path and SHA-256."""
    return {"checkpoint": str(Path(checkpoint).resolve()), "checkpoint_sha256": ckpt.file_sha256(checkpoint)}


def train(cfg: CN, recipe: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train (resuming if ``model.resume`` is set), evaluate, and write ``result.json``.

    ``data.save_dir`` must be writable (checked first), held by no other training run (this one holds its lock,
    :mod:`ccsc_plugin.pipeline.run_lock`, until it ends), and free, hold the run being resumed, or be cleared by
    ``overwrite`` (:func:`ccsc_plugin.pipeline.run_folder.claim`); anything else stops before a file is written.

    ``model.resume`` is resolved and its checkpoint read once (:func:`~ccsc_plugin.pipeline.resume.resolve_resume`),
    then passed down. A resumed run that has done all ``train.max_epoch`` epochs is not trained again: it returns
    its ``result.json``, or evaluates its last checkpoint when that result is missing (see ``finished_result``).
    SIGINT / SIGTERM save a resumable checkpoint after the current step, or stop an evaluation (whose
    checkpoint is saved before it starts), and raise :class:`~ccsc_plugin.engine.interrupt.TrainingInterrupted`;
    a NaN or infinite loss raises :class:`~ccsc_plugin.engine.nonfinite.NonFiniteLoss` before its step, leaving the
    last good checkpoint.
    Under ``torchrun`` each process trains its shard with DDP; rank 0 logs, evaluates and writes.
    """
    save_dir = Path(cfg.data.save_dir)
    run_folder.check_writable(save_dir)
    ddp = distributed.init_from_env(cfg.train.dist_backend, use_gpu(cfg))
    if ddp and cfg.train.fixbase_epoch > 0:
        raise RecipeError("train.fixbase_epoch > 0 is not supported with DDP (torchrun): set it to 0.")
    start = time.time()
    try:
        held = run_lock.hold(save_dir) if distributed.is_main_process() else contextlib.nullcontext([])
        with held as lock_notes:  # for the whole run: a second training into save_dir stops (run_lock)
            resume = resolve_resume(cfg.model.resume)
            if resume is not None and (finished := finished_result(cfg, save_dir, recipe, resume)) is not None:
                return finished
            notes = run_folder.claim(save_dir, resume, overwrite)
            with log_to(save_dir / run_folder.TRAIN_LOG):
                for note in [*lock_notes, *notes]:
                    print(note)
                return _train_in_folder(cfg, recipe, save_dir, start, resume)
    finally:
        if ddp:
            distributed.shutdown()


def finished_result(cfg: CN, save_dir: Path, recipe: str | None, resume: ResumePoint) -> dict[str, Any] | None:
    """The result of the run ``resume`` continues if that run has done all ``train.max_epoch`` epochs.

    ``None`` when there is training left, or evaluation: no ``result.json`` in ``save_dir`` for that many
    epochs (e.g. stopped during the final evaluation), which the resumed run then writes. A checkpoint
    beyond ``train.max_epoch`` is a :class:`RecipeError`.
    """
    checkpoint, epochs, mid_epoch, max_epoch = resume.path, resume.epochs, resume.mid_epoch, cfg.train.max_epoch
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
        f"ccsc-reid train {recipe or 'RECIPE'} --set train.max_epoch=N --resume {resume.requested} (N > {epochs})"
    )
    return result


def _train_in_folder(
    cfg: CN, recipe: str | None, save_dir: Path, start: float, resume: ResumePoint | None
) -> dict[str, Any]:
    """Build the data manager and engine, restore ``resume`` if any, train, evaluate and write ``result.json``."""
    if distributed.world_size() > 1:
        print(f"=> DDP: {distributed.world_size()} processes, backend {torch.distributed.get_backend()}")
    torchreid.utils.set_random_seed(cfg.train.seed + distributed.rank())  # ranks differ in augmentation
    with distributed.main_process_first():  # rank 0 generates / checks the data first
        datamanager = build_datamanager(cfg)
    engine = build_engine(cfg, datamanager)
    if warning := ccsc_warning(cfg, datamanager):
        print(f"=> WARNING: {warning}")
    start_epoch = engine.resume(resume.state, resume.path) if resume is not None else cfg.train.start_epoch
    if resume is not None and start_epoch == cfg.train.max_epoch:  # its result.json is missing (finished_result)
        print(f"=> {engine.saved_weights} has done all {start_epoch} epochs: evaluating it")
    elif start_epoch:
        print(f"=> Resuming at epoch {start_epoch + 1}")
    run_engine(
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
        try:
            path = write_result(save_dir, result)
        except ckpt.NoSpaceLeft as full:
            raise full.then(
                f"Training is done and its checkpoints are saved ({engine.saved_weights}): free space, then "
                f"`ccsc-reid train {recipe or 'RECIPE'} ... --resume {save_dir}` (same recipe and --set options) "
                "evaluates the last checkpoint and writes result.json."
            ) from None
        print(f"=> Results written to {path}")
    return result
