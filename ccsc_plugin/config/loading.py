"""Recipes: torchreid's lowercase yacs sections plus a ``loss`` section, loaded from YAML.

A recipe may name ``_base_`` (a path, or a list of paths, relative to the recipe file); its keys
are merged over the base. Keys are strict: an unknown key is an error naming it and the nearest
valid key. ``--set section.key=value`` overrides apply last. Defaults are the paper's Sec. 4.2.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode as CN

from ccsc_plugin._torchreid import model_factory
from ccsc_plugin.errors import RecipeError, read_utf8
from ccsc_plugin.models.ccsc_resnet import BACKBONES, DEFAULT_BACKBONE, MODEL_NAME

BASE_KEY = "_base_"
# torchreid's own sampler names (data/sampler.py AVAI_SAMPLERS); the plugin adds CameraAwareIdentitySampler.
TORCHREID_SAMPLERS = (
    "RandomIdentitySampler",
    "SequentialSampler",
    "RandomSampler",
    "RandomDomainSampler",
    "RandomDatasetSampler",
)
TORCHREID_OPTIMS = ("adam", "amsgrad", "sgd", "rmsprop", "radam")  # optim/optimizer.py AVAI_OPTIMS
LR_SCHEDULERS = ("warmup_multistep", "single_step", "multi_step", "cosine")  # the plugin's, then torchreid's AVAI_SCH


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false are bools, so ``amp: off`` stays the string "off"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML 1.2; a syntax error is a RecipeError naming ``origin`` and the line and column."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RecipeError(f"{origin}{where}: invalid YAML ({problem}). Fix the syntax there.") from None


def get_default_config() -> CN:
    """All valid keys with the paper's settings (ResNet-50, 384x128, P=16 x K=4, Adam, warm-up)."""
    cfg = CN()

    cfg.experiment = CN()
    cfg.experiment.name = ""  # run name; the output folder defaults to data.save_dir
    cfg.experiment.method = ""  # e.g. "softmax+ccsc"; written to result.json
    cfg.experiment.paper_cell = ""  # e.g. "Table 1 / Market-1501 / softmax+CCSC"
    cfg.experiment.notes = ""

    cfg.model = CN()
    cfg.model.name = MODEL_NAME  # the paper's model, or any of torchreid's (osnet_x0_25, resnet50_fc512, ...)
    cfg.model.backbone = DEFAULT_BACKBONE  # resnet50_ccsc's timm ResNet (model.BACKBONES)
    cfg.model.pretrained = True  # ImageNet init (paper)
    cfg.model.pretrained_path = ""  # local ImageNet weights; empty = timm hub
    cfg.model.allow_random_init = False  # fall back to random init when no weights can be had
    cfg.model.load_weights = ""  # start from a trained checkpoint (weights only)
    cfg.model.resume = ""  # resume a run: checkpoint file or run folder

    cfg.data = CN()
    cfg.data.type = "image"
    cfg.data.root = "reid-data"
    cfg.data.sources = ["market1501"]
    cfg.data.targets = []  # empty = same as sources
    cfg.data.workers = 4  # DataLoader worker processes (0 = load in the training process)
    cfg.data.pin_memory = True  # pinned host memory for faster copies; used only when training on a GPU
    cfg.data.persistent_workers = True  # keep workers alive between epochs; used only when data.workers > 0
    cfg.data.split_id = 0
    cfg.data.height = 384
    cfg.data.width = 128
    cfg.data.combineall = False
    cfg.data.transforms = ["random_flip", "random_erase"]
    cfg.data.norm_mean = [0.485, 0.456, 0.406]
    cfg.data.norm_std = [0.229, 0.224, 0.225]
    cfg.data.save_dir = "log/run"
    cfg.data.cuhk03_labeled = False
    cfg.data.cuhk03_classic_split = False  # False = the 767/700 protocol
    cfg.data.market1501_500k = False
    cfg.data.on_bad_image = "skip"  # unreadable image: skip (warn, count in result.json) | error (stop before training)
    cfg.data.synthcam = CN()  # size of the generated set (data.sources: [synthcam])
    cfg.data.synthcam.num_train_ids = 40
    cfg.data.synthcam.num_test_ids = 20
    cfg.data.synthcam.num_cams = 4
    cfg.data.synthcam.images_per_cam = 3
    cfg.data.synthcam.height = 128
    cfg.data.synthcam.width = 64
    cfg.data.synthcam.seed = 0
    cfg.data.csv = CN()  # any labelled folder (data.sources: [csv]); see ccsc_plugin/datasets/csv_dataset.py
    cfg.data.csv.path = ""  # CSV with columns path,pid,camid[,split]; relative image paths resolve against it
    cfg.data.csv.test_path = ""  # a second CSV as the test set (split column, else 1 query per id+camera); path trains
    cfg.data.csv.val_ids = 0  # > 0: the last N identities (highest pids) of path's training rows are the test set

    cfg.sampler = CN()
    cfg.sampler.train_sampler = "RandomIdentitySampler"  # a torchreid sampler or CameraAwareIdentitySampler
    cfg.sampler.num_instances = 4  # K

    cfg.train = CN()
    cfg.train.optim = "adam"
    cfg.train.lr = 3.5e-4
    cfg.train.weight_decay = 5e-4
    cfg.train.max_epoch = 100
    cfg.train.start_epoch = 0
    cfg.train.batch_size = 64  # P x K = 16 x 4
    cfg.train.fixbase_epoch = 0
    cfg.train.open_layers = ["classifier"]
    cfg.train.lr_scheduler = "warmup_multistep"
    cfg.train.stepsize = [35, 55]
    cfg.train.gamma = 0.1
    cfg.train.warmup_epochs = 5
    cfg.train.warmup_start_lr = 3.5e-5
    cfg.train.print_freq = 20
    cfg.train.seed = 1
    cfg.train.amp = "off"  # off | bf16 | fp16
    cfg.train.channels_last = True  # faster on the CPU for ResNet-50 and ResNet-18 (benchmarks/bench_training.py)
    cfg.train.compile = False  # torch.compile the model (first steps compile: pays off on long runs)
    cfg.train.dist_backend = "auto"  # under torchrun: auto (nccl on GPUs, gloo on CPU) | gloo | nccl

    cfg.adam = CN()
    cfg.adam.beta1 = 0.9
    cfg.adam.beta2 = 0.999

    cfg.loss = CN()
    cfg.loss.softmax = CN()
    cfg.loss.softmax.weight = 1.0
    cfg.loss.softmax.label_smooth = False  # the paper uses plain softmax cross-entropy
    cfg.loss.ccsc = CN()
    cfg.loss.ccsc.weight = 1.5  # lambda (paper Sec. 4.2)
    cfg.loss.ccsc.cross_camera = True  # False = Table 2's "without constraint"
    cfg.loss.ccsc.include_self = True  # only used when cross_camera=False (Algorithm 1 keeps i = j)
    cfg.loss.triplet = CN()
    cfg.loss.triplet.weight = 0.0
    cfg.loss.triplet.margin = 0.3
    cfg.loss.center = CN()
    cfg.loss.center.weight = 0.0
    cfg.loss.center.alpha = 0.5
    cfg.loss.gather_features = False  # under DDP: CCSC and triplet terms over all ranks' features

    cfg.test = CN()
    cfg.test.batch_size = 128
    cfg.test.dist_metric = "euclidean"
    cfg.test.normalize_feature = False
    cfg.test.ranks = [1, 5, 10, 20]
    cfg.test.eval_freq = -1
    cfg.test.start_eval = 0
    cfg.test.rerank = False

    cfg.use_gpu = True  # used only when CUDA is available
    return cfg


def _flat_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, CN):
            keys.extend(_flat_keys(value, full + "."))
    return keys


def _nearest_key(full_key: str, valid: list[str]) -> str:
    """The valid key closest to ``full_key``: same leaf name first (a misplaced key), then spelling."""
    leaf = full_key.rsplit(".", 1)[-1]
    same_leaf = [key for key in valid if key.rsplit(".", 1)[-1] == leaf]
    return (same_leaf or difflib.get_close_matches(full_key, valid, n=1, cutoff=0.0) or ["?"])[0]


def _coerce(full_key: str, value: Any, default: Any, origin: str) -> Any:
    """Check ``value`` against the default's type (int -> float allowed, tuple -> list)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        value = [value] if isinstance(value, str) and all(isinstance(d, str) for d in default) else value
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
        if ok and default:
            return _coerce_items(full_key, value, default[0], origin)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise RecipeError(
            f"{origin}: key '{full_key}' expects {type(default).__name__} (default {default!r}), "
            f"got {type(value).__name__} {value!r}."
        )
    return value


def _coerce_items(full_key: str, values: list, example: Any, origin: str) -> list:
    """Each item of a list key checked against the type of the default's items (int -> float allowed)."""
    try:
        return [_coerce(full_key, item, example, origin) for item in values]
    except RecipeError:
        raise RecipeError(
            f"{origin}: key '{full_key}' expects a list of {type(example).__name__} (e.g. [{example!r}]), "
            f"got {values!r}."
        ) from None


def merge_strict(cfg: CN, data: Mapping[str, Any], origin: str) -> None:
    """Merge a nested mapping into ``cfg``; unknown keys and wrong types raise RecipeError."""
    valid = _flat_keys(cfg)

    def merge(node: CN, values: Mapping[str, Any], prefix: str) -> None:
        for key, value in values.items():
            full = f"{prefix}{key}"
            if key not in node:
                raise RecipeError(f"{origin}: unknown key '{full}'. Did you mean '{_nearest_key(full, valid)}'?")
            if isinstance(node[key], CN):
                if not isinstance(value, Mapping):
                    raise RecipeError(f"{origin}: '{full}' is a section; give it a mapping of keys, not {value!r}.")
                merge(node[key], value, full + ".")
            else:
                node[key] = _coerce(full, value, node[key], origin)

    merge(cfg, data, "")


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML recipe and its ``_base_`` chain into one nested dict (child keys win)."""
    path = Path(path).resolve()
    if path in _seen:
        raise RecipeError(f"{path}: _base_ cycle through {' -> '.join(str(p) for p in _seen)}.")
    if not path.is_file():
        raise RecipeError(f"Recipe {path} does not exist. List the shipped ones with `ccsc-reid recipes`.")
    data = parse_yaml(read_utf8(path, RecipeError), str(path)) or {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of sections, got {type(data).__name__}.")
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise RecipeError(
            f"{path}: {BASE_KEY} must be a path or a list of paths (relative to this recipe, e.g. "
            f"'{BASE_KEY}: ../base.yaml'), got {bases!r}."
        )
    merged: dict[str, Any] = {}
    for base in bases:
        _deep_update(merged, read_recipe(path.parent / base, _seen + (path,)))
    _deep_update(merged, data)
    return merged


def _deep_update(target: dict, source: Mapping) -> None:
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def parse_override(item: str) -> dict[str, Any]:
    """``'train.lr=1e-3'`` -> ``{'train': {'lr': 0.001}}`` (the value is parsed as YAML)."""
    if "=" not in item:
        raise RecipeError(f"--set expects section.key=value, got {item!r}.")
    key, raw = item.split("=", 1)
    value = parse_yaml(raw, f"--set {item}") if raw.strip() else ""
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def load_config(recipe: str | Path | None = None, overrides: Iterable[str] = ()) -> CN:
    """Defaults, then the recipe (with its bases), then ``--set`` overrides; checked and frozen."""
    cfg = get_default_config()
    if recipe is not None:
        merge_strict(cfg, read_recipe(recipe), origin=str(recipe))
    for item in overrides:
        merge_strict(cfg, parse_override(item), origin=f"--set {item}")
    validate(cfg)
    cfg.freeze()
    return cfg


def config_from_mapping(data: Mapping[str, Any], origin: str) -> CN:
    """A whole recipe given as a mapping (a parsed stored recipe): defaults, then ``data``; checked and frozen.

    The same strict keys and validation as :func:`load_config`, without ``_base_`` or overrides.
    """
    cfg = get_default_config()
    merge_strict(cfg, data, origin=origin)
    validate(cfg)
    cfg.freeze()
    return cfg


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

# Every numeric key with the values that can train; a list key's items must all be in its range.
RANGES: dict[str, Range] = {
    "data.workers": Range(0, note="0 = load in the training process"),
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
    "loss.softmax.weight": AT_LEAST_0,
    "loss.ccsc.weight": AT_LEAST_0,
    "loss.triplet.weight": AT_LEAST_0,
    "loss.triplet.margin": AT_LEAST_0,
    "loss.center.weight": AT_LEAST_0,
    "loss.center.alpha": Range(0, 1),
    "test.batch_size": AT_LEAST_1,
    "test.ranks": AT_LEAST_1,
    "test.start_eval": AT_LEAST_0,
}
CHOICES: dict[str, tuple[str, ...]] = {
    "model.backbone": BACKBONES,
    "data.on_bad_image": ("skip", "error"),
    "sampler.train_sampler": (*TORCHREID_SAMPLERS, "CameraAwareIdentitySampler"),
    "train.optim": TORCHREID_OPTIMS,
    "train.lr_scheduler": LR_SCHEDULERS,
    "train.amp": ("off", "bf16", "fp16"),
    "train.dist_backend": ("auto", "gloo", "nccl"),
    "test.dist_metric": ("euclidean", "cosine"),
}
RGB_KEYS = ("data.norm_mean", "data.norm_std")


def _value(cfg: CN, key: str) -> Any:
    return functools.reduce(lambda node, part: node[part], key.split("."), cfg)


def _key_problem(key: str, value: Any) -> str | None:
    """What is wrong with one key's value on its own (non-finite, out of range, not a choice), if anything."""
    items = value if isinstance(value, list) else [value]
    must = f"{key} must hold" if isinstance(value, list) else f"{key} must be"
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        return f"{must} {'finite numbers' if isinstance(value, list) else 'a finite number'}, got {value!r}."
    if key in RANGES and not all(item in RANGES[key] for item in items):
        return f"{must} {'values ' if isinstance(value, list) else ''}{RANGES[key]}, got {value!r}."
    if key in CHOICES and value not in CHOICES[key]:
        return f"{key} must be one of {', '.join(CHOICES[key])}; got {value!r}."
    return None


def _relation_problems(cfg: CN) -> list[str]:
    """Checks across keys, or of a list's shape."""
    problems = []
    k = cfg.sampler.num_instances
    identity_samplers = ("RandomIdentitySampler", "CameraAwareIdentitySampler")
    if k > 0 and cfg.train.batch_size % k and cfg.sampler.train_sampler in identity_samplers:
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
    """model.name must be in torchreid's factory; backbone and pretrained_path are resnet50_ccsc's keys."""
    names = sorted(model_factory())
    if model.name not in names:
        nearest = difflib.get_close_matches(model.name, names, n=3, cutoff=0.0)
        return [
            f"model.name={model.name!r} is not a model torchreid knows; nearest: {', '.join(nearest)} "
            f"(all: torchreid.models.show_avai_models(); the paper's: {MODEL_NAME})."
        ]
    if model.name == MODEL_NAME:
        return []
    own = f"torchreid's {model.name} has its own backbone and ImageNet weights (model.pretrained)"
    problems = []
    if model.backbone != DEFAULT_BACKBONE:
        problems.append(
            f"model.backbone applies to model.name={MODEL_NAME} only; {own}: drop model.backbone={model.backbone} "
            f"or set model.name={MODEL_NAME}."
        )
    if model.pretrained_path:
        problems.append(
            f"model.pretrained_path applies to model.name={MODEL_NAME} only; {own}: drop model.pretrained_path, "
            "or start from a ccsc-reid run with model.load_weights=RUN."
        )
    return problems


def validate(cfg: CN) -> None:
    """Reject impossible values before any training starts; each problem is listed once, naming the key."""
    keys = [key for key in _flat_keys(cfg) if not isinstance(_value(cfg, key), CN)]
    problems = [problem for key in keys if (problem := _key_problem(key, _value(cfg, key))) is not None]
    problems += _relation_problems(cfg)
    if problems:
        raise RecipeError("Invalid recipe:\n  " + "\n  ".join(problems))
