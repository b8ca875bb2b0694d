"""``ImageCCSCEngine``: torchreid's ``Engine`` with L = w_id L_id + lambda L_ccsc (+ w_t L_tri) (+ w_c L_center).

Every row of the paper's tables runs through this one engine: the softmax baseline is lambda = 0,
"+ triplet" sets the triplet weight (batch-hard, mined without a loop: ``losses.triplet``), and so on. Each
configured term is logged by name. This file holds the losses and the training step; the run loop (checkpoints,
resume, stop on a signal) is :mod:`.training_loop`, the evaluation :mod:`.evaluation_hooks`, the autocast
precision :mod:`.precision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
from yacs.config import CfgNode as CN

from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.engine import distributed, precision
from ccsc_plugin.engine.evaluation_hooks import EvaluationHooks
from ccsc_plugin.engine.nonfinite import all_finite, non_finite_loss
from ccsc_plugin.engine.training_loop import TrainingLoop
from ccsc_plugin.evaluation.rerank import RerankSettings
from ccsc_plugin.losses import BatchHardTripletLoss, CCSCLoss, CenterLoss, CrossEntropyLoss
from ccsc_plugin.models import feature_dim


def default_loss_section() -> CN:
    """The ``loss`` section with the paper's values (those of ``ccsc_plugin.config.get_default_config``)."""
    return CN(
        {
            "softmax": {"weight": 1.0, "label_smooth": False},
            "ccsc": {"weight": 1.5, "cross_camera": True, "include_self": True},
            "triplet": {"weight": 0.0, "margin": 0.3},
            "center": {"weight": 0.0, "alpha": 0.5},
            "gather_features": False,
        }
    )


def default_train_section() -> CN:
    """The keys of the ``train`` section the engine reads, with the recipes' defaults."""
    return CN({"amp": "off", "channels_last": True, "compile": False})


def default_test_section() -> CN:
    """The keys of the ``test`` section the engine reads (flip, re-ranking's parameters), with the recipes' defaults."""
    rerank = RerankSettings()
    return CN(
        {
            "flip": False,
            "rerank_k1": rerank.k1,
            "rerank_k2": rerank.k2,
            "rerank_lambda": rerank.lambda_value,
            "rerank_max_mb": rerank.max_mb,
        }
    )


def over_defaults(defaults: CN, given: Mapping[str, Any] | None, section: str, strict: bool = True) -> CN:
    """``given`` (a section or a part of it, e.g. ``{"center": {"weight": 0.1}}``) over ``defaults``.

    With ``strict`` a key ``defaults`` lacks is an error; otherwise it is ignored (``train`` also holds the
    optimiser's and the loop's keys, which the engine does not read).
    """
    for key, value in (given or {}).items():
        if key not in defaults:
            if strict:
                raise KeyError(f"{section}.{key} is not a key of the engine's {section} section: {sorted(defaults)}")
        elif isinstance(defaults[key], CN):
            if not isinstance(value, Mapping):
                raise TypeError(f"{section}.{key} is a section ({sorted(defaults[key])}), got {value!r}")
            over_defaults(defaults[key], value, f"{section}.{key}", strict)
        else:
            defaults[key] = value
    return defaults


class ImageCCSCEngine(TrainingLoop, EvaluationHooks, torchreid.engine.Engine):
    """Image re-ID engine for the CCSC paper; the model must return ``(logits, features)`` in train mode.

    Args:
        datamanager: a torchreid ``ImageDataManager`` (batches carry ``camid``).
        model, optimizer, scheduler, use_gpu: as for torchreid's ``ImageSoftmaxEngine``.
        loss: the recipe's ``loss`` section, or the part of it that differs from ``default_loss_section()``
            (the paper's CCSC: softmax + 1.5 CCSC): ``softmax.{weight,label_smooth}`` (ID term),
            ``ccsc.{weight,cross_camera,include_self}`` (``weight=0`` is the baseline),
            ``triplet.{weight,margin}`` (torchreid's hard-mining triplet), ``center.{weight,alpha}`` (Wen et al.'s
            centre loss and its centre update rate), ``gather_features`` (under DDP, the CCSC and triplet terms
            over the features of all ranks, all-gathered with gradient, instead of this rank's batch).
        train: the recipe's ``train`` section (or part of it); the engine reads ``amp`` (``"off"``, ``"bf16"``
            or ``"fp16"`` autocast, fp16 with a grad scaler; ``"auto"``: bf16 where the hardware has it natively,
            see :mod:`.precision`), ``channels_last`` (the model's memory format)
            and ``compile`` (``torch.compile``: ``self.model`` stays the plain module, so checkpoints keep
            their keys; the compiled one is ``self.forward_model``).
        test: the recipe's ``test`` section (or part of it); the engine reads ``flip`` (evaluation features are the
            mean of each image's and its mirror's, :mod:`ccsc_plugin.models.flip`) and re-ranking's
            ``rerank_k1``, ``rerank_k2``, ``rerank_lambda`` and ``rerank_max_mb``, used when ``run``/``test`` get
            ``rerank=True``.
        checkpoint_extras: plain values stored in every checkpoint (config text, num_classes...).
        ddp: wrap the model in ``DistributedDataParallel`` (the process group must be initialised);
            only rank 0 then evaluates and writes checkpoints and the tensorboard log.

    By hand, like a torchreid engine::

        engine = ImageCCSCEngine(datamanager, model, optimizer, scheduler, loss={"triplet": {"weight": 1.0}})
    """

    def __init__(
        self,
        datamanager,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler=None,
        use_gpu: bool = True,
        loss: Mapping[str, Any] | None = None,
        train: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        checkpoint_extras: dict[str, Any] | None = None,
        ddp: bool = False,
    ) -> None:
        super().__init__(datamanager, use_gpu)
        loss = over_defaults(default_loss_section(), loss, "loss")
        train = over_defaults(default_train_section(), train, "train", strict=False)
        test = over_defaults(default_test_section(), test, "test", strict=False)
        self.rerank_settings = RerankSettings(test.rerank_k1, test.rerank_k2, test.rerank_lambda, test.rerank_max_mb)
        self.test_flip = bool(test.flip)
        self.device = torch.device("cuda" if self.use_gpu else "cpu")
        self.memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        if ddp:
            self.model = distributed.wrap_model(self.model, self.device)
        self.forward_model = torch.compile(self.model) if train.compile else self.model
        self.gather_features = loss.gather_features
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.register_model("model", self.model, optimizer, scheduler)
        self.precision = precision.resolve(train.amp, self.device)
        self.amp_dtype = self.precision.dtype
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.used == "fp16")
        if train.amp == "auto":
            print(f"=> train.amp=auto: {self.precision.used} ({self.precision.reason})")
        self.checkpoint_extras = dict(checkpoint_extras or {})
        self.test_results: dict[str, dict[str, Any]] = {}  # filled by each evaluation (``EvaluationHooks``)
        self._build_criteria(loss)

    def _build_criteria(self, loss: CN) -> None:
        """The loss terms and their weights, from the ``loss`` section."""
        num_classes = self.datamanager.num_train_pids
        self.weights = {
            "id": loss.softmax.weight,
            "ccsc": loss.ccsc.weight,
            "triplet": loss.triplet.weight,
            "center": loss.center.weight,
        }
        self.criterion_id = CrossEntropyLoss(
            num_classes=num_classes, use_gpu=self.use_gpu, label_smooth=loss.softmax.label_smooth
        )
        self.criterion_ccsc = CCSCLoss(cross_camera=loss.ccsc.cross_camera, include_self=loss.ccsc.include_self)
        self.criterion_triplet = BatchHardTripletLoss(margin=loss.triplet.margin)
        self.criterion_center = None
        if loss.center.weight > 0:  # the centres have the size of the features they pull
            dim = feature_dim(self.bare_model, self.datamanager.height, self.datamanager.width)
            self.criterion_center = CenterLoss(num_classes, dim, alpha=loss.center.alpha).to(self.device)

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
                "(the <arch>_ccsc models) or loss='triplet' (torchreid's zoo models)."
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
        self._stop_training_if_signalled()  # after the step: the resumable checkpoint holds it
        return summary
