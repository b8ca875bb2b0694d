"""One image reader: training, ``test``, the demo's gallery and uploads and feature extraction see the same pixels.

Every kind of input (8- and 16-bit, grayscale, palette, alpha, CMYK) is written here, read through each path the
plugin has, and compared: with the pixels expected from the file's own values, and across the paths.
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from test_data_checks import HUGE_SIDE, write_huge_png
from torch.utils.data import DataLoader

import ccsc_plugin  # noqa: F401  (binds the reader into torchreid's datasets)
from ccsc_plugin._torchreid import submodule
from ccsc_plugin.data import images
from ccsc_plugin.data.csv_dataset import CSVDataset
from ccsc_plugin.serve.gallery import DemoInputError, read_rgb
from ccsc_plugin.serve.inference import to_pil
from ccsc_plugin.serve.uploads import decode_upload

HEIGHT, WIDTH = 32, 16
GRAY = 128  # what transparent pixels show: the demo's background
RNG = np.random.default_rng(7)


def png_bytes(pixels: np.ndarray, color_type: int) -> bytes:
    """A PNG of ``pixels`` (H x W or H x W x C, uint8 or uint16) written by hand: PIL cannot write 16-bit RGB."""
    height, width = pixels.shape[:2]
    depth = 16 if pixels.dtype == np.uint16 else 8
    big_endian = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + big_endian[y].tobytes() for y in range(height))  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` over the gray background with ``alpha`` (0..255)."""
    a = alpha[..., None].astype(np.float64) / 255
    return np.round(rgb * a + GRAY * (1 - a)).astype(np.uint8)


def gray3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2).astype(np.uint8)


def write_inputs(folder: Path) -> dict[str, tuple[Path, np.ndarray, int]]:
    """name -> (file, the RGB pixels expected from it, tolerance): one file per kind of input."""
    rgb8 = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    gray16 = RNG.integers(0, 65536, (HEIGHT, WIDTH)).astype(np.uint16)
    rgb16 = RNG.integers(0, 65536, (HEIGHT, WIDTH, 3)).astype(np.uint16)
    gray8 = RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    alpha = RNG.choice(np.array([0, 128, 255], dtype=np.uint8), (HEIGHT, WIDTH))
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    indices = RNG.integers(0, 16, (HEIGHT, WIDTH), dtype=np.uint8)
    inputs: dict[str, tuple[Path, np.ndarray, int]] = {}

    def save(name: str, image: Image.Image, expected: np.ndarray, tolerance: int = 0, **options) -> None:
        path = folder / name
        image.save(path, **options)
        inputs[path.stem] = (path, expected, tolerance)

    save("rgb8.png", Image.fromarray(rgb8), rgb8)
    save("gray16-I16.png", Image.fromarray(gray16), gray3(gray16 >> 8))  # scaled by the bit depth
    save("gray16-I.tif", Image.fromarray(gray16.astype(np.int32)), gray3(gray16 >> 8))  # opens as mode I
    (folder / "rgb16.png").write_bytes(png_bytes(rgb16, color_type=2))
    inputs["rgb16"] = (folder / "rgb16.png", (rgb16 >> 8).astype(np.uint8), 0)
    save("gray-L.png", Image.fromarray(gray8), gray3(gray8))
    paletted = Image.fromarray(indices, mode="P")
    paletted.putpalette(palette.tobytes())
    save("palette-P.png", paletted, palette[indices])
    opaque = np.where(indices == 3, 0, 255).astype(np.uint8)  # palette entry 3 is transparent
    save("palette-P-transparent.png", paletted, composite(palette[indices], opaque), transparency=3)
    save("rgba.png", Image.fromarray(np.dstack([rgb8, alpha])), composite(rgb8, alpha), tolerance=1)
    save("la.png", Image.fromarray(np.dstack([gray8, alpha]), mode="LA"), composite(gray3(gray8), alpha), tolerance=1)
    cmyk = Image.fromarray(RNG.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8), mode="CMYK")
    save("cmyk.jpg", cmyk, np.zeros(0), quality=95)  # JPEG is lossy: expected = the decoded CMYK, converted
    with Image.open(folder / "cmyk.jpg") as decoded:
        c, m, y, k = (np.asarray(decoded).astype(np.float64)[..., i] for i in range(4))
        rgb = np.stack([(255 - v) * (255 - k) / 255 for v in (c, m, y)], 2)  # PIL's CMYK -> RGB
        inputs["cmyk"] = (folder / "cmyk.jpg", np.round(rgb), 1)
    return inputs


@pytest.fixture(scope="module")
def inputs(module_tmp) -> dict[str, tuple[Path, np.ndarray, int]]:
    return write_inputs(module_tmp("images"))


KINDS = [
    "rgb8",
    "gray16-I16",
    "gray16-I",
    "rgb16",
    "gray-L",
    "palette-P",
    "palette-P-transparent",
    "rgba",
    "la",
    "cmyk",
]


def test_the_inputs_open_in_the_modes_they_stand_for(inputs):
    modes = {name: Image.open(inputs[name][0]).mode for name in KINDS}
    assert modes == {
        "rgb8": "RGB",
        "gray16-I16": "I;16",
        "gray16-I": "I",
        "rgb16": "RGB",  # PIL keeps the high byte of each 16-bit sample
        "gray-L": "L",
        "palette-P": "P",
        "palette-P-transparent": "P",
        "rgba": "RGBA",
        "la": "LA",
        "cmyk": "CMYK",
    }


def torchreid_item(path: Path) -> np.ndarray:
    """The image torchreid's ImageDataset.__getitem__ gives training and ``test`` (no transform)."""
    dataset = submodule("data.datasets.dataset").ImageDataset(
        [(str(path), 0, 0)], [(str(path), 0, 0)], [(str(path), 0, 1)], mode="train", verbose=False
    )
    return np.asarray(dataset[0]["img"])


def csv_item(path: Path) -> np.ndarray:
    """The image the ``csv`` dataset's __getitem__ gives (a one-row training CSV beside the file)."""
    labels = path.with_name(f"{path.stem}-labels.csv")
    with open(labels, "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "pid", "camid", "split"], [path.name, 0, 0, "train"]])
    return np.asarray(CSVDataset(csv_path=str(labels), mode="train", verbose=False)[0]["img"])


def upload(path: Path) -> np.ndarray:
    """The image the demo makes of the file's bytes uploaded."""
    return np.asarray(decode_upload(path.read_bytes())[0])


READERS = {
    "torchreid-dataset": torchreid_item,
    "csv-dataset": csv_item,
    "demo-upload": upload,
    "demo-gallery": lambda path: np.asarray(read_rgb(path)),
    "feature-extractor": lambda path: np.asarray(to_pil(path)),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", list(READERS))
def test_every_path_reads_the_expected_rgb_pixels(inputs, kind, reader):
    path, expected, tolerance = inputs[kind]
    got = READERS[reader](path)
    assert got.dtype == np.uint8 and got.shape == (HEIGHT, WIDTH, 3)
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= tolerance, f"{kind} via {reader}: off by up to {difference.max()}"


@pytest.mark.parametrize("kind", KINDS)
def test_training_and_the_demo_upload_give_identical_arrays(inputs, kind):
    path = inputs[kind][0]
    arrays = {name: read(path) for name, read in READERS.items()}
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, arrays["demo-upload"], err_msg=f"{kind}: {name} vs demo-upload")


def test_a_16_bit_png_is_not_washed_out(tmp_path):
    values = np.linspace(0, 65535, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "depth.png")
    mean = torchreid_item(tmp_path / "depth.png").mean()
    assert abs(mean - values.mean() / 257) < 1  # ~127.5, not ~255 (clipped) as Image.convert("RGB") gives


# ----------------------------------------------------------------------------- the reader itself


def test_torchreid_datasets_read_through_the_plugins_reader():
    assert submodule("data.datasets.dataset").read_image is images.read_image


@pytest.mark.parametrize("kind", KINDS)
def test_bytes_and_file_give_the_same_image(inputs, kind):
    path = inputs[kind][0]
    from_bytes = images.read_image_bytes(path.read_bytes())
    np.testing.assert_array_equal(np.asarray(from_bytes), np.asarray(images.read_image(path)))


def test_a_16_bit_gray_image_and_its_16_bit_rgb_copy_agree(tmp_path):
    values = RNG.integers(0, 65536, (HEIGHT, WIDTH)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "gray.png")
    (tmp_path / "rgb.png").write_bytes(png_bytes(np.dstack([values] * 3), color_type=2))
    gray, rgb = (np.asarray(images.read_image(tmp_path / name)) for name in ("gray.png", "rgb.png"))
    np.testing.assert_array_equal(gray, rgb)


def test_16_bit_scaling_is_by_bit_depth_not_per_image_contrast(tmp_path):
    dim = np.full((HEIGHT, WIDTH), 1000, dtype=np.uint16)
    dim[0, 0] = 2000  # a per-image min-max stretch would make this white and the rest black
    image = images.to_rgb(Image.fromarray(dim))
    assert np.asarray(image)[0, 0].tolist() == [7, 7, 7] and np.asarray(image)[1, 1].tolist() == [3, 3, 3]


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileNotFoundError, "does not exist"),
        (b"not an image at all", images.ImageReadError, r"not a readable image \(UnidentifiedImageError"),
        ("truncated", images.ImageReadError, r"not a readable image \(OSError"),
    ],
    ids=["missing", "not-an-image", "truncated"],
)
def test_unreadable_files_are_named(inputs, tmp_path, content, error, message):
    path = tmp_path / "bad.png"
    if content == "truncated":
        content = inputs["rgb8"][0].read_bytes()[:200]
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message) as raised:
        images.read_image(path)
    assert str(path) in str(raised.value)


@pytest.fixture(scope="module")
def huge_png(module_tmp) -> Path:
    return write_huge_png(module_tmp("huge") / "huge.png")


def test_a_huge_image_is_refused_from_its_header_before_decoding(huge_png, monkeypatch):
    def no_decoding(self):
        raise AssertionError("the huge image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.warns(Image.DecompressionBombWarning):  # PIL's own, on opening; the reader refuses it after
        with pytest.raises(images.ImageTooLargeError, match=f"{huge_png}: {HUGE_SIDE}x{HUGE_SIDE} pixels") as raised:
            images.read_image(huge_png)
    assert raised.value.size == (HUGE_SIDE, HUGE_SIDE) and raised.value.limit == images.MAX_IMAGE_PIXELS
    assert "Crop or downscale it" in str(raised.value)


@pytest.mark.parametrize(("limit", "refused"), [(images.MAX_IMAGE_PIXELS, False), (100 * 100 - 1, True)])
def test_the_pixel_limit_is_the_readers_argument(tmp_path, limit, refused):
    Image.new("RGB", (100, 100)).save(tmp_path / "square.png")
    if refused:
        with pytest.raises(images.ImageTooLargeError, match="100x100 pixels, more than the limit of 9,999"):
            images.open_image(tmp_path / "square.png", max_pixels=limit)
    else:
        assert images.open_image(tmp_path / "square.png", max_pixels=limit).size == (100, 100)


# PIL warns on opening it; the demo no longer turns that warning into an error with warnings.catch_warnings,
# which is process-wide state in a server whose requests run in threads: the reader's header check refuses it.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_demo_refuses_the_same_huge_upload_with_its_size(huge_png):
    with pytest.raises(
        DemoInputError, match=f"The image is {HUGE_SIDE}x{HUGE_SIDE} pixels, more than the 16 megapixel"
    ):
        decode_upload(huge_png.read_bytes(), max_bytes=2**30)


def test_an_animated_upload_is_its_first_frame_with_a_note(tmp_path):
    frames = [Image.new("RGB", (WIDTH, HEIGHT), (80 * i, 10, 20)) for i in range(3)]
    frames[0].save(tmp_path / "walk.gif", save_all=True, append_images=frames[1:])
    image, notes = decode_upload((tmp_path / "walk.gif").read_bytes())
    assert "an animated image: only its first frame is used" in notes
    np.testing.assert_array_equal(np.asarray(image), np.asarray(images.read_image(tmp_path / "walk.gif")))
    assert np.asarray(image)[0, 0].tolist() == [0, 10, 20]


@pytest.mark.parametrize("workers", [0, 1], ids=["main-process", "worker"])
def test_a_file_broken_after_the_check_fails_loading_with_its_name(inputs, tmp_path, workers):
    broken = tmp_path / "broken.png"
    broken.write_bytes(inputs["rgb8"][0].read_bytes()[:200])  # torchreid's own reader retried this forever
    dataset = submodule("data.datasets.dataset").ImageDataset(
        [(str(broken), 0, 0)], [(str(broken), 0, 0)], [(str(broken), 0, 1)], mode="train", verbose=False
    )
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=lambda batch: batch)
    with pytest.raises(images.ImageReadError, match=f"{broken}: not a readable image"):
        next(iter(loader))
