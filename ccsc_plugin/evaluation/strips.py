"""Tiles in the demo's frames, and rank strips: a query and its top-k gallery matches in one image (the paper's Fig. 3).

A frame says what a tile is: green the query's identity (a right match), red another identity (a wrong one), grey
an unknown identity (an uploaded query), blue the query itself. The demo (``serve.demo_backend``) and the rank
lists of ``ccsc-reid test --visrank`` (``engine.rank_lists``) both draw with :func:`display_tile` and
:func:`bordered`, so a strip on disk looks like the demo's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

DISPLAY_SIZE = (256, 128)  # height, width of every tile shown
BORDER = 6
COLOURS = {True: (0, 170, 60), False: (220, 30, 30), None: (140, 140, 140)}  # right / wrong / unknown identity
QUERY_COLOUR = (40, 90, 220)
GAP, QUERY_GAP, CAPTION_HEIGHT = 8, 32, 22  # pixels between matches, after the query, and under each tile
BACKGROUND, TEXT = (255, 255, 255), (0, 0, 0)


def bordered(image: np.ndarray, colour: tuple[int, int, int], width: int = BORDER) -> np.ndarray:
    """The image inside a coloured frame (the paper's Fig. 3 green/red boxes)."""
    return np.asarray(ImageOps.expand(Image.fromarray(image), border=width, fill=colour))


def display_tile(image: Image.Image) -> np.ndarray:
    """An RGB image at the demo's tile size, as uint8 HxWx3."""
    height, width = DISPLAY_SIZE
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def tile_left(position: int) -> int:
    """The x of a strip's ``position``-th framed tile (0: the query, 1: the rank-1 match, ...)."""
    width = DISPLAY_SIZE[1] + 2 * BORDER
    return 0 if position == 0 else width + QUERY_GAP + (position - 1) * (width + GAP)


def rank_strip(
    query: Image.Image, query_caption: str, matches: Sequence[tuple[Image.Image, str, bool | None]]
) -> Image.Image:
    """The query (blue frame) and its ``matches`` (image, caption, right identity?) left to right, in frames.

    Each caption is written under its tile; tile ``i`` starts at :func:`tile_left` ``(i)``.
    """
    tiles = [bordered(display_tile(query), QUERY_COLOUR)]
    tiles += [bordered(display_tile(image), COLOURS[correct]) for image, _, correct in matches]
    captions = [query_caption, *(caption for _, caption, _ in matches)]
    height, width = tiles[0].shape[:2]
    canvas = Image.new("RGB", (tile_left(len(tiles) - 1) + width, height + CAPTION_HEIGHT), BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for position, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        left = tile_left(position)
        canvas.paste(Image.fromarray(tile), (left, 0))
        box = draw.textbbox((0, 0), caption, font=font)
        text_left = left + max(0, (width - (box[2] - box[0])) // 2)
        draw.text((text_left, height + (CAPTION_HEIGHT - (box[3] - box[1])) // 2 - box[1]), caption, TEXT, font)
    return canvas
