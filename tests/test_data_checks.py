"""Data: missing folders, unreadable images, thin identities and a P x K the train set cannot fill."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from ccsc_plugin import pipeline
from ccsc_plugin.cli import main
from ccsc_plugin.config import RecipeError, load_config
from ccsc_plugin.data.integrity import BadImageError, BadImageWarning
from ccsc_plugin.data.registry import DatasetNotFound, check_dataset
from ccsc_plugin.data.synthcam import SynthCam, SynthCamSpec
from ccsc_plugin.evaluation.results import read_result

BASE = Path(__file__).resolve().parents[1] / "recipes" / "base.yaml"
RELEASE = "market1501/Market-1501-v15.09.15"
TINY_SPEC = SynthCamSpec(num_train_ids=4, num_test_ids=3, num_cams=2, images_per_cam=2, height=32, width=16, seed=5)


def as_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture
def own_market(market_root, tmp_path) -> Path:
    """A private copy of the generated Market-1501 tree, safe to damage."""
    root = tmp_path / "data"
    shutil.copytree(market_root / "market1501", root / "market1501")
    return root


def with_root(overrides: list[str], root: Path) -> list[str]:
    return [item for item in overrides if not item.startswith("data.root=")] + [f"data.root={root}"]


@pytest.mark.parametrize("release_folder", [True, False], ids=["release-folder", "flat"])
@pytest.mark.parametrize("missing", ["bounding_box_train", "query", "bounding_box_test"])
def test_missing_market_subfolder_names_path_and_layout(tmp_path, release_folder, missing):
    base = tmp_path / (RELEASE if release_folder else "market1501")
    for sub in {"bounding_box_train", "query", "bounding_box_test"} - {missing}:
        (base / sub).mkdir(parents=True)
    with pytest.raises(DatasetNotFound) as error:
        check_dataset("market1501", tmp_path)
    message = str(error.value)
    assert str((base / missing).resolve()) in message
    assert "{bounding_box_train,query,bounding_box_test}" in message and f"data.root={tmp_path}" in message


def test_missing_subfolder_stops_the_cli_with_exit_2(own_market, tiny_overrides, capsys):
    shutil.rmtree(own_market / RELEASE / "query")
    assert main(["train", str(BASE), *as_args(with_root(tiny_overrides, own_market))]) == 2
    assert str(own_market / RELEASE / "query") in capsys.readouterr().err


@pytest.fixture
def damaged_root(own_market) -> tuple[Path, list[Path]]:
    """The copy with one truncated train image and one gallery 'image' that is not an image at all."""
    train = sorted((own_market / RELEASE / "bounding_box_train").glob("*.jpg"))
    gallery = sorted((own_market / RELEASE / "bounding_box_test").glob("*.jpg"))
    truncated, garbage = train[5], gallery[3]
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage.write_text("not a jpeg")
    return own_market, [truncated, garbage]


def test_unreadable_images_are_skipped_named_and_counted(damaged_root, tiny_overrides):
    root, bad = damaged_root
    cfg = load_config(BASE, with_root(tiny_overrides, root))
    with pytest.warns(BadImageWarning) as caught:
        engine = pipeline.build_engine(cfg)
    warned = "\n".join(str(w.message) for w in caught)
    assert all(str(path) in warned for path in bad)

    summary = pipeline.summarise(cfg, engine, None, 0.0, 0)  # what result.json records
    assert summary["skipped_images"] == 2
    assert set(summary["data_checks"]["skipped_files"]) == {str(path) for path in bad}
    listed = {item[0] for item in engine.train_loader.dataset.train}
    gallery = {item[0] for item in engine.test_loader["market1501"]["gallery"].dataset.data}
    assert str(bad[0]) not in listed and str(bad[1]) not in gallery
    on_disk = len(list((root / RELEASE / "bounding_box_test").glob("*.jpg")))
    assert len(listed) == 47 and len(gallery) == on_disk - 1
    batches = list(engine.train_loader)  # a whole epoch loads: no worker ever meets the bad files
    assert batches and all(b["img"].shape[1:] == (3, 64, 32) for b in batches)


def test_unreadable_images_are_an_error_when_the_recipe_says_so(damaged_root, tiny_overrides, capsys):
    root, bad = damaged_root
    overrides = [*with_root(tiny_overrides, root), "data.on_bad_image=error"]
    with pytest.raises(BadImageError, match="data.on_bad_image=skip"):
        pipeline.build_datamanager(load_config(BASE, overrides))
    assert main(["train", str(BASE), *as_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert str(bad[0]) in err and "unreadable" in err
    run = Path(next(o for o in overrides if o.startswith("data.save_dir=")).split("=", 1)[1])
    assert not (run / "checkpoints").exists()


def test_thin_identities_are_sampled_with_replacement_and_reported(own_market, tiny_overrides, capsys):
    train = own_market / RELEASE / "bounding_box_train"
    for path in train.glob("0001_c[23]*.jpg"):  # identity 1 keeps 2 images, camera 1 only (K = 4)
        path.unlink()
    cfg = load_config(BASE, with_root(tiny_overrides, own_market))
    engine = pipeline.build_engine(cfg)
    out = capsys.readouterr().out
    assert "1 with fewer than K=4 images (sampled with replacement" in out
    assert "1 seen by one camera only" in out
    data = pipeline.summarise(cfg, engine, None, 0.0, 0)["data_checks"]
    assert (data["images"], data["identities"], data["fewer_than_k"], data["single_camera"]) == (44, 8, 1, 1)
    (thin,) = {item[1] for item in engine.train_loader.dataset.train if Path(item[0]).name.startswith("0001_")}
    seen = [pid for batch in engine.train_loader for pid in batch["pid"].tolist()]
    assert seen.count(thin) == 4  # 2 images drawn as K = 4, with replacement (torchreid's sampler)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["sampler.num_instances=8"], "sampler.num_instances"),  # every identity has 6 images
        (["train.batch_size=64"], "train.batch_size"),  # 16 identities per batch, the set has 8
    ],
)
def test_a_batch_the_train_set_cannot_fill_is_a_recipe_error(tiny_overrides, overrides, key, capsys):
    cfg = load_config(BASE, [*tiny_overrides, *overrides])
    with pytest.raises(RecipeError, match=key):
        pipeline.build_datamanager(cfg)
    assert main(["train", str(BASE), *as_args([*tiny_overrides, *overrides])]) == 2
    assert key in capsys.readouterr().err
    assert not (Path(cfg.data.save_dir) / "checkpoints").exists()


def test_generated_set_missing_a_subfolder_is_redrawn(tmp_path):
    first = SynthCam(root=str(tmp_path), spec=TINY_SPEC, verbose=False)
    shutil.rmtree(Path(first.query_dir))
    again = SynthCam(root=str(tmp_path), spec=TINY_SPEC, verbose=False)
    assert again.query == first.query and len(again.query) > 0


@pytest.fixture
def one_camera_csv(market_root, tmp_path) -> Path:
    """The generated Market tree as a CSV whose train rows all come from camera 0 (query/gallery keep theirs)."""
    release = market_root / RELEASE
    lines = ["path,pid,camid,split"]
    for folder, split in (("bounding_box_train", "train"), ("query", "query"), ("bounding_box_test", "gallery")):
        for image in sorted((release / folder).glob("*.jpg")):
            pid, camid = int(image.name[:4]), int(image.name[6]) - 1
            lines.append(f"{image},{pid},{0 if split == 'train' else camid},{split}")
    path = tmp_path / "one-camera.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_overrides(tiny_overrides: list[str], csv_path: Path) -> list[str]:
    return [*tiny_overrides, "data.sources=[csv]", f"data.csv.path={csv_path}"]


@pytest.mark.slow
def test_ccsc_without_any_cross_camera_pair_is_a_loud_warning_and_recorded(one_camera_csv, tiny_overrides, capsys):
    cfg = load_config(
        BASE, [*csv_overrides(tiny_overrides, one_camera_csv), "train.max_epoch=1", "train.warmup_epochs=0"]
    )
    result = pipeline.train(cfg)
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if line.startswith("=> WARNING:"))
    assert out.index(warning) < out.index("=> Start training")  # before the first step
    assert "no cross-camera pair can ever form" in warning and "softmax baseline" in warning
    assert "loss.ccsc.cross_camera=false" in warning
    recorded = read_result(cfg.data.save_dir)
    assert recorded["ccsc_active"] is False and recorded["warnings"] == [warning.removeprefix("=> WARNING: ")]
    assert result == recorded


@pytest.mark.parametrize(
    ("one_camera", "overrides", "active"),
    [
        (True, ["loss.ccsc.cross_camera=false"], True),  # same-camera pairs still form
        (True, ["loss.ccsc.weight=0"], False),  # the baseline: off by design, no warning
        (False, [], True),  # the generated Market tree: every identity in 3 cameras
    ],
)
def test_ccsc_activity_is_recorded_without_a_warning(one_camera_csv, tiny_overrides, one_camera, overrides, active):
    cfg = load_config(
        BASE, [*(csv_overrides(tiny_overrides, one_camera_csv) if one_camera else tiny_overrides), *overrides]
    )
    result = pipeline.summarise(cfg, pipeline.build_engine(cfg), None, 0.0, 0)
    assert (result["ccsc_active"], result["warnings"]) == (active, [])


HUGE_SIDE = 12000  # 144 megapixels: PIL only warns (DecompressionBombWarning) and decodes it in 430 MB


def write_huge_png(path: Path, side: int = HUGE_SIDE) -> Path:
    """A single-colour side x side RGB PNG written row by row: a few hundred kB, never a full frame in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" + b"\x50\x60\x70" * side  # filter byte, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def huge_root(own_market) -> tuple[Path, Path]:
    """The copy with one train image replaced by a 12000 x 12000 PNG (under its .jpg name, as a bad export has)."""
    huge = sorted((own_market / RELEASE / "bounding_box_train").glob("*.jpg"))[4]
    return own_market, write_huge_png(huge)


def test_a_huge_image_is_skipped_by_the_up_front_check_naming_it(huge_root):
    from ccsc_plugin.data.integrity import ImageScreen

    _, huge = huge_root
    items = [(str(huge), 0, 0), *((str(p), 1, 1) for p in sorted(huge.parent.glob("*.jpg")) if p != huge)]
    with pytest.warns(BadImageWarning) as caught:
        kept = ImageScreen("skip").filter_items(items)
    assert [item[0] for item in kept] == [item[0] for item in items[1:]]
    (warned,) = [str(w.message) for w in caught if issubclass(w.category, BadImageWarning)]
    assert str(huge) in warned and f"{HUGE_SIDE}x{HUGE_SIDE} pixels, more than the limit" in warned
    assert not [w for w in caught if "DecompressionBomb" in w.category.__name__]  # the reader says it, once


def test_a_huge_image_stops_training_under_on_bad_image_error(huge_root, tiny_overrides, capsys):
    root, huge = huge_root
    overrides = [*with_root(tiny_overrides, root), "data.on_bad_image=error"]
    assert main(["train", str(BASE), *as_args(overrides)]) == 2
    err = capsys.readouterr().err
    assert f"{huge} ({HUGE_SIDE}x{HUGE_SIDE} pixels" in err and "Crop or downscale it" in err
    assert "data.on_bad_image=skip" in err and "Traceback" not in err
