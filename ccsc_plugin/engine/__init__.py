"""Training: the CCSC engine (a torchreid ``Engine``), its learning-rate schedule, and the plumbing a
long run needs (checkpoints and resume, stop on a signal, non-finite losses, distributed data parallel)."""

from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine

__all__ = ["ImageCCSCEngine"]
