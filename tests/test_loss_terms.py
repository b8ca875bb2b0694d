"""The table of loss terms: a term added in a test (no file of the package edited) trains, is logged, is checked
and names its method; each term reads every key of its section; a term with state is checkpointed by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ccsc_plugin import pipeline
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.losses import LOSS_TERMS, LossContext, LossTerm, register_loss_term
from ccsc_plugin.losses.terms import build_active_terms
from ccsc_plugin.pipeline.resume import resolve_resume

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
ONLY_L2 = ["loss.softmax.weight=0", "loss.ccsc.weight=0", "loss.l2.weight=1.0"]


class L2Penalty(nn.Module):
    """A toy loss: ``scale`` x the mean squared norm of the features."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        return self.scale * features.pow(2).sum(dim=1).mean()


@pytest.fixture
def l2_term():
    """The toy term in the table for one test: what a plugin adding a loss writes."""
    term = register_loss_term(
        LossTerm(
            "l2",
            "l2",
            {"weight": 0.0, "scale": 1.0},
            lambda l2, context: L2Penalty(l2.scale),
            ranges={"scale": (0, 10)},
        )
    )
    yield term
    del LOSS_TERMS[term.name]


def one_step(engine) -> dict[str, float]:
    engine.set_model_mode("train")
    return engine.forward_backward(next(iter(engine.train_loader)))


def test_a_term_added_in_a_test_trains_with_its_weight_and_is_logged(tiny_overrides, l2_term):
    cfg = load_config(BASE, [*tiny_overrides, "loss.l2.weight=0.5", "loss.l2.scale=2.0"])
    engine = pipeline.build_engine(cfg)
    assert engine.loss_terms["l2"].module.scale == 2.0
    summary = one_step(engine)
    assert set(summary) == {"loss", "loss_id", "loss_ccsc", "loss_l2", "acc"} and summary["loss_l2"] > 0
    expected = summary["loss_id"] + 1.5 * summary["loss_ccsc"] + 0.5 * summary["loss_l2"]
    assert summary["loss"] == pytest.approx(expected, rel=1e-6)
    assert pipeline.method_name(cfg) == "softmax+ccsc+l2"


def test_a_term_added_alone_moves_what_its_gradient_reaches_and_nothing_else(tiny_overrides, l2_term):
    cfg = load_config(BASE, [*tiny_overrides, *ONLY_L2])
    engine = pipeline.build_engine(cfg)
    classifier, reduction = (engine.model.classifier.weight, engine.model.reduction[0].weight)
    before = classifier.detach().clone(), reduction.detach().clone()
    summary = one_step(engine)
    assert set(summary) == {"loss", "loss_l2", "acc"}  # the ID term, weight 0, is not computed
    assert torch.equal(classifier, before[0])  # only the ID term's gradient reaches the classifier
    assert not torch.equal(reduction, before[1])
    assert pipeline.method_name(cfg) == "l2"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.l2.weight=-1", "loss.l2.weight must be >= 0, got -1"),
        ("loss.l2.scale=20", r"loss.l2.scale must be in \[0, 10\], got 20"),
        ("loss.l2.scael=1", "scael"),
    ],
)
def test_a_term_added_in_a_test_has_its_keys_checked(l2_term, override, message):
    with pytest.raises(RecipeError, match=message):
        load_config(BASE, [override])


def test_a_recipe_where_every_weight_is_0_is_refused():
    with pytest.raises(RecipeError, match=r"Every loss weight is 0 \(loss.softmax.weight, loss.ccsc.weight"):
        load_config(BASE, ["loss.softmax.weight=0", "loss.ccsc.weight=0"])


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (LossTerm("id", "other", {"weight": 0.0}, L2Penalty), "clashes with the registered 'id'"),
        (LossTerm("other", "softmax", {"weight": 0.0}, L2Penalty), r"clashes with the registered 'id' \(section"),
    ],
    ids=["name", "section"],
)
def test_a_second_term_of_one_name_or_section_is_refused(term, message):
    with pytest.raises(ValueError, match=message):
        register_loss_term(term)
    assert LOSS_TERMS["id"].section == "softmax" and "other" not in LOSS_TERMS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": "bn"}, "input must be one of logits, features, got 'bn'"),
        ({"input": "logits", "gathered": True}, "gathered applies to input='features' only"),
        ({"defaults": {"scale": 1.0}}, "defaults must hold 'weight'"),
        ({"ranges": {"margin": (0, 1)}}, "ranges name keys its defaults lack: margin"),
    ],
)
def test_a_malformed_term_is_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        LossTerm(**{"name": "l2", "section": "l2", "defaults": {"weight": 0.0}, "build": L2Penalty, **fields})


class RecordingSection(dict):
    """A section that remembers the keys read from it as attributes (the way builders read yacs nodes)."""

    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getattr__(self, key: str):
        self.read.add(key)
        return self[key]


@pytest.mark.parametrize("name", sorted(LOSS_TERMS))
def test_every_key_of_a_terms_section_is_read_when_it_is_built(name):
    """Where the recipe-key scan sees the loss section consumed whole, this test sees each key used."""
    term = LOSS_TERMS[name]
    sections = {t.section: RecordingSection({**t.defaults, "weight": float(t is term)}) for t in LOSS_TERMS.values()}
    built = build_active_terms(sections, LossContext(num_classes=3, feature_dim=lambda: 4, use_gpu=False))
    assert list(built) == [name]
    assert sections[term.section].read == set(term.defaults)


def test_a_term_with_state_is_checkpointed_under_its_name_and_restored_on_resume(tiny_overrides, tmp_path):
    cfg = load_config(BASE, [*tiny_overrides, "loss.center.weight=0.003"])
    engine = pipeline.build_engine(cfg)
    one_step(engine)
    centres = engine.loss_terms["center"].module.centers
    assert centres.abs().sum() > 0  # the update after the step moved them
    engine.epoch = 0
    path = engine.save_model(0, None, str(tmp_path / "run"))
    assert torch.equal(torch.load(path, weights_only=True)["center"]["centers"], centres)  # the key older runs hold
    resumed = pipeline.build_engine(cfg, engine.datamanager)
    assert resumed.loss_terms["center"].module.centers.abs().sum() == 0
    resumed.resume(resolve_resume(str(tmp_path / "run")).state, path)
    assert torch.equal(resumed.loss_terms["center"].module.centers, centres)
