"""The one image reader: every image the plugin reads becomes RGB here, so a file gives the same pixels everywhere.

Training and ``ccsc-reid test`` (torchreid's datasets, bound by :func:`bind_torchreid_reader`), the up-front
image check (:mod:`.integrity`), the demo's gallery (``serve.gallery.read_rgb``) and uploads
(``serve.uploads.decode_upload``) and feature extraction (``serve.inference``) all read through
:func:`open_image` and :func:`to_rgb`: the same image, uploaded or on disk, is the same array, so it has the
same features in the demo as in ``test``.

:func:`to_rgb`, by the image's mode:

- 16-bit grayscale (``I;16``, ``I;16B``, ...; and ``I``, which holds 16-bit samples when PIL decodes a 16-bit
  file): scaled by the bit depth, ``value >> 8`` (0..65535 -> 0..255), the high byte, which is how PIL itself
  decodes 16-bit RGB, RGBA and gray+alpha PNGs, so a 16-bit gray image and the same image saved as 16-bit RGB
  agree. Not stretched from each image's own min to max: that would give every crop its own contrast (a dark
  crop brightened, a flat one turned to noise), and one person different pixels in different images.
  PIL's ``convert("RGB")`` clips instead (a 16-bit PNG turns almost white: mean 254 where it should be 97).
- ``F`` (32-bit float): PIL's conversion (values clipped to 0..255).
- Transparency (``RGBA``, ``LA``, ``PA``, or a ``P`` / ``L`` / ``RGB`` image with a transparent colour):
  composited on mid gray (:data:`BACKGROUND`), so transparent areas are neither black nor the hidden colour.
- Everything else (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``...): PIL's ``convert("RGB")``.
- An animated image: its first frame.

Bounds: an image over ``max_pixels`` (:data:`MAX_IMAGE_PIXELS`, 4096 x 4096; a person crop is a few hundred
pixels high) is refused from its header, before it is decoded, with :class:`ImageTooLargeError` naming it:
a 12000 x 12000 PNG is a few hundred kB on disk and 430 MB decoded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ccsc_plugin._torchreid import submodule
from ccsc_plugin.errors import RecipeError

MAX_IMAGE_PIXELS = 4096 * 4096  # the largest image decoded; the demo's upload limit too
BACKGROUND = (128, 128, 128)  # what transparent pixels show
_SIXTEEN_BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # one channel of 16-bit samples


class ImageReadError(RecipeError):
    """An image cannot be read (not an image, corrupt, truncated); the message names it, ``reason`` says why.

    Built from one message, as a DataLoader worker's exception is rebuilt in the main process.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message

    @classmethod
    def of(cls, name: str, reason: str) -> ImageReadError:
        return cls(f"{name}: {reason}", reason)


class ImageTooLargeError(ImageReadError):
    """An image has more than ``limit`` pixels (``size`` from its header; None when PIL refused it first)."""

    size: tuple[int, int] | None = None
    limit: int = MAX_IMAGE_PIXELS

    @classmethod
    def of_size(cls, name: str, size: tuple[int, int] | None, limit: int) -> ImageTooLargeError:
        shown = f"{size[0]}x{size[1]} pixels" if size else "more than twice PIL's decompression-bomb limit of pixels"
        error = cls.of(
            name,
            f"{shown}, more than the limit of {limit:,} ({limit / 1e6:.1f} megapixels), so it is not decoded: "
            "a person crop is a few hundred pixels high. Crop or downscale it.",
        )
        error.size, error.limit = size, limit
        return error


def open_image(source: str | Path | bytes, max_pixels: int = MAX_IMAGE_PIXELS, name: str | None = None) -> Image.Image:
    """The decoded image of a file or of bytes, in its own mode; refused before decoding above ``max_pixels``.

    Only the first frame is decoded; ``info["animated"]`` says whether there were more.

    ``name`` is what messages call it (default: the path, or "the image"). Raises :class:`ImageTooLargeError`,
    :class:`ImageReadError`, or ``FileNotFoundError`` for a path that is no file.
    """
    if isinstance(source, bytes):
        name, source = name or "the image", io.BytesIO(source)
    else:
        name = name or str(source)
        if not Path(source).is_file():
            raise FileNotFoundError(f"Image {source} does not exist.")
    try:
        with Image.open(source) as image:
            if image.width * image.height > max_pixels:
                raise ImageTooLargeError.of_size(name, image.size, max_pixels)
            animated = bool(getattr(image, "is_animated", False))  # needs the open file: kept for notes
            image.load()  # decodes (the first frame); the file is closed on leaving, the pixels are kept
            image.info["animated"] = animated
            return image
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:  # raised by Image.open itself, above twice PIL's own limit
        raise ImageTooLargeError.of_size(name, None, max_pixels) from error
    except MemoryError:
        raise
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, EOFError, struct.error...
        raise ImageReadError.of(name, f"not a readable image ({type(error).__name__}: {error})") from error


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, the one conversion of every reading path (see the module docstring)."""
    if image.mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        gray = Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))
        if isinstance(image.info.get("transparency"), int):  # a 16-bit transparent gray value
            gray.putalpha(Image.fromarray(((values != image.info["transparency"]) * 255).astype(np.uint8)))
        image = gray
    if has_transparency(image):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """The RGB image of the file ``path`` (torchreid's ``read_image`` signature; see :func:`open_image`)."""
    return to_rgb(open_image(path))


def read_image_bytes(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, name: str = "the image") -> Image.Image:
    """The RGB image of encoded bytes (an upload), converted exactly as a file is."""
    return to_rgb(open_image(data, max_pixels, name))


def bind_torchreid_reader() -> None:
    """Make torchreid's image datasets read through :func:`read_image` (idempotent).

    ``ImageDataset.__getitem__`` (and ``VideoDataset``'s) call ``read_image``, a global of the module
    ``torchreid...data.datasets.dataset`` imported from ``utils.tools``; rebinding that global is the only way to
    give training and ``test`` this reader without copying torchreid's dataset classes. It is done at plugin
    import (``data.registry.register_datasets``), so it holds in DataLoader workers too: forked ones inherit it,
    and spawned ones import the plugin when they unpickle the loaders' ``worker_init_fn``
    (``data.loaders.leave_signals_to_main_process``). torchreid's own reader also retried a corrupt file
    forever; this one raises :class:`ImageReadError` naming it.
    """
    submodule("data.datasets.dataset").read_image = read_image
