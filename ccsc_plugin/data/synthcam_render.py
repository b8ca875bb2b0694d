"""SynthCam's renderer: draws one shot of a generated person as one camera sees it (PIL, no dependency).

It models what CCSC is about (the paper's Fig. 1). Each camera has its own viewpoint (front, back or
side of the same clothes, so a chest logo, a backpack or its straps show in some views only), scene
background, illumination (brightness and a light direction), colour cast, person scale and blur. A
person is their clothing colours and pattern, trousers, shorts or skirt, hair, hat, shoes, logo, bag
and body build; identities come in look-alike pairs that share clothing colours and differ only in
details. Shots of one person in one camera differ by small jitter only (position, stride, light), so
they are far more alike than shots of the same person in two cameras.

:mod:`ccsc_plugin.data.synthcam` lays the shots out as a dataset.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

VIEWS = ("front", "back", "side")
GENERATOR_VERSION = 3  # part of every set's cache key: bump it whenever the drawing changes
SUPERSAMPLE = 2  # draw at 2x and downsample: anti-aliased edges without a dependency
Colour = tuple[int, int, int]


def stream(seed: int, *path: int) -> np.random.Generator:
    """An independent stream per (seed, what, index...): one image never shifts another's randomness."""
    return np.random.default_rng([seed, *path])


def _hsv(hue: float, sat: float, val: float) -> Colour:
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue % 1.0, sat, val))


def _clothing_colour(rng: np.random.Generator) -> Colour:
    """Real clothes are often neutral (black, grey, white, navy, beige); the rest saturated."""
    if rng.random() < 0.35:
        neutral = [(25, 25, 28), (70, 70, 75), (140, 140, 140), (225, 225, 220), (30, 40, 80), (190, 170, 130)]
        base = np.array(neutral[rng.integers(len(neutral))]) + rng.integers(-12, 13, size=3)
        return tuple(int(c) for c in np.clip(base, 0, 255))
    return _hsv(rng.random(), rng.uniform(0.45, 0.95), rng.uniform(0.35, 0.95))


def _blend(a: Colour, b: Colour, weight: float = 0.5) -> Colour:
    return tuple(int(weight * x + (1 - weight) * y) for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------------------- cameras
def camera_style(seed: int, cam: int) -> dict:
    """Everything camera ``cam`` imposes on every image it takes (view, scene, light, scale, blur)."""
    rng = stream(seed, 1, cam)
    gains = rng.uniform(0.8, 1.2, size=3)
    wall = _hsv(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.75))
    return {
        "view": VIEWS[cam] if cam < len(VIEWS) else VIEWS[rng.integers(len(VIEWS))],
        "facing": 1 if rng.random() < 0.5 else -1,  # side view: walking left or right
        "wall": wall,
        "floor": _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.55)),
        "horizon": rng.uniform(0.45, 0.75),
        "props": [  # windows, doors, pillars, signs: (x0, y0, x1, y1) in scene units and a colour
            (
                *sorted(rng.uniform(0, 2, size=2)),
                *sorted(rng.uniform(0, 0.7, size=2)),
                _blend(wall, _clothing_colour(rng)),
            )
            for _ in range(rng.integers(2, 6))
        ],
        "brightness": rng.uniform(0.7, 1.2),
        "light_slope": rng.uniform(-0.35, 0.35),  # light from the left (<0) or the right (>0)
        "cast": gains / gains.mean(),
        "scale": rng.uniform(0.78, 0.95),
        "blur": rng.uniform(0.0, 1.2),
        "noise": rng.uniform(2.0, 7.0),
    }


def _draw_scene(draw: ImageDraw.ImageDraw, style: dict, size: tuple[int, int], shift: float) -> None:
    """The camera's fixed scene (wall, floor, props), panned by ``shift`` of the image width."""
    height, width = size
    horizon = style["horizon"] * height
    draw.rectangle([0, 0, width, horizon], fill=style["wall"])
    draw.rectangle([0, horizon, width, height], fill=style["floor"])
    for x0, x1, y0, y1, colour in style["props"]:
        box = [(x0 - shift) * width, y0 * horizon / 0.7, (x1 - shift) * width, y1 * horizon / 0.7]
        draw.rectangle(box, fill=colour)


# ---------------------------------------------------------------------------------------- identities
def identity(seed: int, index: int) -> dict:
    """Clothes, accessories and build of person ``index``; odd indices are look-alikes of the one before."""
    rng = stream(seed, 2, index)
    person = {
        "top": _clothing_colour(rng),
        "top2": _clothing_colour(rng),
        "pattern": str(rng.choice(["plain", "plain", "stripes", "checks", "split"])),
        "sleeves": str(rng.choice(["long", "short"])),
        "bottom": _clothing_colour(rng),
        "lower": str(rng.choice(["trousers", "trousers", "shorts", "skirt"])),
        "shoes": _clothing_colour(rng),
        "skin": _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95)),
        "hair": _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.6)),
        "long_hair": bool(rng.random() < 0.35),
        "hat": _clothing_colour(rng) if rng.random() < 0.2 else None,
        "logo": (_clothing_colour(rng), str(rng.choice(["square", "disc", "band"]))) if rng.random() < 0.6 else None,
        "bag": str(rng.choice(["none", "none", "backpack", "shoulder"])),
        "bag_colour": _clothing_colour(rng),
        "build": rng.uniform(0.8, 1.2),
        "stature": rng.uniform(0.9, 1.05),
    }
    if index % 2 == 1:
        twin = identity(seed, index - 1)
        # Same clothes at a glance; told apart only by details a single view may hide.
        for key in ("top", "top2", "bottom", "pattern", "sleeves", "lower", "skin"):
            person[key] = twin[key]
        if person["bag"] == twin["bag"]:  # a bag (or its straps) shows from some viewpoints only
            person["bag"] = "none" if twin["bag"] == "backpack" else "backpack"
    return person


def _lower_body(draw, person: dict, box: tuple[float, float, float, float], stride: float, view: str) -> None:
    x0, y0, x1, y1 = box
    mid = (x0 + x1) / 2
    knee = y0 + 0.45 * (y1 - y0)
    leg_colour = person["bottom"]
    if person["lower"] == "skirt":
        flare = 0.15 * (x1 - x0)
        draw.polygon([(x0, y0), (x1, y0), (x1 + flare, knee), (x0 - flare, knee)], fill=leg_colour)
        leg_colour = person["skin"]
    gap = 0.06 * (x1 - x0)
    if view == "side":  # legs apart in the walking direction
        swing = stride * (x1 - x0) * 0.9
        legs = [(mid - gap, mid + gap, -swing), (mid - gap, mid + gap, swing)]
    else:
        legs = [(x0, mid - gap, 0.0), (mid + gap, x1, 0.0)]
    for lx0, lx1, dx in legs:
        draw.polygon([(lx0, y0), (lx1, y0), (lx1 + dx, y1), (lx0 + dx, y1)], fill=leg_colour)
        if person["lower"] == "shorts":
            draw.polygon(
                [(lx0 + dx * 0.45, knee), (lx1 + dx * 0.45, knee), (lx1 + dx, y1), (lx0 + dx, y1)], fill=person["skin"]
            )
        foot = 0.07 * (y1 - y0)
        draw.rectangle([lx0 + dx - foot * 0.3, y1 - foot, lx1 + dx + foot * 0.3, y1 + foot * 0.4], fill=person["shoes"])


def _torso(draw, person: dict, box: tuple[float, float, float, float], view: str, facing: int) -> None:
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    draw.rectangle(box, fill=person["top"])
    pattern = person["pattern"]
    if pattern == "split" and view != "side":  # two-tone: mirrored between front and back
        left, right = (x0, (x0 + x1) / 2) if view == "front" else ((x0 + x1) / 2, x1)
        draw.rectangle([left, y0, right, y1], fill=person["top2"])
    elif pattern in ("stripes", "checks"):
        step = max(height / 5, 3)
        for y in np.arange(y0 + step / 2, y1, step):
            draw.rectangle([x0, y, x1, y + step / 3], fill=person["top2"])
        if pattern == "checks":
            for x in np.arange(x0 + step / 2, x1, step):
                draw.rectangle([x, y0, x + step / 3, y1], fill=person["top2"])
    logo = person["logo"]
    if logo is not None and view == "front":  # a chest print: invisible from the back and the side
        colour, shape = logo
        lx, ly, size = (x0 + x1) / 2, y0 + 0.35 * height, 0.28 * width
        if shape == "disc":
            draw.ellipse([lx - size, ly - size, lx + size, ly + size], fill=colour)
        elif shape == "square":
            draw.rectangle([lx - size, ly - size, lx + size, ly + size], fill=colour)
        else:
            draw.rectangle([x0, ly - size / 2, x1, ly + size / 2], fill=colour)
    bag, bag_colour = person["bag"], person["bag_colour"]
    strap = max(width * 0.09, 1.5)
    if bag == "backpack":
        if view == "back":
            draw.rounded_rectangle([x0 + 0.12 * width, y0 + 0.08 * height, x1 - 0.12 * width, y1 - 0.02 * height],
                                   radius=width * 0.1, fill=bag_colour)  # fmt: skip
        elif view == "front":  # only the two straps show
            for sx in (x0 + 0.22 * width, x1 - 0.22 * width - strap):
                draw.rectangle([sx, y0, sx + strap, y0 + 0.7 * height], fill=bag_colour)
        else:
            back = x0 if facing > 0 else x1  # the pack sticks out behind the walker
            left, right = sorted((back, back - facing * 0.55 * width))
            draw.rectangle([left, y0 + 0.08 * height, right, y0 + 0.8 * height], fill=bag_colour)
    elif bag == "shoulder":
        if view == "side":  # the bag itself hangs at the hip
            draw.rectangle([x0 - 0.1 * width, y1 - 0.3 * height, x1 + 0.1 * width, y1 + 0.15 * height], fill=bag_colour)
        else:  # a diagonal strap across the chest or the back
            start, end = (x0, x1) if view == "front" else (x1, x0)
            draw.line([(start, y0), (end, y1)], fill=bag_colour, width=int(strap))


def _head(draw, person: dict, centre: tuple[float, float], size: float, view: str, facing: int) -> None:
    cx, cy = centre
    box = [cx - size * 0.42, cy - size / 2, cx + size * 0.42, cy + size / 2]
    draw.ellipse(box, fill=person["skin"])
    if view == "back":
        draw.ellipse(box, fill=person["hair"])
    elif view == "side":
        draw.pieslice(box, 90 if facing > 0 else -90, 270 if facing > 0 else 90, fill=person["hair"])
    else:
        draw.chord(box, 180, 360, fill=person["hair"])
    if person["long_hair"] and view != "front":
        draw.rectangle([cx - size * 0.38, cy, cx + size * 0.38, cy + size * 0.9], fill=person["hair"])
    if person["hat"] is not None:
        draw.chord([box[0] - size * 0.05, box[1] - size * 0.1, box[2] + size * 0.05, cy + size * 0.15], 180, 360,
                   fill=person["hat"])  # fmt: skip


def draw_person(person: dict, style: dict, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """One shot of ``person`` as the camera ``style`` sees it; ``rng`` adds the per-shot jitter."""
    height, width = size
    big = (height * SUPERSAMPLE, width * SUPERSAMPLE)
    image = Image.new("RGB", (big[1], big[0]))
    draw = ImageDraw.Draw(image)
    _draw_scene(draw, style, big, shift=rng.uniform(0.0, 0.4))  # the person walks past the scene
    view, facing = style["view"], style["facing"]
    tall = big[0] * style["scale"] * person["stature"] * rng.uniform(0.97, 1.03)
    feet = big[0] * rng.uniform(0.94, 0.99)
    top = feet - tall
    cx = big[1] / 2 + rng.uniform(-0.05, 0.05) * big[1]
    shoulder = tall * 0.32 * person["build"] * (0.62 if view == "side" else 1.0)
    head = tall * 0.14
    torso = (cx - shoulder / 2, top + head * 0.95, cx + shoulder / 2, top + tall * 0.53)
    arm = shoulder * (0.5 if view == "side" else 0.22)
    arm_colour = person["top"] if person["sleeves"] == "long" else person["skin"]
    if view != "side":
        for ax in (torso[0] - arm * 0.85, torso[2] - arm * 0.15):
            draw.rectangle([ax, torso[1] + 1, ax + arm, top + tall * 0.55], fill=arm_colour)
    _lower_body(draw, person, (torso[0] + shoulder * 0.06, torso[3], torso[2] - shoulder * 0.06, feet),
                stride=rng.uniform(0.1, 0.45), view=view)  # fmt: skip
    _torso(draw, person, torso, view, facing)
    if view == "side":  # one arm in front of the torso, swinging
        swing = rng.uniform(-0.25, 0.25) * tall * 0.25
        draw.polygon([(cx - arm / 2, torso[1] + 2), (cx + arm / 2, torso[1] + 2),
                      (cx + arm / 2 + swing, top + tall * 0.55), (cx - arm / 2 + swing, top + tall * 0.55)],
                     fill=arm_colour)  # fmt: skip
    _head(draw, person, (cx, top + head / 2), head, view, facing)
    image = image.resize((width, height), Image.Resampling.BOX)
    return _apply_camera(image, style, rng)


def _apply_camera(image: Image.Image, style: dict, rng: np.random.Generator) -> Image.Image:
    """Light (level, direction, per-shot flicker), colour cast, blur and sensor noise of the camera."""
    height, width = image.height, image.width
    ramp = 1.0 + style["light_slope"] * np.linspace(-1, 1, width)[None, :, None]
    gain = style["brightness"] * rng.uniform(0.95, 1.05) * ramp * style["cast"][None, None, :]
    pixels = np.asarray(image, dtype=np.float32) * gain
    if style["blur"] > 0.2:
        blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        pixels = np.asarray(blurred.filter(ImageFilter.GaussianBlur(style["blur"] * height / 128)), dtype=np.float32)
    pixels += rng.normal(0.0, style["noise"], size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
