"""Uploaded query images: untrusted bytes -> an RGB image, or a :class:`DemoInputError` that says why not."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ccsc_plugin.serve.gallery import DemoInputError

MAX_UPLOAD_BYTES = 10 * 2**20  # 10 MiB: a person crop is a few tens of kB
MAX_UPLOAD_PIXELS = 4096 * 4096  # larger is not a person crop, and decoding it costs memory
MIN_IMAGE_SIDE = 16  # below this a crop carries no identity (the models see 128x64 or more)


# ------------------------------------------------------------------------------------------- uploads


def decode_upload(
    data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> tuple[Image.Image, list[str]]:
    """Decode uploaded bytes (never a path) into an RGB image; return it with notes on what was converted.

    Raises :class:`DemoInputError` for an empty, oversized, undecodable, huge or tiny upload.
    """
    if not data:
        raise DemoInputError("The upload is empty: choose a JPEG or PNG image of one person.")
    if len(data) > max_bytes:
        raise DemoInputError(
            f"The upload is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB. "
            "Upload a cropped person image (a few hundred pixels high)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise DemoInputError(
                    f"The image is {width}x{height} pixels, more than the {max_pixels // 10**6} megapixel limit. "
                    "Crop the person first (re-ID models see about 256x128)."
                )
            image.load()
    except DemoInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DemoInputError(
            f"The image is too large to decode safely ({error}). Crop the person first (re-ID models see about "
            "256x128)."
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DemoInputError(
            f"The upload is not an image that can be decoded ({type(error).__name__}). Upload a JPEG, PNG or "
            "WebP picture of one person."
        ) from error
    if min(width, height) < MIN_IMAGE_SIDE:
        raise DemoInputError(
            f"The image is only {width}x{height} pixels; at least {MIN_IMAGE_SIDE} pixels a side are needed "
            "(a person crop is usually 128x64 or larger)."
        )
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    notes = []
    if getattr(image, "n_frames", 1) > 1:
        notes.append("an animated image: only its first frame is used")
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        notes.append("a grayscale image: copied to 3 channels, so colour cues are lost and matches are weaker")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        notes.append("an image with transparency: the alpha channel was dropped (transparent areas on gray)")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), notes
    if image.mode in ("I", "I;16", "F"):
        array = np.asarray(image, dtype=np.float32)
        span = max(float(array.max() - array.min()), 1e-6)
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8))
    if image.mode == "CMYK":
        notes.append("a CMYK image: converted to RGB")
    return image.convert("RGB"), notes
