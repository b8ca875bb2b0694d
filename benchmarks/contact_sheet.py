"""Contact sheet of the generated SynthCam set: one row per identity, one column per camera.

    python benchmarks/contact_sheet.py                       # writes docs/synthcam_contact_sheet.png
    python benchmarks/contact_sheet.py --ids 10 --seed 3 --out sheet.png

Rows come in look-alike pairs (identities 1-2, 3-4, ...): same clothing colours, different details.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from ccsc_plugin.data.synthcam import SynthCamSpec, render_shot
from ccsc_plugin.data.synthcam_render import camera_style

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "synthcam_contact_sheet.png"


def contact_sheet(spec: SynthCamSpec, num_ids: int, shots: int = 1, zoom: int = 1) -> Image.Image:
    """A grid of the first ``num_ids`` identities (rows) x cameras x ``shots`` (columns)."""
    label_w, label_h, pad = 34, 16, 3
    cell_w, cell_h = spec.width * zoom, spec.height * zoom
    cols = spec.num_cams * shots
    sheet = Image.new("RGB", (label_w + cols * (cell_w + pad), label_h + num_ids * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    styles = [camera_style(spec.seed, cam) for cam in range(spec.num_cams)]
    for cam, style in enumerate(styles):
        x = label_w + cam * shots * (cell_w + pad)
        draw.text((x + 2, 2), f"cam {cam + 1} ({style['view']})", fill="black")
    for index in range(num_ids):
        y = label_h + index * (cell_h + pad)
        draw.text((2, y + cell_h // 2 - 5), f"id {index + 1}", fill="black")
        for cam in range(spec.num_cams):
            for shot in range(shots):
                image = render_shot(spec, index, cam, shot)
                x = label_w + (cam * shots + shot) * (cell_w + pad)
                sheet.paste(image.resize((cell_w, cell_h), Image.Resampling.NEAREST), (x, y))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=8, help="identities (rows)")
    parser.add_argument("--cams", type=int, default=4, help="cameras (columns)")
    parser.add_argument("--shots", type=int, default=2, help="shots per camera (same-camera variation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zoom", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    spec = SynthCamSpec(num_train_ids=args.ids, num_test_ids=1, num_cams=args.cams, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(spec, args.ids, args.shots, args.zoom)
    sheet.quantize(colors=256).save(args.out, optimize=True)  # a 256-colour PNG: a third of the size
    print(f"Contact sheet written to {args.out}")


if __name__ == "__main__":
    main()
