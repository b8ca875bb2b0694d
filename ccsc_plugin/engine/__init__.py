"""Training: the CCSC engine (a torchreid ``Engine``), its learning-rate schedule, and the plumbing a
long run needs (checkpoints and resume, stop on a signal, non-finite losses, distributed data parallel)."""

from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine
from ccsc_plugin.engine.distributed import DIST_BACKENDS
from ccsc_plugin.engine.interrupt import StopOnSignal, TrainingInterrupted
from ccsc_plugin.engine.nonfinite import NonFiniteLoss
from ccsc_plugin.engine.precision import AMP_MODES
from ccsc_plugin.engine.rank_lists import RankListOptions, write_rank_lists
from ccsc_plugin.engine.schedule import LR_SCHEDULERS, WARMUP_MULTISTEP, WarmupMultiStepLR

__all__ = [
    "AMP_MODES",
    "DIST_BACKENDS",
    "LR_SCHEDULERS",
    "WARMUP_MULTISTEP",
    "ImageCCSCEngine",
    "NonFiniteLoss",
    "RankListOptions",
    "StopOnSignal",
    "TrainingInterrupted",
    "WarmupMultiStepLR",
    "write_rank_lists",
]
