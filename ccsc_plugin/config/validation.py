"""Which values can train: numeric ranges, choices, and checks across keys, all reported at once.

Every choice list is the one its user owns (the sampler module's samplers, the engine's AMP modes...), so a
value the recipe check accepts is one the code can run, and the message lists exactly those values.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

from yacs.config import CfgNode as CN

from ccsc_plugin._torchreid import submodule
from ccsc_plugin.config.defaults import flat_keys
from ccsc_plugin.data.integrity import ON_BAD_IMAGE
from ccsc_plugin.data.samplers import IDENTITY_SAMPLERS, SAMPLERS
from ccsc_plugin.engine.distributed import DIST_BACKENDS
from ccsc_plugin.engine.precision import AMP_MODES
from ccsc_plugin.engine.schedule import LR_SCHEDULERS
from ccsc_plugin.errors import RecipeError
from ccsc_plugin.evaluation.metrics import DIST_METRICS
from ccsc_plugin.losses.terms import LOSS_TERMS, WEIGHT_BOUNDS, nothing_trains
from ccsc_plugin.models import CCSC_SUFFIX, DEFAULT_NECK, NECK_FEATS, NECKS, is_ccsc_model, model_name_problem

OPTIMIZERS = tuple(submodule("optim.optimizer").AVAI_OPTIMS)  # what torchreid.optim.build_optimizer builds


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key, printed as a user reads them: ``>= 0``, ``> 0``, ``in [0, 1)``."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            text = f"{'>' if self.low_open else '>='} {self.low}"
        else:
            text = f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        return f"{text} ({self.note})" if self.note else text


AT_LEAST_0, AT_LEAST_1, POSITIVE = Range(0), Range(1), Range(0, low_open=True)
SEEDS = Range(0, 2**32 - 1)  # numpy's seed range (torchreid's set_random_seed seeds numpy too)

# Every numeric key with the values that can train; a list key's items must all be in its range. The loss terms'
# keys come from their table (loss_ranges).
RANGES: dict[str, Range] = {
    "data.workers": Range(0, note="0 = load in the training process"),
    "data.cache_max_mb": Range(0, low_open=True, note="MB of decoded crops to keep, 1 MB = 2**20 bytes"),
    "data.split_id": AT_LEAST_0,
    "data.csv.val_ids": Range(0, note="0 = no validation split"),
    "data.height": AT_LEAST_1,
    "data.width": AT_LEAST_1,
    "data.norm_std": POSITIVE,
    "sampler.num_instances": AT_LEAST_1,
    "train.lr": POSITIVE,
    "train.weight_decay": AT_LEAST_0,
    "train.max_epoch": AT_LEAST_1,
    "train.start_epoch": AT_LEAST_0,
    "train.batch_size": AT_LEAST_1,
    "train.fixbase_epoch": AT_LEAST_0,
    "train.stepsize": AT_LEAST_1,
    "train.gamma": Range(0, 1, low_open=True),
    "train.warmup_epochs": AT_LEAST_0,
    "train.warmup_start_lr": POSITIVE,
    "train.print_freq": AT_LEAST_1,
    "train.seed": SEEDS,
    "adam.beta1": Range(0, 1, high_open=True),
    "adam.beta2": Range(0, 1, high_open=True),
    "test.batch_size": AT_LEAST_1,
    "test.ranks": AT_LEAST_1,
    "test.start_eval": AT_LEAST_0,
    "test.rerank_k1": AT_LEAST_1,
    "test.rerank_k2": AT_LEAST_1,
    "test.rerank_lambda": Range(0, 1, note="0 = the Jaccard distance alone, 1 = the original distance alone"),
    "test.rerank_max_mb": POSITIVE,
}
# Each key's values, as the module that uses the key defines them.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.neck": NECKS,
    "data.on_bad_image": ON_BAD_IMAGE,
    "sampler.train_sampler": SAMPLERS,
    "train.optim": OPTIMIZERS,
    "train.lr_scheduler": LR_SCHEDULERS,
    "train.amp": AMP_MODES,
    "train.dist_backend": DIST_BACKENDS,
    "test.dist_metric": DIST_METRICS,
    "test.neck_feat": NECK_FEATS,
}
RGB_KEYS = ("data.norm_mean", "data.norm_std")


def loss_ranges() -> dict[str, Range]:
    """Each loss term's weight (>= 0) and the ranges its entry of ``losses.terms.LOSS_TERMS`` gives its other keys."""
    return {
        f"loss.{term.section}.{key}": Range(low, high)
        for term in LOSS_TERMS.values()
        for key, (low, high) in {"weight": WEIGHT_BOUNDS, **term.ranges}.items()
    }


def _value(cfg: CN, key: str) -> Any:
    return functools.reduce(lambda node, part: node[part], key.split("."), cfg)


def _key_problem(key: str, value: Any, ranges: dict[str, Range]) -> str | None:
    """What is wrong with one key's value on its own (non-finite, out of range, not a choice), if anything."""
    items = value if isinstance(value, list) else [value]
    must = f"{key} must hold" if isinstance(value, list) else f"{key} must be"
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        return f"{must} {'finite numbers' if isinstance(value, list) else 'a finite number'}, got {value!r}."
    if key in ranges and not all(item in ranges[key] for item in items):
        return f"{must} {'values ' if isinstance(value, list) else ''}{ranges[key]}, got {value!r}."
    if key in CHOICES and value not in CHOICES[key]:
        return f"{key} must be one of {', '.join(CHOICES[key])}; got {value!r}."
    return None


def _relation_problems(cfg: CN) -> list[str]:
    """Checks across keys, or of a list's shape."""
    problems = []
    k = cfg.sampler.num_instances
    if k > 0 and cfg.train.batch_size % k and cfg.sampler.train_sampler in IDENTITY_SAMPLERS:
        problems.append(
            f"train.batch_size ({cfg.train.batch_size}) must be divisible by sampler.num_instances "
            f"({cfg.sampler.num_instances}): a batch is P identities x K images."
        )
    for key in ("warmup_epochs", "start_epoch"):
        if cfg.train.max_epoch > 0 and cfg.train[key] >= cfg.train.max_epoch:
            problems.append(
                f"train.{key} ({cfg.train[key]}) must be below train.max_epoch ({cfg.train.max_epoch}); "
                "raise train.max_epoch or lower it."
            )
    stepsize = list(cfg.train.stepsize)
    if any(later <= earlier for earlier, later in itertools.pairwise(stepsize)):
        problems.append(f"train.stepsize must be increasing epochs, got {stepsize} (e.g. [35, 55]).")
    problems += [
        f"{key} must hold 3 values (R, G, B), got {_value(cfg, key)!r}."
        for key in RGB_KEYS
        if len(_value(cfg, key)) != 3
    ]
    if cfg.test.eval_freq != -1 and cfg.test.eval_freq < 1:
        problems.append(f"test.eval_freq must be -1 (evaluate at the end only) or >= 1, got {cfg.test.eval_freq}.")
    problems += _model_problems(cfg.model)
    if problem := nothing_trains(cfg.loss):
        problems.append(problem)
    uses_csv = "csv" in list(cfg.data.sources) + list(cfg.data.targets)
    if uses_csv and not cfg.data.csv.path:
        problems.append("data.csv.path must name a CSV file (path,pid,camid[,split]) when a dataset is 'csv'.")
    return problems + _csv_test_set_problems(cfg)


def _csv_test_set_problems(cfg: CN) -> list[str]:
    """``data.csv.test_path`` and ``data.csv.val_ids`` each name the csv test set: one at most, and it is scored."""
    csv_node = cfg.data.csv
    if csv_node.test_path and csv_node.val_ids:
        return [
            f"data.csv.test_path ({csv_node.test_path}) and data.csv.val_ids ({csv_node.val_ids}) both name the csv "
            "test set: keep data.csv.test_path to test on other people, or data.csv.val_ids (with "
            "data.csv.test_path='') to validate on the last identities of data.csv.path."
        ]
    targets = list(cfg.data.targets) or list(cfg.data.sources)
    if csv_node.val_ids and "csv" in cfg.data.sources and "csv" not in targets:
        return [
            f"data.csv.val_ids ({csv_node.val_ids}) holds identities out of training, but no target is 'csv' "
            f"(data.targets={targets}), so nothing would score them: add csv to data.targets, or set "
            "data.csv.val_ids=0."
        ]
    return []


def _model_problems(model: CN) -> list[str]:
    """model.name must name a model (``<timm CNN>_ccsc`` or torchreid's); neck and pretrained_path are the
    ``_ccsc`` models' keys."""
    if problem := model_name_problem(model.name):
        return [problem]
    if is_ccsc_model(model.name):
        return []
    problems = []
    if model.neck != DEFAULT_NECK:
        problems.append(
            f"model.neck applies to the <arch>{CCSC_SUFFIX} models only; torchreid's {model.name} has its own head: "
            f"drop model.neck={model.neck} or set model.name to a {CCSC_SUFFIX} model (resnet50_ccsc: the paper's)."
        )
    if model.pretrained_path:
        problems.append(
            f"model.pretrained_path applies to the <arch>{CCSC_SUFFIX} models only; torchreid's {model.name} has its "
            "own backbone and ImageNet weights (model.pretrained): drop model.pretrained_path, or start from a "
            "ccsc-reid run with model.load_weights=RUN."
        )
    return problems


def validate(cfg: CN) -> None:
    """Reject impossible values before any training starts; each problem is listed once, naming the key."""
    keys = [key for key in flat_keys(cfg) if not isinstance(_value(cfg, key), CN)]
    ranges = {**RANGES, **loss_ranges()}
    problems = [problem for key in keys if (problem := _key_problem(key, _value(cfg, key), ranges)) is not None]
    problems += _relation_problems(cfg)
    if problems:
        raise RecipeError("Invalid recipe:\n  " + "\n  ".join(problems))
