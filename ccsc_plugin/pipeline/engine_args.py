"""A recipe -> ``ImageCCSCEngine``'s keyword arguments: the one place the engine's settings are read from a recipe."""

from __future__ import annotations

from typing import Any

from yacs.config import CfgNode as CN

from ccsc_plugin.evaluation.rerank import RerankSettings


def engine_arguments(cfg: CN) -> dict[str, Any]:
    """The engine's loss terms (every section of ``loss``), ``loss.gather_features``, ``train.amp``,
    ``train.channels_last``, ``train.compile``, ``test.flip`` and re-ranking's ``test.rerank_*`` parameters.

    ``cfg`` is a full recipe (``config.load_config``): every key read here exists.
    """
    return {
        "losses": {section: values for section, values in cfg.loss.items() if isinstance(values, CN)},
        "gather_features": cfg.loss.gather_features,
        "amp": cfg.train.amp,
        "channels_last": cfg.train.channels_last,
        "compile": cfg.train.compile,
        "test_flip": cfg.test.flip,
        "rerank": RerankSettings(
            k1=cfg.test.rerank_k1,
            k2=cfg.test.rerank_k2,
            lambda_value=cfg.test.rerank_lambda,
            max_mb=cfg.test.rerank_max_mb,
        ),
    }
