"""``ccsc-reid export``: ONNX files that onnxruntime runs with PyTorch's features (within 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ccsc_plugin.cli import main
from ccsc_plugin.serve.export import onnx_features
from ccsc_plugin.serve.inference import FeatureExtractor

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"


def test_checkpoint_export_round_trips_through_onnxruntime(tiny_checkpoint, market_root, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(tiny_checkpoint), "--onnx", str(out)]) == 0
    assert "max |difference|" in capsys.readouterr().out
    extractor = FeatureExtractor.from_checkpoint(tiny_checkpoint, device="cpu")
    images = extractor.preprocess(sorted(market_root.glob("market1501/*/bounding_box_test/*.jpg"))[:5])
    with torch.no_grad():
        expected = extractor.model(images).numpy()
    features = onnx_features(out, images.numpy())  # batch of 5: the traced batch was 2
    assert features.shape == (5, 512)
    np.testing.assert_allclose(features, expected, atol=1e-4, rtol=0)
    model = onnx.load(out)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert (metadata["height"], metadata["width"]) == ("64", "32") and metadata["model"] == "resnet50_ccsc"


def test_recipe_export_uses_the_recipe_input_size(tmp_path):
    out = tmp_path / "recipe.onnx"
    overrides = ["--set=model.pretrained=false", "--set=data.height=32", "--set=data.width=16"]
    assert main(["export", str(BASE), "--onnx", str(out), *overrides]) == 0
    features = onnx_features(out, np.zeros((3, 3, 32, 16), dtype=np.float32))
    assert features.shape == (3, 512)


def test_overrides_with_a_checkpoint_are_refused(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--set=data.height=8"]) == 2
    assert "--set applies to a recipe" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("missing", ["nothing-here", "nothing.yaml"])
def test_missing_source_is_a_clear_error(tmp_path, capsys, missing):
    assert main(["export", str(tmp_path / missing), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
