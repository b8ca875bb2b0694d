"""From a recipe's config to a trained, scored run: the stage that ties data, model, engine and evaluation.

    config -> build_datamanager (torchreid ImageDataManager over data/) -> build_model (models/)
           -> build_engine (engine/, with losses/) -> train: checkpoints + result.json (evaluation/)

``train(cfg)`` and ``evaluate(cfg, weights)`` are what ``ccsc-reid train`` / ``test`` call. Each run folder
(``data.save_dir``) belongs to one run (:mod:`ccsc_plugin.pipeline.run_folder`) and ends with
``checkpoints/epoch-NNN.pt``, ``train.log`` and ``result.json``; a test writes ``tests/<name>.json`` beside it.
A trained model comes back through :mod:`ccsc_plugin.pipeline.trained` (checkpoint -> recipe -> model and
test transform), the one loader that ``test``, export, inference, the demo and the benchmarks share.
"""

from ccsc_plugin.pipeline.build import (
    build_datamanager,
    build_engine,
    build_model,
    build_optimizer,
    build_scheduler,
    load_weights,
    method_name,
    prepare_datasets,
)
from ccsc_plugin.pipeline.evaluate import evaluate
from ccsc_plugin.pipeline.run_folder import RunFolderTaken, run_files
from ccsc_plugin.pipeline.train import summarise, train
from ccsc_plugin.pipeline.trained import (
    TrainedModel,
    config_from_checkpoint,
    load_trained,
    model_from_checkpoint,
    test_transform,
)

__all__ = [
    "RunFolderTaken",
    "TrainedModel",
    "build_datamanager",
    "build_engine",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "config_from_checkpoint",
    "evaluate",
    "load_trained",
    "load_weights",
    "method_name",
    "model_from_checkpoint",
    "prepare_datasets",
    "run_files",
    "summarise",
    "test_transform",
    "train",
]
