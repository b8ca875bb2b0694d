"""``ccsc-reid extract``: a folder's or a CSV's images to an .npz of test features, end to end on generated crops."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from ccsc_plugin.cli import main
from ccsc_plugin.data.integrity import BadImageWarning
from ccsc_plugin.serve.inference import FeatureExtractor


@pytest.fixture(scope="module")
def crops(market_root) -> list[Path]:
    return sorted(market_root.glob("market1501/*/bounding_box_test/0*.jpg"))[:5]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint, crops) -> dict[str, np.ndarray]:
    """The features FeatureExtractor (the checkpoint's model at its input size) gives each crop, by path."""
    features = FeatureExtractor.from_checkpoint(tiny_checkpoint, device="cpu")(crops, progress=False)
    return {str(path): row for path, row in zip(crops, features.numpy(), strict=True)}


@pytest.fixture
def folder(tmp_path, crops) -> Path:
    """Crops in two sub-folders, a corrupt .jpg, and a file that is no image by its name."""
    root = tmp_path / "images"
    for index, crop in enumerate(crops):
        target = root / ("b" if index % 2 else "a") / crop.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(crop, target)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def run(weights: Path, images: Path, out: Path, *extra: str) -> int:
    return main(["extract", str(weights), "--images", str(images), "--out", str(out), *extra])


def test_a_folder_gives_every_readable_image_sorted_with_its_checkpoint_features(
    tiny_checkpoint, folder, tmp_path, crops, reference, capsys
):
    out = tmp_path / "feats.npz"
    with pytest.warns(BadImageWarning, match=r"Skipping unreadable image .*broken\.jpg"):
        assert run(tiny_checkpoint, folder, out, "--batch-size", "2") == 0
    captured = capsys.readouterr()
    assert f"Wrote {out}: 5 features of 512 dims; skipped 1 unreadable image(s)" in captured.out
    assert "6/6" in captured.err  # the progress bar counts every listed image
    expected_paths = sorted(str(p) for p in folder.rglob("*.jpg") if p.name != "broken.jpg")
    with np.load(out) as npz:
        assert list(npz["paths"]) == expected_paths
        assert list(npz["skipped"]) == [str(folder / "a" / "broken.jpg")]
        assert npz["features"].dtype == np.float32 and npz["features"].shape == (5, 512)
        assert "pids" not in npz and "camids" not in npz and not bool(npz["flip"])
        assert str(npz["checkpoint"]).endswith(".pt") and str(npz["dist_metric"]) == "euclidean"
        by_name = {Path(path).name: row for path, row in zip(npz["paths"], npz["features"], strict=True)}
    for crop in crops:
        np.testing.assert_allclose(by_name[crop.name], reference[str(crop)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", ["1", "64"])
def test_a_csv_keeps_its_order_pids_and_camids_and_skips_a_missing_image(
    tiny_checkpoint, crops, reference, tmp_path, batch_size, capsys
):
    listed = tmp_path / "list"
    listed.mkdir()
    rows = ["path,pid,camid,split"]
    for index, crop in enumerate(reversed(crops)):  # not sorted: the CSV's order is kept
        shutil.copy(crop, listed / crop.name)
        rows.append(f"{crop.name},{100 + index},{index % 3},gallery")  # relative to the CSV's folder
        if index == 1:
            rows.append("missing.jpg,7,0,gallery")
    (listed / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "feats.npz"
    with pytest.warns(BadImageWarning, match=r"missing\.jpg \(no such file\)"):
        assert run(tiny_checkpoint, listed / "labels.csv", out, "--batch-size", batch_size) == 0
    assert "5 features of 512 dims; skipped 1 unreadable image(s)" in capsys.readouterr().out
    with np.load(out) as npz:
        assert list(npz["paths"]) == [str((listed / crop.name).resolve()) for crop in reversed(crops)]
        assert npz["pids"].tolist() == [100, 101, 102, 103, 104] and npz["camids"].tolist() == [0, 1, 2, 0, 1]
        assert npz["pids"].dtype == np.int64
        for crop, row in zip(reversed(crops), npz["features"], strict=True):
            np.testing.assert_allclose(row, reference[str(crop)], rtol=1e-5, atol=1e-5)


def test_an_existing_output_is_kept_unless_overwrite(tiny_checkpoint, crops, tmp_path, capsys):
    out = tmp_path / "feats.npz"
    out.write_bytes(b"earlier work")
    assert run(tiny_checkpoint, crops[0].parent, out) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"earlier work"
    assert run(tiny_checkpoint, crops[0].parent, out, "--overwrite") == 0
    with np.load(out) as npz:
        assert len(npz["paths"]) == len(list(crops[0].parent.glob("*.jpg")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npz"]  # no temporary left beside it


BAD_INPUTS = {  # id -> (what --images is, in tmp_path, and the CSV text if any; --out name; what the error says)
    "missing-folder": ("nowhere", None, "feats.npz", "no such folder or .csv file"),
    "missing-csv": ("nowhere.csv", None, "feats.npz", "no such folder or .csv file"),
    "empty-folder": ("empty", None, "feats.npz", "no image files"),
    "csv-without-path": ("l.csv", "file,pid\na.jpg,1\n", "feats.npz", "no 'path' column; found ['file', 'pid']"),
    "csv-without-rows": ("l.csv", "path\n", "feats.npz", "no rows; nothing to extract"),
    "csv-bad-pid": ("l.csv", "path,pid\na.jpg,x\n", "feats.npz", "line 2: pid must be an integer, got 'x'"),
    "out-not-npz": ("empty", None, "feats.npy", "name a .npz file"),
    "nothing-readable": ("l.csv", "path\nbroken.jpg\n", "feats.npz", "None of the 1 image(s) can be read"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_an_error_naming_it_and_writes_nothing(tiny_checkpoint, tmp_path, capsys, case):
    name, text, out_name, message = BAD_INPUTS[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    if text is not None:
        (tmp_path / name).write_text(text)
    out = tmp_path / "out" / out_name
    with pytest.warns(BadImageWarning) if case == "nothing-readable" else contextlib.nullcontext():
        assert run(tiny_checkpoint, tmp_path / name, out) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize("size", ["0", "-3", "many"])
def test_batch_size_must_be_a_positive_integer(tiny_checkpoint, tmp_path, capsys, size):
    with pytest.raises(SystemExit) as stop:
        run(tiny_checkpoint, tmp_path, tmp_path / "f.npz", "--batch-size", size)
    assert stop.value.code == 2 and f"--batch-size: must be an integer >= 1, got '{size}'" in capsys.readouterr().err
