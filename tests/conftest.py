"""Shared fixtures: a generated Market-1501 tree, tiny recipes, the shared real CUHK03 crops."""

from __future__ import annotations

import csv
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail fast instead of retrying the hub

from pathlib import Path  # noqa: E402

import huggingface_hub.constants  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from miniatures import BENCHMARKS, MiniatureSpec, write_miniature  # noqa: E402
from tmp_folders import module_tmp  # noqa: E402,F401  (the fixture, for every module)

import ccsc_plugin  # noqa: E402,F401  (registers models and datasets)
from ccsc_plugin._torchreid import torchreid  # noqa: E402
from ccsc_plugin.config import load_config  # noqa: E402
from ccsc_plugin.data.synthcam import SynthCamSpec, generate  # noqa: E402

SHARED_CUHK03 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhk03-detected-mini"
SHARED_CUHK03_TRAIN = SHARED_CUHK03.with_name("cuhk03-detected-train")  # 743 other people: train here, test there
MINI_SPEC = MiniatureSpec(num_train_ids=5, num_test_ids=3, num_cams=3, images_per_cam=2, height=64, width=32, seed=5)
TINY_SPEC = SynthCamSpec(num_train_ids=8, num_test_ids=6, num_cams=3, images_per_cam=2, height=64, width=32, seed=3)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torchreid.utils.set_random_seed(0)  # python, numpy and torch: the samplers use all three
    torch.set_num_threads(2)


@pytest.fixture
def no_weights_anywhere(monkeypatch, tmp_path) -> None:
    """No network and empty weight caches (timm's Hugging Face hub, torch hub): no ImageNet weights can be had,
    whatever this machine has downloaded before."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for variable, folder in (("TORCH_HOME", "torch"), ("HF_HOME", "hf"), ("HF_HUB_CACHE", "hf/hub")):
        monkeypatch.setenv(variable, str(tmp_path / "empty-caches" / folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads its environment once, at import: its module constants are what its downloads use
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(tmp_path / "empty-caches" / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-caches" / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def market_root(tmp_path_factory) -> Path:
    """A data.root holding a small generated set in Market-1501's exact folder layout and naming."""
    root = tmp_path_factory.mktemp("reid-data")
    generate(root / "market1501" / "Market-1501-v15.09.15", TINY_SPEC)
    return root


@pytest.fixture(scope="session")
def miniature_root(tmp_path_factory) -> tuple[Path, dict]:
    """A data.root holding miniatures of all four benchmarks (MINI_SPEC) and what each writer wrote."""
    root = tmp_path_factory.mktemp("benchmarks")
    return root, {name: write_miniature(name, root, MINI_SPEC) for name in BENCHMARKS}


@pytest.fixture(scope="session")
def market_csv(market_root, tmp_path_factory) -> Path:
    """A folder with a labels.csv (path,pid,camid) over the generated Market tree's test images."""
    folder = tmp_path_factory.mktemp("market-csv")
    tree = market_root / "market1501" / "Market-1501-v15.09.15"
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pid", "camid"])
        for image in sorted([*tree.glob("query/*.jpg"), *tree.glob("bounding_box_test/*.jpg")]):
            writer.writerow([image, int(image.name[:4]), int(image.name[6]) - 1])
    return folder


def tiny_run_overrides(market_root: Path, save_dir: Path) -> list[str]:
    """Overrides that shrink the paper recipe to seconds on a CPU (same code path, smaller numbers)."""
    return [
        f"data.root={market_root}",
        "data.sources=[market1501]",
        f"data.save_dir={save_dir}",
        "data.height=64",
        "data.width=32",
        "data.workers=0",
        "model.pretrained=false",
        "train.batch_size=16",
        "train.max_epoch=2",
        "train.warmup_epochs=1",
        "train.stepsize=[1]",
        "train.print_freq=100",
        "test.batch_size=32",
    ]


@pytest.fixture
def tiny_overrides(market_root, tmp_path) -> list[str]:
    return tiny_run_overrides(market_root, tmp_path / "run")


@pytest.fixture
def tiny_cfg(tiny_overrides):
    return load_config(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml", tiny_overrides)


@pytest.fixture(scope="session")
def shared_cuhk03() -> Path:
    if not (SHARED_CUHK03 / "labels.csv").is_file():
        pytest.skip(f"{SHARED_CUHK03} is absent")
    return SHARED_CUHK03


@pytest.fixture(scope="session")
def shared_cuhk03_train() -> Path:
    if not (SHARED_CUHK03_TRAIN / "labels.csv").is_file():
        pytest.skip(f"{SHARED_CUHK03_TRAIN} is absent")
    return SHARED_CUHK03_TRAIN


@pytest.fixture(scope="session")
def tiny_checkpoint(market_root, tmp_path_factory) -> Path:
    """A run folder with one checkpoint of a tiny model after one training step (stored recipe included)."""
    from ccsc_plugin import pipeline

    save_dir = tmp_path_factory.mktemp("tiny-run")
    overrides = tiny_run_overrides(market_root, save_dir)
    torchreid.utils.set_random_seed(0)
    engine = pipeline.build_engine(
        load_config(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml", overrides)
    )
    engine.set_model_mode("train")
    engine.forward_backward(next(iter(engine.train_loader)))  # BN statistics and weights move off their init
    engine.save_model(0, None, str(save_dir))
    return save_dir


@pytest.fixture(scope="session")
def demo_checkpoints(market_root, tmp_path_factory) -> dict[str, Path]:
    """Two untrained resnet50_ccsc checkpoints (as `ccsc-reid train` writes them) on the generated Market tree."""
    from ccsc_plugin.checkpoint import checkpoint_path, save_checkpoint

    runs = tmp_path_factory.mktemp("demo-runs")
    overrides = [f"data.root={market_root}", "data.sources=[market1501]", "data.height=64", "data.width=32"]
    cfg = load_config(Path(__file__).resolve().parents[1] / "recipes" / "base.yaml", overrides)
    folders = {}
    for seed, name in enumerate(("baseline", "ccsc")):
        torch.manual_seed(seed)
        model = torchreid.models.build_model("resnet50_ccsc", 8, loss="ccsc", pretrained=False)
        state = {"state_dict": model.state_dict(), "config": cfg.dump(), "num_classes": 8, "epoch": 1}
        save_checkpoint(state, checkpoint_path(runs / name, 1))
        folders[name] = runs / name
    return folders
