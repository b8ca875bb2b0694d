"""Models: the paper's head on any timm CNN (``<arch>_ccsc``: last stride 1 where the family allows it, GAP, 512-d
feature, classifier, optional BNNeck) in torchreid's factory beside torchreid's zoo, and test-time flip."""

from ccsc_plugin.models.ccsc_model import (
    DEFAULT_NECK,
    DEFAULT_NECK_FEAT,
    FEATURE_DIM,
    LOSSES,
    NECK_FEATS,
    NECKS,
    PAPER_ARCH,
    BNNeck,
    CCSCModel,
)
from ccsc_plugin.models.download import DOWNLOAD_TIMEOUT_S, download_timeout
from ccsc_plugin.models.factory import (
    CCSC_SUFFIX,
    EAGER_ARCHS,
    PAPER_MODEL,
    create_model,
    is_ccsc_model,
    model_name_problem,
    register_ccsc_model,
    register_models,
)
from ccsc_plugin.models.feature_size import feature_dim
from ccsc_plugin.models.flip import FLIP_KEY, FlipAveraged, flip_averaged, mirror
from ccsc_plugin.models.last_stride import set_last_stride_one
from ccsc_plugin.models.pretrained import PretrainedWeightsUnavailable, check_weights_file, create_backbone
from ccsc_plugin.models.timm_backbone import cnn_problem, extractor_problem, feature_channels, last_stage

__all__ = [
    "CCSC_SUFFIX",
    "DEFAULT_NECK",
    "DEFAULT_NECK_FEAT",
    "DOWNLOAD_TIMEOUT_S",
    "EAGER_ARCHS",
    "FEATURE_DIM",
    "FLIP_KEY",
    "LOSSES",
    "NECKS",
    "NECK_FEATS",
    "PAPER_ARCH",
    "PAPER_MODEL",
    "BNNeck",
    "CCSCModel",
    "FlipAveraged",
    "PretrainedWeightsUnavailable",
    "check_weights_file",
    "cnn_problem",
    "create_backbone",
    "create_model",
    "download_timeout",
    "extractor_problem",
    "feature_channels",
    "feature_dim",
    "flip_averaged",
    "is_ccsc_model",
    "last_stage",
    "mirror",
    "model_name_problem",
    "register_ccsc_model",
    "register_models",
    "set_last_stride_one",
]
