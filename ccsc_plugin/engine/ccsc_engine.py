"""``ImageCCSCEngine``: torchreid's ``Engine`` with L = w_id L_id + lambda L_ccsc (+ w_t L_tri) (+ w_c L_center).

Every row of the paper's tables runs through this one engine: the softmax baseline is lambda = 0,
"+ triplet" sets the triplet weight, and so on. Each configured term is logged by name.
"""

from __future__ import annotations

import datetime
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin import rng
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.data.resumable_sampler import ResumableSampler
from ccsc_plugin.engine import distributed
from ccsc_plugin.engine.interrupt import StopOnSignal, TrainingInterrupted
from ccsc_plugin.engine.nonfinite import all_finite, non_finite_loss
from ccsc_plugin.evaluation import camera_gap, metrics
from ccsc_plugin.losses import CCSCLoss, CenterLoss, CrossEntropyLoss, TripletLoss
from ccsc_plugin.models.ccsc_resnet import feature_dim

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MODES = tuple(AMP_DTYPES)  # every valid train.amp
RESUME_FIX = (
    "--resume continues a run of this recipe's model on the same training data: pass that run, or drop --resume "
    "(--set model.load_weights=CHECKPOINT starts a new run from its weights, the classifier excepted)."
)


class ImageCCSCEngine(torchreid.engine.Engine):
    """Image re-ID engine for the CCSC paper; the model must return ``(logits, features)`` in train mode.

    Args:
        datamanager: a torchreid ``ImageDataManager`` (batches carry ``camid``).
        model, optimizer, scheduler: as for torchreid's ``ImageSoftmaxEngine``.
        weight_id, label_smooth: softmax (ID) term.
        weight_ccsc, cross_camera, include_self: CCSC term (``weight_ccsc=0`` is the baseline).
        weight_triplet, margin: torchreid's hard-mining triplet term.
        weight_center, center_alpha: Wen et al.'s centre loss and its centre update rate.
        amp: ``"off"``, ``"bf16"`` or ``"fp16"`` autocast (fp16 uses a grad scaler).
        channels_last: run the model in channels-last memory format.
        compile_model: run the model through ``torch.compile`` (``self.model`` stays the plain module, so
            checkpoints keep their keys; the compiled one is ``self.forward_model``).
        checkpoint_extras: plain values stored in every checkpoint (config text, num_classes...).
        ddp: wrap the model in ``DistributedDataParallel`` (the process group must be initialised);
            only rank 0 then evaluates and writes checkpoints and the tensorboard log.
        gather_features: under DDP, compute the CCSC and triplet terms on the features of all ranks
            (all-gathered with gradient) instead of this rank's batch only.
    """

    def __init__(
        self,
        datamanager,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        use_gpu: bool = True,
        weight_id: float = 1.0,
        label_smooth: bool = False,
        weight_ccsc: float = 1.5,
        cross_camera: bool = True,
        include_self: bool = True,
        weight_triplet: float = 0.0,
        margin: float = 0.3,
        weight_center: float = 0.0,
        center_alpha: float = 0.5,
        amp: str = "off",
        channels_last: bool = True,
        compile_model: bool = False,
        checkpoint_extras: dict[str, Any] | None = None,
        ddp: bool = False,
        gather_features: bool = False,
    ) -> None:
        super().__init__(datamanager, use_gpu)
        self.device = torch.device("cuda" if self.use_gpu else "cpu")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        if ddp:
            self.model = distributed.wrap_model(self.model, self.device)
        self.forward_model = torch.compile(self.model) if compile_model else self.model
        self.gather_features = gather_features
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.register_model("model", self.model, optimizer, scheduler)
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}; got {amp!r}.")
        self.amp_dtype = AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.checkpoint_extras = dict(checkpoint_extras or {})
        self.test_results: dict[str, dict[str, Any]] = {}
        self.stop_signal: StopOnSignal | None = None  # while run() trains: a signal stops it (see ``run``)
        self.evaluation: str | None = None  # while run() evaluates: which evaluation (a signal stops it)
        self.save_dir: str | None = None
        self.saved_weights: Path | None = None  # the checkpoint holding the current weights (saved or resumed)

        num_classes = datamanager.num_train_pids
        self.weights = {"id": weight_id, "ccsc": weight_ccsc, "triplet": weight_triplet, "center": weight_center}
        self.criterion_id = CrossEntropyLoss(num_classes=num_classes, use_gpu=self.use_gpu, label_smooth=label_smooth)
        self.criterion_ccsc = CCSCLoss(cross_camera=cross_camera, include_self=include_self)
        self.criterion_triplet = TripletLoss(margin=margin)
        self.criterion_center = None
        if weight_center > 0:  # the centres have the size of the features they pull
            dim = feature_dim(self.bare_model, datamanager.height, datamanager.width)
            self.criterion_center = CenterLoss(num_classes, dim, alpha=center_alpha).to(self.device)

    @property
    def bare_model(self) -> torch.nn.Module:
        """The model without its DDP wrapper: what is evaluated and checkpointed."""
        return distributed.unwrap_model(self.model)

    def parse_data_for_train(self, data: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, identity labels and camera ids (torchreid's default drops the camera ids)."""
        return data["img"], data["pid"], data["camid"]

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def compute_losses(
        self, logits: torch.Tensor, features: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each configured (weight > 0) loss term, unweighted, in float32."""
        terms = {"id": self.compute_loss(self.criterion_id, logits.float(), pids)}
        pair_features, pair_pids, pair_camids = features, pids, camids
        if self.gather_features:
            pair_features = distributed.all_gather_with_grad(features)
            pair_pids, pair_camids = distributed.all_gather(pids), distributed.all_gather(camids)
        if self.weights["ccsc"] > 0:
            terms["ccsc"] = self.criterion_ccsc(pair_features, pair_pids, pair_camids)
        if self.weights["triplet"] > 0:
            terms["triplet"] = self.criterion_triplet(pair_features.float(), pair_pids)
        if self.criterion_center is not None:
            terms["center"] = self.criterion_center(features, pids)
        return terms

    def forward_backward(self, data: dict) -> dict[str, float]:
        imgs, pids, camids = self.parse_data_for_train(data)
        imgs = imgs.to(self.device, memory_format=self.memory_format, non_blocking=True)
        pids = pids.to(self.device, non_blocking=True)
        camids = camids.to(self.device, non_blocking=True)

        with self._autocast():
            outputs = self.forward_model(imgs)
        if not isinstance(outputs, (tuple, list)):
            raise TypeError(
                "ImageCCSCEngine needs (logits, features) from the model in train mode; build it with loss='ccsc' "
                "(resnet50_ccsc) or loss='triplet' (torchreid's zoo models)."
            )
        logits, features = outputs
        terms = self.compute_losses(logits, features, pids, camids)
        total = sum(self.weights[name] * value for name, value in terms.items())

        summary = {f"loss_{name}": value.item() for name, value in terms.items()}
        summary["loss"] = total.item()
        if not all_finite(summary):  # stop before the step: the weights (and any checkpoint) stay good
            raise non_finite_loss(summary, self.where(), self.last_checkpoint())

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.criterion_center is not None:  # under DDP every rank applies the same update: centres stay equal
            self.criterion_center.update_centers(
                distributed.all_gather(features.detach()), distributed.all_gather(pids)
            )

        summary["acc"] = torchreid.metrics.accuracy(logits.float(), pids)[0].item()
        if self.stop_signal is not None and self.stop_signal.signum is not None:
            raise TrainingInterrupted(self.stop_signal.signum, self.save_resume_point(), self.where())
        return summary

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
        """
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

    def _stop_if_signalled(self, where: str) -> None:
        """In an evaluation of ``run``: a SIGINT/SIGTERM received stops it, naming the saved weights."""
        if self.evaluation is not None and self.stop_signal is not None and self.stop_signal.signum is not None:
            where = f"{self.evaluation} ({where})"
            raise TrainingInterrupted(self.stop_signal.signum, self.saved_weights, where, in_evaluation=True)

    def train_sampler(self) -> ResumableSampler | None:
        """The train loader's resumable sampler, if it has one (see ``datasets.checks``)."""
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
        path = ckpt.save_checkpoint(
            state, ckpt.checkpoint_path(self.save_dir or "log", self.epoch, self._batches_done())
        )
        print(f"Resumable checkpoint saved to {path}")
        self.saved_weights = path
        return path

    def train(self, *args, **kwargs) -> None:
        """One epoch; a sampler with ``set_epoch`` (the plugin's) is reshuffled first, on every rank."""
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        super().train(*args, **kwargs)

    def test(self, *args, **kwargs) -> float:
        """torchreid's test on rank 0 only (the others wait at the next collective)."""
        if not distributed.is_main_process():
            return 0.0
        return super().test(*args, **kwargs)

    @torch.no_grad()
    def extract_features(self, input: torch.Tensor) -> torch.Tensor:
        model = self.forward_model if self.model is self.bare_model else self.bare_model  # DDP: no collectives
        return model(input.to(self.device, memory_format=self.memory_format)).float()

    @torch.no_grad()
    def extract_loader_features(self, loader, desc: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Features, pids and camids of a whole loader, with a progress bar."""
        features, pids, camids = [], [], []
        for batch, data in enumerate(tqdm(loader, desc=desc, unit="batch", leave=False), 1):
            self._stop_if_signalled(f"{desc}, batch {batch}/{len(loader)}")
            imgs, batch_pids, batch_camids = self.parse_data_for_eval(data)
            features.append(self.extract_features(imgs).cpu())
            pids.append(batch_pids.numpy())
            camids.append(batch_camids.numpy())
        return torch.cat(features), np.concatenate(pids), np.concatenate(camids)

    @torch.no_grad()
    def _evaluate(
        self,
        dataset_name: str = "",
        query_loader=None,
        gallery_loader=None,
        dist_metric: str = "euclidean",
        normalize_feature: bool = False,
        ranks=(1, 5, 10, 20),
        **unused,
    ) -> tuple[float, float]:
        """torchreid's evaluation with the plugin's evaluator; results are kept in ``test_results``.

        They include the camera gap on the test people (``camera_gap.camera_gap_report``).
        """
        start = time.time()
        qf, q_pids, q_camids = self.extract_loader_features(query_loader, f"{dataset_name} query")
        gf, g_pids, g_camids = self.extract_loader_features(gallery_loader, f"{dataset_name} gallery")
        if normalize_feature:
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
        cmc, mAP = metrics.evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=dist_metric)
        self._stop_if_signalled(f"{dataset_name} ranking")
        result = {f"rank{r}": float(cmc[r - 1]) for r in ranks if r <= len(cmc)}
        result.update(mAP=float(mAP), num_query=int(len(q_pids)), num_gallery=int(len(g_pids)))
        gap = camera_gap.camera_gap_report(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=dist_metric)
        result["camera_gap"] = gap
        self.test_results[dataset_name] = result
        print(f"** Results ({dataset_name}, {time.time() - start:.1f}s) **")
        print(f"mAP: {mAP:.1%}")
        for r in ranks:
            if r <= len(cmc):
                print(f"Rank-{r:<3}: {cmc[r - 1]:.1%}")
        print(camera_gap.summary_line(gap))
        return float(cmc[0]), float(mAP)

    def checkpoint_state(self, epoch: int, rank1: float | None) -> dict[str, Any]:
        """Everything needed to resume after ``epoch`` epochs, as tensors and plain values."""
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
        if self.criterion_center is not None:
            state["center"] = self.criterion_center.state_dict()
        return state

    def save_model(self, epoch: int, rank1, save_dir: str, is_best: bool = False) -> Path:
        """Atomic, ``weights_only``-loadable replacement of torchreid's ``save_model`` (rank 0 writes)."""
        if not distributed.is_main_process():
            return ckpt.checkpoint_path(save_dir, epoch + 1)
        path = ckpt.save_checkpoint(self.checkpoint_state(epoch + 1, rank1), ckpt.checkpoint_path(save_dir, epoch + 1))
        print(f"Checkpoint saved to {path}")
        self.saved_weights = path
        return path

    def resume(self, path: str | Path) -> int:
        """Restore model, optimiser, scheduler, scaler, centres, sampler and RNG; return the epoch to start from.

        A mid-epoch (interrupt) checkpoint continues that epoch at the next batch, in the same order.
        """
        state = ckpt.load_checkpoint(ckpt.latest_checkpoint(path))
        ckpt.load_model_state(self.bare_model, state, path, fix=RESUME_FIX)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.criterion_center is not None and "center" in state:
            self.criterion_center.load_state_dict(state["center"])
        sampler = self.train_sampler()
        if "sampler" in state and sampler is not None:
            sampler.load_state(state["sampler"], state.get("rng"))  # RNG restored when its batches start
            print(f"=> Continuing epoch {int(state['epoch']) + 1} at sample {int(state['sampler']['position'])}")
        elif state.get("rng") is not None:
            rng.restore(state["rng"])
        self.saved_weights = ckpt.latest_checkpoint(path)
        return int(state["epoch"])


class _NullWriter:
    """Stands in for tensorboard's ``SummaryWriter`` on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
