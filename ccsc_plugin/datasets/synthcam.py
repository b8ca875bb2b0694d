"""SynthCam: a generated multi-camera pedestrian set, written in Market-1501's layout and naming.

No download and no shipped images: the images are drawn deterministically from a seed on first use
into ``<data.root>/synthcam/<spec key>/{bounding_box_train,query,bounding_box_test}`` with Market
names (``0001_c2s1_000004_00.jpg``), and read back by the same ``process_dir`` torchreid uses for
Market-1501. Each camera has its own viewpoint, light, colour cast, background, scale and blur, so
images of one person in one camera are far more alike than across cameras (the paper's Fig. 1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .._torchreid import submodule

Market1501 = submodule("data.datasets.image.market1501").Market1501


@dataclass(frozen=True)
class SynthCamSpec:
    """Size and seed of a generated set; part of the folder name, so specs never collide."""

    num_train_ids: int = 40
    num_test_ids: int = 20
    num_cams: int = 4
    images_per_cam: int = 3
    height: int = 128
    width: int = 64
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


VIEWS = ("front", "back", "side")


def _camera_styles(rng: np.random.Generator, num_cams: int) -> list[dict]:
    return [
        {
            "view": VIEWS[cam % len(VIEWS)],
            "cast": rng.uniform(0.6, 1.3, size=3),
            "brightness": rng.uniform(0.6, 1.25),
            "background": rng.integers(40, 220, size=3),
            "scale": rng.uniform(0.7, 1.0),
            "blur": rng.uniform(0.0, 1.6),
        }
        for cam in range(num_cams)
    ]


def _identity(rng: np.random.Generator) -> dict:
    return {
        "top": rng.integers(0, 256, size=3),
        "bottom": rng.integers(0, 256, size=3),
        "pattern": rng.choice(["plain", "stripes", "checks"]),
        "logo": rng.integers(0, 256, size=3),
        "bag": bool(rng.random() < 0.5),
        "build": rng.uniform(0.75, 1.0),
        "skin": rng.integers(120, 230, size=3),
    }


def draw_person(person: dict, style: dict, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """One image of ``person`` as camera ``style`` sees it (with small per-shot jitter)."""
    height, width = size
    noise = rng.normal(0, 8, size=(height, width, 3))
    canvas = np.clip(style["background"] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    scale = style["scale"] * rng.uniform(0.93, 1.07)
    body_h, body_w = height * 0.9 * scale, width * 0.55 * scale * person["build"]
    if style["view"] == "side":
        body_w *= 0.6
    cx = width / 2 + rng.uniform(-3, 3)
    top = height - body_h - 2
    head = body_h * 0.14
    draw.ellipse([cx - head / 2, top, cx + head / 2, top + head], fill=tuple(int(c) for c in person["skin"]))
    torso = [cx - body_w / 2, top + head, cx + body_w / 2, top + body_h * 0.55]
    draw.rectangle(torso, fill=tuple(int(c) for c in person["top"]))
    if person["pattern"] != "plain":
        dark = tuple(int(c * 0.45) for c in person["top"])
        for y in np.arange(torso[1], torso[3], 6):
            draw.line([torso[0], y, torso[2], y], fill=dark, width=2)
        if person["pattern"] == "checks":
            for x in np.arange(torso[0], torso[2], 6):
                draw.line([x, torso[1], x, torso[3]], fill=dark, width=2)
    if style["view"] == "front":
        draw.rectangle(
            [cx - body_w / 6, torso[1] + 6, cx + body_w / 6, torso[1] + 6 + body_w / 3],
            fill=tuple(int(c) for c in person["logo"]),
        )
    if person["bag"] and style["view"] in ("back", "side"):
        draw.rectangle([cx - body_w / 3, torso[1] + 4, cx + body_w / 3, torso[3] - 4], fill=(60, 40, 30))
    legs = [cx - body_w / 2.5, top + body_h * 0.55, cx + body_w / 2.5, top + body_h]
    draw.rectangle(legs, fill=tuple(int(c) for c in person["bottom"]))
    pixels = np.asarray(image).astype(np.float32) * style["cast"] * style["brightness"]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(style["blur"])) if style["blur"] > 0.2 else image


def generate(folder: Path, spec: SynthCamSpec) -> None:
    """Write the train / query / gallery folders of ``spec`` into ``folder`` (deterministic)."""
    rng = np.random.default_rng(spec.seed)
    styles = _camera_styles(rng, spec.num_cams)
    num_ids = spec.num_train_ids + spec.num_test_ids
    people = [_identity(rng) for _ in range(num_ids)]
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (folder / split).mkdir(parents=True, exist_ok=True)
    for index, person in enumerate(people):
        pid = index + 1
        is_test = index >= spec.num_train_ids
        for cam, style in enumerate(styles):
            for shot in range(spec.images_per_cam):
                image = draw_person(person, style, (spec.height, spec.width), rng)
                split = "bounding_box_train"
                if is_test:
                    split = "query" if shot == 0 and cam < 2 else "bounding_box_test"
                name = f"{pid:04d}_c{cam + 1}s1_{shot:06d}_00.jpg"
                image.save(folder / split / name, quality=92)
    (folder / "spec.json").write_text(json.dumps(asdict(spec), indent=2))


class SynthCam(Market1501):
    """torchreid image dataset over a generated SynthCam tree (generated on first use)."""

    dataset_dir = "synthcam"
    spec = SynthCamSpec()

    def __init__(self, root: str = "", **kwargs) -> None:
        self.root = str(Path(root).expanduser().resolve())
        self.data_dir = str(Path(self.root) / self.dataset_dir / self.spec.key())
        folder = Path(self.data_dir)
        splits = ("bounding_box_train", "query", "bounding_box_test")
        if not (folder / "spec.json").is_file() or not all((folder / split).is_dir() for split in splits):
            generate(folder, self.spec)  # first use, or a damaged cache: (re)draw it, deterministically
        self.train_dir = str(folder / "bounding_box_train")
        self.query_dir = str(folder / "query")
        self.gallery_dir = str(folder / "bounding_box_test")
        train = self.process_dir(self.train_dir, relabel=True)
        query = self.process_dir(self.query_dir, relabel=False)
        gallery = self.process_dir(self.gallery_dir, relabel=False)
        super(Market1501, self).__init__(train, query, gallery, **kwargs)
