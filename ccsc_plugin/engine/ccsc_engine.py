"""``ImageCCSCEngine``: torchreid's ``Engine`` with L = sum of w_t L_t over the active loss terms t.

Every row of the paper's tables runs through this one engine: the terms are the rows of the table
:data:`ccsc_plugin.losses.terms.LOSS_TERMS` (ID softmax, CCSC, batch-hard triplet, centre loss, and any a plugin
registers) whose weight is > 0; the softmax baseline is the CCSC weight lambda = 0, "+ triplet" sets the triplet
weight, and so on. Each active term is logged by name (``loss_<name>``). This file holds the training step; the run
loop (checkpoints, resume, stop on a signal) is :mod:`.training_loop`, the evaluation :mod:`.evaluation_hooks`, the
autocast precision :mod:`.precision`. A recipe's keys reach the engine's arguments in one place:
``ccsc_plugin.pipeline.engine_args``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.engine import distributed, precision
from ccsc_plugin.engine.evaluation_hooks import EvaluationHooks
from ccsc_plugin.engine.nonfinite import all_finite, non_finite_loss
from ccsc_plugin.engine.training_loop import TrainingLoop
from ccsc_plugin.evaluation.rerank import RerankSettings
from ccsc_plugin.losses.terms import ActiveTerm, LossContext, build_active_terms, loss_sections
from ccsc_plugin.models import feature_dim


class ImageCCSCEngine(TrainingLoop, EvaluationHooks, torchreid.engine.Engine):
    """Image re-ID engine for the CCSC paper; the model must return ``(logits, features)`` in train mode.

    Args:
        datamanager: a torchreid ``ImageDataManager`` (batches carry ``camid``).
        model, optimizer, scheduler, use_gpu: as for torchreid's ``ImageSoftmaxEngine``.
        losses: the loss terms' sections by name (a recipe's ``loss`` sections, see ``losses.terms.LOSS_TERMS``),
            each key given over its term's default: e.g. ``{"triplet": {"weight": 1.0}}`` adds the triplet term to
            the paper's softmax + 1.5 CCSC (all defaults: ``None``). A term trains when its ``weight`` is > 0; a
            section or key no term has is an error.
        gather_features: under DDP, the pair terms (CCSC, triplet) over the features of all ranks, all-gathered
            with gradient, instead of this rank's batch.
        amp: ``"off"``, ``"bf16"`` or ``"fp16"`` autocast (fp16 with a grad scaler); ``"auto"``: bf16 where the
            hardware has it natively (:mod:`.precision`).
        channels_last: the model's memory format.
        compile: ``torch.compile`` the model; ``self.model`` stays the plain module, so checkpoints keep their keys
            (the compiled one is ``self.forward_model``).
        test_flip: evaluation features are the mean of each image's and its mirror's (:mod:`ccsc_plugin.models.flip`).
        rerank: re-ranking's parameters (default: the paper's), used when ``run``/``test`` get ``rerank=True``.
        checkpoint_extras: plain values stored in every checkpoint (config text, num_classes...).
        ddp: wrap the model in ``DistributedDataParallel`` (the process group must be initialised);
            only rank 0 then evaluates and writes checkpoints and the tensorboard log.

    By hand, like a torchreid engine::

        engine = ImageCCSCEngine(datamanager, model, optimizer, scheduler, losses={"triplet": {"weight": 1.0}})
    """

    def __init__(
        self,
        datamanager,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        use_gpu: bool = True,
        losses: Mapping[str, Mapping[str, Any]] | None = None,
        gather_features: bool = False,
        amp: str = "off",
        channels_last: bool = True,
        compile: bool = False,
        test_flip: bool = False,
        rerank: RerankSettings | None = None,
        checkpoint_extras: dict[str, Any] | None = None,
        ddp: bool = False,
    ) -> None:
        super().__init__(datamanager, use_gpu)
        self.rerank_settings = rerank or RerankSettings()
        self.test_flip = bool(test_flip)
        self.device = torch.device("cuda" if self.use_gpu else "cpu")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        if ddp:
            self.model = distributed.wrap_model(self.model, self.device)
        self.forward_model = torch.compile(self.model) if compile else self.model
        self.gather_features = bool(gather_features)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.register_model("model", self.model, optimizer, scheduler)
        self.precision = precision.resolve(amp, self.device)
        self.amp_dtype = self.precision.dtype
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.used == "fp16")
        if amp == "auto":
            print(f"=> train.amp=auto: {self.precision.used} ({self.precision.reason})")
        self.checkpoint_extras = dict(checkpoint_extras or {})
        self.test_results: dict[str, dict[str, Any]] = {}  # filled by each evaluation (``EvaluationHooks``)
        self.loss_terms: dict[str, ActiveTerm] = self._build_loss_terms(losses)

    def _build_loss_terms(self, losses: Mapping[str, Mapping[str, Any]] | None) -> dict[str, ActiveTerm]:
        """The terms with weight > 0, built from their sections, on the engine's device."""
        context = LossContext(
            num_classes=self.datamanager.num_train_pids,
            feature_dim=lambda: feature_dim(self.bare_model, self.datamanager.height, self.datamanager.width),
            use_gpu=self.use_gpu,
        )
        terms = build_active_terms(loss_sections(losses), context)
        for active in terms.values():
            active.module.to(self.device)
        return terms

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
        """Each active term (weight > 0, the ID term included: a weight-0 term is neither built nor computed),
        unweighted, on float32 inputs; with ``gather_features`` the gathered terms see every rank's batch."""
        batch = {"logits": logits.float(), "features": features.float(), "pids": pids, "camids": camids}
        everyone = batch
        if self.gather_features and any(active.term.gathered for active in self.loss_terms.values()):
            everyone = {
                **batch,
                "features": distributed.all_gather_with_grad(batch["features"]),
                "pids": distributed.all_gather(pids),
                "camids": distributed.all_gather(camids),
            }
        return {
            name: active.module(*active.term.arguments(everyone if active.term.gathered else batch))
            for name, active in self.loss_terms.items()
        }

    def update_loss_terms(self, features: torch.Tensor, pids: torch.Tensor) -> None:
        """After the optimiser step: each term's update (the centres) with every rank's features, so ranks agree."""
        updating = [active for active in self.loss_terms.values() if active.term.update is not None]
        if updating:
            features, pids = distributed.all_gather(features.detach()), distributed.all_gather(pids)
        for active in updating:
            active.term.update(active.module, features, pids)

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
                "(the <arch>_ccsc models) or loss='triplet' (torchreid's zoo models)."
            )
        logits, features = outputs
        terms = self.compute_losses(logits, features, pids, camids)
        total = sum(self.loss_terms[name].weight * value for name, value in terms.items())

        summary = {f"loss_{name}": value.item() for name, value in terms.items()}
        summary["loss"] = total.item()
        if not all_finite(summary):  # stop before the step: the weights (and any checkpoint) stay good
            raise non_finite_loss(summary, self.where(), self.last_checkpoint())

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.update_loss_terms(features, pids)

        summary["acc"] = torchreid.metrics.accuracy(logits.float(), pids)[0].item()
        self._stop_training_if_signalled()  # after the step: the resumable checkpoint holds it
        return summary
