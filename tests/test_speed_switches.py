"""Each speed switch of a recipe runs a training step on the CPU and is really applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ccsc_plugin import pipeline
from ccsc_plugin._torchreid import torchreid
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data.loaders import build_train_loader
from ccsc_plugin.engine.ccsc_engine import ImageCCSCEngine

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"


class TinyReID(nn.Module):
    """A few-layer model with the plugin's convention: (logits, features) in train mode, features in eval."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor):
        features = self.body(x)
        return (self.classifier(features), features) if self.training else features


def tiny_engine(datamanager, **kwargs) -> ImageCCSCEngine:
    model = TinyReID(datamanager.num_train_pids)
    return ImageCCSCEngine(datamanager, model, torch.optim.SGD(model.parameters(), lr=0.1), use_gpu=False, **kwargs)


def one_step(engine: ImageCCSCEngine) -> dict[str, float]:
    engine.set_model_mode("train")
    before = [p.detach().clone() for p in engine.model.parameters()]
    summary = engine.forward_backward(next(iter(engine.train_loader)))
    assert np.isfinite(summary["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, engine.model.parameters(), strict=True))
    return summary


@pytest.mark.parametrize(("pin_memory", "persistent_workers"), [(True, True), (False, False)])
def test_loader_switches_are_applied_and_train(tiny_overrides, pin_memory, persistent_workers):
    cfg = load_config(
        BASE,
        [
            *tiny_overrides,
            "data.workers=1",
            f"data.pin_memory={str(pin_memory).lower()}",
            f"data.persistent_workers={str(persistent_workers).lower()}",
        ],
    )
    datamanager = pipeline.build_datamanager(cfg)
    torchreid_sampler = datamanager.train_loader.sampler  # torchreid's, wrapped to be resumable mid-epoch
    assert isinstance(torchreid_sampler.sampler, torchreid.data.sampler.RandomIdentitySampler)
    loader = datamanager.train_loader
    assert (loader.num_workers, loader.persistent_workers, loader.pin_memory) == (1, persistent_workers, False)
    assert loader.batch_size == 16 and loader.drop_last

    on_gpu = build_train_loader(cfg, datamanager, on_gpu=True)  # pinning is for host-to-GPU copies only
    assert on_gpu.pin_memory is pin_memory and on_gpu.sampler is torchreid_sampler

    one_step(tiny_engine(datamanager))
    first_epoch = iter(loader)
    next(first_epoch)
    assert (iter(loader) is first_epoch) is persistent_workers  # persistent: the same workers serve the next epoch


def test_loader_takes_the_sampler_it_is_given(tiny_cfg):
    datamanager = pipeline.build_datamanager(tiny_cfg)
    sampler = torch.utils.data.SequentialSampler(datamanager.train_loader.dataset)
    loader = build_train_loader(tiny_cfg, datamanager, sampler=sampler)
    assert loader.sampler is sampler
    assert not loader.persistent_workers  # data.workers = 0: nothing to keep alive
    batch = next(iter(loader))
    assert batch["img"].shape[0] == 16


def test_negative_workers_is_a_recipe_error(tiny_overrides):
    with pytest.raises(RecipeError, match="data.workers"):
        load_config(BASE, [*tiny_overrides, "data.workers=-1"])


@pytest.mark.slow
def test_compile_switch_runs_a_compiled_step(tiny_cfg):
    datamanager = pipeline.build_datamanager(tiny_cfg)
    engine = tiny_engine(datamanager, compile=True)
    model = engine.model
    assert isinstance(engine.forward_model, torch._dynamo.eval_frame.OptimizedModule)
    assert engine.forward_model._orig_mod is engine.model  # checkpoints keep the plain module's keys
    batch = next(iter(engine.train_loader))
    eager = TinyReID(datamanager.num_train_pids)
    eager.load_state_dict(model.state_dict())
    eager.train()
    expected = eager(batch["img"])[0]
    engine.set_model_mode("train")
    compiled = engine.forward_model(batch["img"])[0]
    torch.testing.assert_close(compiled, expected, rtol=1e-4, atol=1e-5)
    one_step(engine)
    assert not any(key.startswith("_orig_mod") for key in engine.checkpoint_state(1, None)["state_dict"])


def test_compile_key_reaches_the_engine(tiny_overrides, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    cfg = load_config(BASE, [*tiny_overrides, "train.compile=true"])
    engine = pipeline.build_engine(cfg)
    assert compiled == [engine.model]
