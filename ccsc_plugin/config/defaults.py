"""Every valid recipe key with its default: torchreid's lowercase yacs sections plus ``loss`` and ``experiment``.

The defaults are the paper's Sec. 4.2 settings. Every key is read by the package (``tests/test_config_keys.py``
checks it); keys that were removed are :data:`RETIRED_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yacs.config import CfgNode as CN

from ccsc_plugin.evaluation.rerank import RerankSettings
from ccsc_plugin.losses.terms import loss_sections
from ccsc_plugin.models import CCSC_SUFFIX, DEFAULT_NECK, DEFAULT_NECK_FEAT, PAPER_MODEL

RERANK = RerankSettings()  # the paper's (Zhong et al.) and torchreid's re-ranking parameters

# Keys removed -> why, and what to do instead. A recipe that sets one is an error saying so; the config stored in
# an older checkpoint still loads (see upgraded: model.backbone goes into model.name, the others set nothing).
RETIRED_KEYS: dict[str, str] = {
    "experiment.name": "it set nothing; the run folder is data.save_dir",
    "experiment.notes": "it set nothing; write notes as YAML comments",
    "data.type": "it set nothing; the data are always images",
    "model.backbone": "the network is in the model's name: model.name: resnet18_ccsc, not model.backbone: resnet18",
}


def get_default_config() -> CN:
    """All valid keys with the paper's settings (ResNet-50, 384x128, P=16 x K=4, Adam, warm-up)."""
    cfg = CN()
    cfg.experiment = CN()
    cfg.experiment.method = ""  # e.g. "softmax+ccsc"; written to result.json
    cfg.experiment.paper_cell = ""  # e.g. "Table 1 / Market-1501 / softmax+CCSC"
    cfg.model = _model()
    cfg.data = _data()
    cfg.sampler = CN()
    cfg.sampler.train_sampler = "RandomIdentitySampler"  # a torchreid sampler or CameraAwareIdentitySampler
    cfg.sampler.num_instances = 4  # K
    cfg.train = _train()
    cfg.adam = CN()
    cfg.adam.beta1 = 0.9
    cfg.adam.beta2 = 0.999
    cfg.loss = _loss()
    cfg.test = CN()
    cfg.test.batch_size = 128
    cfg.test.dist_metric = "euclidean"
    cfg.test.normalize_feature = False
    cfg.test.neck_feat = DEFAULT_NECK_FEAT  # model.neck=bnneck's test feature: after (BN, BoT's) | before; else unused
    cfg.test.ranks = [1, 5, 10, 20]
    # average each image's features with its mirror's (fast-reid's TEST.FLIP; models/flip.py): test, extract, the
    # demo's features and ONNX export; twice the forward passes
    cfg.test.flip = False
    cfg.test.eval_freq = -1
    cfg.test.start_eval = 0
    cfg.test.rerank = False  # k-reciprocal re-ranking (Zhong et al. 2017) of every evaluation, equal to torchreid's
    cfg.test.rerank_k1 = RERANK.k1  # its k1 (neighbours), k2 (query expansion) and lambda (weight of the distance)
    cfg.test.rerank_k2 = RERANK.k2
    cfg.test.rerank_lambda = RERANK.lambda_value
    cfg.test.rerank_max_mb = RERANK.max_mb  # refuse a re-ranking that may need more memory (MB = 2**20 bytes)
    cfg.test.use_metric_cuhk03 = False  # CUHK03's classic single-shot CMC (torchreid's use_metric_cuhk03)
    cfg.use_gpu = True  # used only when CUDA is available
    return cfg


def _model() -> CN:
    model = CN()
    # resnet50_ccsc (the paper's), the paper's head on another timm CNN (<timm name>_ccsc: resnet18_ccsc,
    # seresnext50_32x4d_ccsc, efficientnet_b0_ccsc, ...), or any of torchreid's models (osnet_x0_25, resnet50_fc512)
    model.name = PAPER_MODEL
    model.neck = DEFAULT_NECK  # the _ccsc models' head: none (the paper's) | bnneck (BoT: f -> BN -> classifier)
    model.pretrained = True  # ImageNet init (paper)
    model.pretrained_path = ""  # local ImageNet weights of a _ccsc model's timm network; empty = timm hub
    model.allow_random_init = False  # fall back to random init when no weights can be had
    model.load_weights = ""  # start from a trained checkpoint (weights only)
    model.resume = ""  # resume a run: checkpoint file or run folder
    return model


def _data() -> CN:
    data = CN()
    data.root = "reid-data"
    data.sources = ["market1501"]
    data.targets = []  # empty = same as sources
    data.workers = 4  # DataLoader worker processes (0 = load in the training process)
    data.pin_memory = True  # pinned host memory for faster copies; used only when training on a GPU
    data.persistent_workers = True  # keep workers alive between epochs; used only when data.workers > 0
    # Keep every image decoded and resized to height x width in memory (data/image_cache.py): epochs decode no
    # JPEG; identical items and weights. Filled by the up-front image check; forked workers share it.
    data.cache_images = False
    data.cache_max_mb = 4096  # the cache's limit (MB = 2**20 bytes); a split that does not fit is read from disk
    data.split_id = 0
    data.height = 384
    data.width = 128
    data.combineall = False
    data.transforms = ["random_flip", "random_erase"]
    data.norm_mean = [0.485, 0.456, 0.406]
    data.norm_std = [0.229, 0.224, 0.225]
    data.save_dir = "log/run"
    data.cuhk03_labeled = False
    data.cuhk03_classic_split = False  # False = the 767/700 protocol
    data.market1501_500k = False
    data.on_bad_image = "skip"  # unreadable image: skip (warn, count in result.json) | error (stop before training)
    data.synthcam = CN()  # size of the generated set (data.sources: [synthcam]): the fields of SynthCamSpec
    data.synthcam.num_train_ids = 40
    data.synthcam.num_test_ids = 20
    data.synthcam.num_cams = 4
    data.synthcam.images_per_cam = 3
    data.synthcam.height = 128
    data.synthcam.width = 64
    data.synthcam.seed = 0
    data.csv = CN()  # any labelled folder (data.sources: [csv]); see ccsc_plugin/data/csv_dataset.py
    data.csv.path = ""  # CSV with columns path,pid,camid[,split]; relative image paths resolve against it
    data.csv.test_path = ""  # a second CSV as the test set (split column, else 1 query per id+camera); path trains
    data.csv.val_ids = 0  # > 0: the last N identities (highest pids) of path's training rows are the test set
    return data


def _train() -> CN:
    train = CN()
    train.optim = "adam"
    train.lr = 3.5e-4
    train.weight_decay = 5e-4
    train.max_epoch = 100
    train.start_epoch = 0
    train.batch_size = 64  # P x K = 16 x 4
    train.fixbase_epoch = 0
    train.open_layers = ["classifier"]
    train.lr_scheduler = "warmup_multistep"
    train.stepsize = [35, 55]
    train.gamma = 0.1
    train.warmup_epochs = 5
    train.warmup_start_lr = 3.5e-5
    train.print_freq = 20
    train.seed = 1
    train.amp = "off"  # off | bf16 | fp16 | auto (bf16 where the CPU or GPU has it natively, else float32)
    train.channels_last = True  # faster on the CPU for ResNet-50 and ResNet-18 (benchmarks/bench_training.py)
    train.compile = False  # torch.compile the model (first steps compile: pays off on long runs)
    train.dist_backend = "auto"  # under torchrun: auto (nccl on GPUs, gloo on CPU) | gloo | nccl
    return train


def _loss() -> CN:
    """Each loss term's section with its defaults, from the table of terms (``losses.terms.LOSS_TERMS``: the paper's
    softmax + 1.5 CCSC, lambda of Sec. 4.2), and ``gather_features``."""
    loss = CN(loss_sections())
    loss.gather_features = False  # under DDP: the pair terms (CCSC, triplet) over all ranks' features
    return loss


def flat_keys(node: CN, prefix: str = "") -> list[str]:
    """Every key of ``node`` as a dotted path, sections included (``data``, ``data.csv``, ``data.csv.path``...)."""
    keys = []
    for key, value in node.items():
        full = f"{prefix}{key}"
        keys.append(full)
        if isinstance(value, CN):
            keys.extend(flat_keys(value, full + "."))
    return keys


def upgraded(data: Mapping[str, Any]) -> dict[str, Any]:
    """A nested recipe mapping stored by an older version, in today's keys: the same model, the same run.

    ``model.backbone: X`` of ``resnet50_ccsc`` (the paper's head on timm's ResNet ``X``) is ``model.name: X_ccsc``,
    the same network under the same weight names; with a torchreid zoo model it was unused. The other
    :data:`RETIRED_KEYS` set nothing and are dropped.
    """
    model = data.get("model")
    if isinstance(model, Mapping) and "backbone" in model and model.get("name", PAPER_MODEL) == PAPER_MODEL:
        data = {**data, "model": {**model, "name": f"{model['backbone']}{CCSC_SUFFIX}"}}
    return without_retired(data)


def without_retired(data: Mapping[str, Any]) -> dict[str, Any]:
    """A nested recipe mapping without the :data:`RETIRED_KEYS`."""

    def strip(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        return {
            key: strip(value, f"{prefix}{key}.") if isinstance(value, Mapping) else value
            for key, value in values.items()
            if f"{prefix}{key}" not in RETIRED_KEYS
        }

    return strip(data, "")
