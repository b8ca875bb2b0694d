"""Uploaded query images: untrusted bytes -> an RGB image, or a :class:`DemoInputError` that says why not."""

from __future__ import annotations

from PIL import Image

from ccsc_plugin.data.images import MAX_IMAGE_PIXELS, ImageReadError, ImageTooLargeError, has_transparency, open_image
from ccsc_plugin.data.images import to_rgb as _to_rgb_pixels
from ccsc_plugin.serve.gallery import DemoInputError

MAX_UPLOAD_BYTES = 10 * 2**20  # 10 MiB: a person crop is a few tens of kB
MAX_UPLOAD_PIXELS = MAX_IMAGE_PIXELS  # 4096 x 4096: larger is not a person crop, and decoding it costs memory
MIN_IMAGE_SIDE = 16  # below this a crop carries no identity (the models see 128x64 or more)
_GRAYSCALE = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


# ------------------------------------------------------------------------------------------- uploads


def decode_upload(
    data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> tuple[Image.Image, list[str]]:
    """Decode uploaded bytes (never a path) into an RGB image; return it with notes on what was converted.

    The bytes are read and converted by the reader training and ``test`` use (:mod:`ccsc_plugin.data.images`):
    the same file uploaded gives the same pixels, so the same features. Raises :class:`DemoInputError` for an
    empty, oversized, undecodable, huge (refused from its header, before decoding) or tiny upload.
    """
    if not data:
        raise DemoInputError("The upload is empty: choose a JPEG or PNG image of one person.")
    if len(data) > max_bytes:
        raise DemoInputError(
            f"The upload is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB. "
            "Upload a cropped person image (a few hundred pixels high)."
        )
    try:
        image = open_image(data, max_pixels=max_pixels, name="the upload")
    except ImageTooLargeError as error:
        if error.size is None:
            raise DemoInputError(
                f"The image is too large to decode safely ({error.__cause__}). Crop the person first (re-ID "
                "models see about 256x128)."
            ) from error
        width, height = error.size
        raise DemoInputError(
            f"The image is {width}x{height} pixels, more than the {max_pixels // 10**6} megapixel limit. "
            "Crop the person first (re-ID models see about 256x128)."
        ) from error
    except ImageReadError as error:
        raise DemoInputError(
            f"The upload is not an image that can be decoded ({type(error.__cause__).__name__}). Upload a JPEG, "
            "PNG or WebP picture of one person."
        ) from error
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DemoInputError(
            f"The image is only {width}x{height} pixels; at least {MIN_IMAGE_SIDE} pixels a side are needed "
            "(a person crop is usually 128x64 or larger)."
        )
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """``image`` converted as every reading path converts it (``data.images.to_rgb``), with notes on what changed."""
    notes = []
    if image.info.get("animated"):  # recorded by open_image while the file was open
        notes.append("an animated image: only its first frame is used")
    if image.mode in _GRAYSCALE:
        notes.append("a grayscale image: copied to 3 channels, so colour cues are lost and matches are weaker")
    if has_transparency(image):
        notes.append("an image with transparency: the alpha channel was dropped (transparent areas on gray)")
    if image.mode == "CMYK":
        notes.append("a CMYK image: converted to RGB")
    return _to_rgb_pixels(image), notes
