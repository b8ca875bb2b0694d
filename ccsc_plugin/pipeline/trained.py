"""One way back from a checkpoint to a usable model: checkpoint -> its recipe -> model + test transform.

``ccsc-reid test``, export, feature extraction, the FAISS index, the demo and the benchmarks all rebuild a
trained model here: the stored recipe goes through the project's one YAML loader and validation
(:func:`ccsc_plugin.config.parse_yaml`, :func:`~ccsc_plugin.config.config_from_mapping`), the model is
built from its ``model`` keys and must fit the stored weights exactly, and the test transform is torchreid's.

    trained = load_trained("runs/my-run")     # run folder (its latest checkpoint) or a .pt file
    features = trained.model(torch.stack([trained.transform(image) for image in images]))
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from yacs.config import CfgNode as CN

from ccsc_plugin import checkpoint as ckpt
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.config import RecipeError, config_from_mapping, parse_yaml
from ccsc_plugin.models import create_model


def config_from_checkpoint(state: dict[str, Any], origin: str = "checkpoint") -> CN:
    """The recipe a checkpoint (or a ``result.json``) was trained with (its ``config`` text), checked like any
    recipe; one stored by an older version is read in today's keys (``config_from_mapping``)."""
    if "config" not in state:
        raise RecipeError(
            f"{origin} stores no 'config': it was not written by `ccsc-reid train`. Build the model yourself and "
            "pass it to FeatureExtractor(model, height=..., width=...)."
        )
    text = state["config"]
    try:
        if not isinstance(text, str):
            raise RecipeError(f"it is a {type(text).__name__}, not text")
        stored = parse_yaml(text, origin) or {}
    except RecipeError as error:
        raise RecipeError(f"{origin}: its stored 'config' is not a YAML recipe ({error}).") from None
    if not isinstance(stored, dict):
        raise RecipeError(f"{origin}: its stored 'config' is a {type(stored).__name__}, not a recipe mapping.")
    try:
        return config_from_mapping(stored, origin)
    except RecipeError as error:
        raise RecipeError(f"{origin}: the recipe stored in this checkpoint is invalid. {error}") from error


def model_from_checkpoint(state: dict[str, Any], origin: str = "checkpoint") -> tuple[torch.nn.Module, CN]:
    """The eval-mode model of a loaded checkpoint, built from its stored recipe's model keys, and that recipe.

    Its weights must fit exactly (``checkpoint.load_model_state``): a file that does not is an error, never
    a model left partly at its random init.
    """
    cfg = config_from_checkpoint(state, origin)  # an unknown model.name or .neck is a RecipeError here
    # A config stored before model.neck / test.neck_feat existed merges over the defaults: the paper's head; one
    # stored with model.backbone names its network in model.name (config.defaults.upgraded).
    head = {"neck": cfg.model.neck, "neck_feat": cfg.test.neck_feat}
    model = create_model(cfg.model.name, _num_classes(state, origin), pretrained=False, **head)
    ckpt.load_model_state(model, state, origin)
    return model.eval(), cfg


def _num_classes(state: dict[str, Any], origin: str) -> int:
    """The classifier size: stored as ``num_classes`` by ``ccsc-reid train``, else read off the classifier."""
    if state.get("num_classes"):
        return int(state["num_classes"])
    weights = state["state_dict"] if isinstance(state["state_dict"], dict) else {}
    classifier = ckpt.strip_module_prefix(weights).get(f"{ckpt.CLASSIFIER_PREFIX}weight")
    if not isinstance(classifier, torch.Tensor):
        raise ckpt.CheckpointError(
            f"{origin} stores neither 'num_classes' nor a 'classifier.weight': the model cannot be rebuilt. "
            f"{ckpt.DEFAULT_FIT_FIX}"
        )
    return int(classifier.shape[0])


def test_transform(
    height: int, width: int, norm_mean: Sequence[float], norm_std: Sequence[float]
) -> Callable[[Any], torch.Tensor]:
    """torchreid's test transform (resize, to tensor, normalise): what ``ccsc-reid test`` feeds the model."""
    with contextlib.redirect_stdout(io.StringIO()):  # torchreid prints the transforms it builds
        _, transform = torchreid.data.transforms.build_transforms(
            height, width, transforms=None, norm_mean=list(norm_mean), norm_std=list(norm_std)
        )
    return transform


@dataclass
class TrainedModel:
    """A trained model in eval mode, the recipe it was trained with, and the checkpoint file it came from."""

    model: torch.nn.Module
    cfg: CN
    path: Path
    transform: Callable[[Any], torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        data = self.cfg.data
        self.transform = test_transform(data.height, data.width, data.norm_mean, data.norm_std)

    @property
    def size(self) -> tuple[int, int]:
        """The input (height, width) the model was trained at."""
        return int(self.cfg.data.height), int(self.cfg.data.width)


def load_trained(path: str | Path) -> TrainedModel:
    """The trained model of a checkpoint file, or of a run folder (its latest checkpoint)."""
    path = ckpt.latest_checkpoint(path) if Path(path).is_dir() else Path(path)
    model, cfg = model_from_checkpoint(ckpt.load_checkpoint(path), origin=str(path))
    return TrainedModel(model, cfg, path)
