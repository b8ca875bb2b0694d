"""The run loop of ``ImageCCSCEngine``: checkpoints before evaluations, stop on a signal, resume mid-epoch.

:class:`TrainingLoop` is a mixin placed before torchreid's ``Engine`` in the engine's bases: it replaces
``run``, ``save_model`` and ``resume`` and wraps ``train``. It reads the engine's ``bare_model``, ``optimizer``,
``scheduler``, ``scaler``, ``loss_terms`` (whose state it checkpoints) and ``checkpoint_extras``, and calls its
``check_test_arguments``.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin import rng
from ccsc_plugin.data.resumable_sampler import ResumableSampler
from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.interrupt import StopOnSignal, TrainingInterrupted
from ccsc_plugin.losses.terms import load_term_states, term_states

RESUME_FIX = (
    "--resume continues a run of this recipe's model on the same training data: pass that run, or drop --resume "
    "(--set model.load_weights=CHECKPOINT starts a new run from its weights, the classifier excepted)."
)


class TrainingLoop:
    """torchreid's run loop, resumable: checkpoints (with sampler, scaler and RNG state) and SIGINT/SIGTERM."""

    stop_signal: StopOnSignal | None = None  # while run() trains: a signal stops it (see ``run``)
    evaluation: str | None = None  # while run() evaluates: which evaluation (a signal stops it)
    save_dir: str | None = None
    saved_weights: Path | None = None  # the checkpoint holding the current weights (saved or resumed)

    def run(
        self,
        save_dir: str = "log",
        max_epoch: int = 0,
        start_epoch: int = 0,
        print_freq: int = 10,
        fixbase_epoch: int = 0,
        open_layers=None,
        start_eval: int = 0,
        eval_freq: int = -1,
        test_only: bool = False,
        **test_kwargs: Any,
    ) -> None:
        """torchreid's ``run``, except that each checkpoint is saved *before* the evaluation that follows it.

        While it trains, SIGINT/SIGTERM stop the run (see ``interrupt``): in a training step after that step,
        with a resumable checkpoint; in an evaluation at its next batch, the weights being already saved.
        With ``start_epoch == max_epoch`` (a resumed run that has done all its epochs) it only evaluates.
        An evaluation argument the engine cannot honour stops it before anything runs (``check_test_arguments``).
        """
        self.check_test_arguments(test_kwargs)
        self.save_dir = save_dir
        if not distributed.is_main_process():
            self.writer = _NullWriter()  # one tensorboard log per run, written by rank 0
        if test_only:
            super().run(save_dir=save_dir, test_only=True, **test_kwargs)
            return
        if start_epoch >= max_epoch > 0 and self.saved_weights is None:
            raise ValueError(f"start_epoch={start_epoch} leaves none of max_epoch={max_epoch} to train.")
        if self.writer is None:
            self.writer = SummaryWriter(log_dir=save_dir)
        started = time.time()
        self.start_epoch, self.max_epoch = start_epoch, max_epoch
        print("=> Start training")
        try:
            with StopOnSignal() as self.stop_signal:
                for self.epoch in range(start_epoch, max_epoch):
                    self.train(print_freq=print_freq, fixbase_epoch=fixbase_epoch, open_layers=open_layers)
                    done = self.epoch + 1
                    if start_eval <= done < max_epoch and eval_freq > 0 and done % eval_freq == 0:
                        self.save_model(self.epoch, None, save_dir)
                        self._test_saved_weights(f"the evaluation after epoch {done}", save_dir, test_kwargs)
                if max_epoch > 0:
                    if start_epoch < max_epoch:
                        self.save_model(self.epoch, None, save_dir)
                    print("=> Final test")
                    self._test_saved_weights("the final evaluation", save_dir, test_kwargs)
        finally:
            self.stop_signal = None
        print(f"Elapsed {datetime.timedelta(seconds=round(time.time() - started))}")
        self.writer.close()

    def _test_saved_weights(self, evaluation: str, save_dir: str, test_kwargs: dict[str, Any]) -> float:
        """``test`` the weights just saved (``saved_weights``); a signal stops it at the next batch."""
        promise = f"stopping the evaluation at the next batch; the weights are already saved in {self.saved_weights}"
        self.evaluation = evaluation
        try:
            with self.stop_signal.promising(f"{promise} (send it again to stop at once)"):
                return self.test(save_dir=save_dir, **test_kwargs)
        finally:
            self.evaluation = None

    def _stop_training_if_signalled(self) -> None:
        """After a training step of ``run``: a SIGINT/SIGTERM received stops it with a resumable checkpoint."""
        if self.stop_signal is not None and self.stop_signal.signum is not None:
            raise TrainingInterrupted(self.stop_signal.signum, self.save_resume_point(), self.where())

    def _stop_evaluation_if_signalled(self, where: str) -> None:
        """In an evaluation of ``run``: a SIGINT/SIGTERM received stops it, naming the saved weights."""
        if self.evaluation is not None and self.stop_signal is not None and self.stop_signal.signum is not None:
            where = f"{self.evaluation} ({where})"
            raise TrainingInterrupted(self.stop_signal.signum, self.saved_weights, where, in_evaluation=True)

    def train_sampler(self) -> ResumableSampler | None:
        """The train loader's resumable sampler, if it has one (see ``data.resumable_sampler``)."""
        sampler = getattr(getattr(self.train_loader, "batch_sampler", None), "sampler", None)
        return sampler if isinstance(sampler, ResumableSampler) else None

    def _batches_done(self) -> int:
        """Batches of the current epoch finished, counting those done before a resume."""
        sampler = self.train_sampler()
        earlier = sampler.start // self.train_loader.batch_size if sampler is not None else 0
        return earlier + getattr(self, "batch_idx", 0) + 1

    def where(self) -> str:
        """The current step, e.g. ``epoch 3/60, batch 7/12``."""
        max_epoch = getattr(self, "max_epoch", 0)
        return f"epoch {self.epoch + 1}/{max_epoch}, batch {self._batches_done()}/{len(self.train_loader)}"

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint of this run, if any."""
        if self.save_dir is None:
            return None
        try:
            return ckpt.latest_checkpoint(self.save_dir)
        except FileNotFoundError:
            return None

    def save_resume_point(self) -> Path:
        """Checkpoint the state after the current step, mid-epoch: with the epoch's order and position."""
        state = self.checkpoint_state(self.epoch, None)  # ``epoch`` = epochs completed
        sampler = self.train_sampler()
        if sampler is not None:
            state["sampler"] = sampler.state((getattr(self, "batch_idx", 0) + 1) * self.train_loader.batch_size)
        path = self._save(state, ckpt.checkpoint_path(self.save_dir or "log", self.epoch, self._batches_done()))
        print(f"Resumable checkpoint saved to {path}")
        self.saved_weights = path
        return path

    def train(self, *args, **kwargs) -> None:
        """One epoch; a sampler with ``set_epoch`` (the plugin's) is reshuffled first, on every rank."""
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        super().train(*args, **kwargs)

    def checkpoint_state(self, epoch: int, rank1: float | None) -> dict[str, Any]:
        """Everything needed to resume after ``epoch`` epochs, as tensors and plain values.

        A loss term with state (the centre loss's centres) is stored under its name (the centres under
        ``center``, the key older checkpoints hold).
        """
        state = {
            "state_dict": self.bare_model.state_dict(),
            "epoch": int(epoch),
            "rank1": None if rank1 is None else float(rank1),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng.capture(),  # python, numpy, torch (and CUDA) generators: the next epoch draws the same
            **self.checkpoint_extras,
        }
        losses = term_states(self.loss_terms)
        if clash := sorted(set(losses) & {*state, "sampler"}):  # sampler: added by save_resume_point
            raise ValueError(f"The loss term(s) {', '.join(clash)} would overwrite checkpoint entries: rename them.")
        return {**state, **losses}

    def save_model(self, epoch: int, rank1, save_dir: str, is_best: bool = False) -> Path:
        """Atomic, ``weights_only``-loadable replacement of torchreid's ``save_model`` (rank 0 writes)."""
        if not distributed.is_main_process():
            return ckpt.checkpoint_path(save_dir, epoch + 1)
        path = self._save(self.checkpoint_state(epoch + 1, rank1), ckpt.checkpoint_path(save_dir, epoch + 1))
        print(f"Checkpoint saved to {path}")
        self.saved_weights = path
        return path

    def _save(self, state: dict[str, Any], path: Path) -> Path:
        """Save a checkpoint; a full disk says which checkpoint the run can be resumed from once space is freed."""
        try:
            return ckpt.save_checkpoint(state, path)
        except ckpt.NoSpaceLeft as full:
            last = self.last_checkpoint()
            fix = (
                f"Nothing was lost: the last checkpoint saved is {last}. Free space, then continue the run with "
                f"`ccsc-reid train RECIPE ... --resume {path.parent.parent}` (same recipe and --set options)."
                if last is not None
                else "No checkpoint of this run was saved yet: free space, then train again with --overwrite."
            )
            raise full.then(fix) from None

    def resume(self, state: dict[str, Any], path: str | Path) -> int:
        """Restore model, optimiser, scheduler, scaler, loss terms' state, sampler and RNG; return the start epoch.

        ``state`` is the checkpoint already read from ``path`` (``pipeline.resume``): nothing is read here, and
        ``path`` is named in errors and becomes ``saved_weights``. A mid-epoch (interrupt) checkpoint continues
        that epoch at the next batch, in the same order.
        """
        ckpt.load_model_state(self.bare_model, state, path, fix=RESUME_FIX)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        load_term_states(self.loss_terms, state)
        sampler = self.train_sampler()
        if "sampler" in state and sampler is not None:
            sampler.load_state(state["sampler"], state.get("rng"))  # RNG restored when its batches start
            print(f"=> Continuing epoch {int(state['epoch']) + 1} at sample {int(state['sampler']['position'])}")
        elif state.get("rng") is not None:
            rng.restore(state["rng"])
        self.saved_weights = Path(path)
        return int(state["epoch"])


class _NullWriter:
    """Stands in for tensorboard's ``SummaryWriter`` on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
