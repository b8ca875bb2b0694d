"""``ccsc-reid extract``: the test features of a folder's or a CSV's images, written to one ``.npz`` file.

    ccsc-reid extract runs/my-run --images gallery/ --out feats.npz           # every image below the folder
    ccsc-reid extract runs/my-run --images labels.csv --out feats.npz         # path[,pid,camid] rows

The model comes back through the one loader (:func:`ccsc_plugin.pipeline.trained.load_trained`, via
:meth:`FeatureExtractor.from_checkpoint`), at the checkpoint's input size and normalisation, so each feature is
the one ``ccsc-reid test`` computes for that image (flip-averaged with ``--flip`` or the stored ``test.flip``).
Images are read by the one reader in batches, with a progress bar; an unreadable one (missing, corrupt, too
large) is skipped and named in a warning, as training skips it (:func:`ccsc_plugin.data.integrity.unreadable_reason`).

The archive holds ``features`` (N x D float32, the model's raw features: ``normalize_feature`` and
``dist_metric`` say how ``test`` compares them), ``paths`` (N absolute paths, in the listed order), ``pids`` and
``camids`` (int64) when the CSV has those columns, ``skipped`` (the unreadable paths), ``checkpoint`` and
``flip``. It is written atomically and never over an existing file unless ``overwrite``.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ccsc_plugin.checkpoint import atomic_write
from ccsc_plugin.data.csv_dataset import INT64
from ccsc_plugin.data.integrity import BadImageWarning, unreadable_reason
from ccsc_plugin.errors import RecipeError, read_utf8
from ccsc_plugin.serve.inference import IMAGE_EXTENSIONS, FeatureExtractor, find_images

LABEL_COLUMNS = ("pid", "camid")  # optional CSV columns carried into the archive


class ExtractError(RecipeError):
    """Input ``extract`` cannot use (its images, its output file); the message names it and the fix."""


@dataclass
class ImageList:
    """Image paths to extract, and the CSV's integer ``pid`` / ``camid`` columns, if it has them."""

    paths: list[str]
    labels: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Extracted:
    """Features of the readable images, their indices in the list, and the unreadable paths with why."""

    features: torch.Tensor
    kept: list[int]
    skipped: dict[str, str]


def check_output(out: str | Path, overwrite: bool = False) -> Path:
    """``out`` if it can be written: a ``.npz`` name, and no existing file unless ``overwrite``."""
    out = Path(out).expanduser()
    if out.suffix.lower() != ".npz":
        raise ExtractError(f"--out {out}: name a .npz file (numpy's archive), e.g. --out feats.npz.")
    if out.is_dir():
        raise ExtractError(f"--out {out} is a folder: name a file in it, e.g. --out {out / 'feats.npz'}.")
    if out.exists() and not overwrite:
        raise ExtractError(f"--out {out} exists: pass --overwrite to replace it, or name another file.")
    return out


def list_images(source: str | Path) -> ImageList:
    """The images of a folder (every image file below it, sorted) or of a CSV (its ``path`` column, in order)."""
    source = Path(source).expanduser()
    if source.is_file() and source.suffix.lower() == ".csv":
        listed = read_image_csv(source)
    elif source.is_dir():
        listed = ImageList([str(path) for path in find_images(source.absolute())])
    else:
        raise FileNotFoundError(
            f"--images {source}: no such folder or .csv file. Give a folder of images or a CSV with a path column."
        )
    if not listed.paths:
        what = "no rows" if source.is_file() else f"no image files ({', '.join(IMAGE_EXTENSIONS)}) below it"
        raise ExtractError(f"--images {source}: {what}; nothing to extract.")
    return listed


def read_image_csv(csv_path: Path) -> ImageList:
    """A CSV's ``path`` column (relative paths against the CSV's folder) and its ``pid`` / ``camid`` columns."""
    with io.StringIO(read_utf8(csv_path, ExtractError), newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [name.strip() for name in reader.fieldnames or []]
        if "path" not in columns:
            raise ExtractError(
                f"{csv_path}: no 'path' column; found {columns or 'no header'}. The first line must name the "
                "columns: path (and optionally pid,camid), as in the csv dataset's labels.csv."
            )
        present = [name for name in LABEL_COLUMNS if name in columns]
        listed = ImageList([], {name: [] for name in present})
        for line, raw in enumerate(reader, start=2):
            row = {(key or "").strip(): (value or "").strip() for key, value in raw.items() if key is not None}
            if not row["path"]:
                raise ExtractError(f"{csv_path} line {line}: the path is empty.")
            path = Path(row["path"]).expanduser()
            listed.paths.append(str((path if path.is_absolute() else csv_path.parent / path).resolve()))
            for name in present:
                listed.labels[name].append(_integer(row[name], name, csv_path, line))
    return listed


def _integer(text: str, name: str, csv_path: Path, line: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ExtractError(f"{csv_path} line {line}: {name} must be an integer, got {text!r}.") from None
    if value not in INT64:
        raise ExtractError(f"{csv_path} line {line}: {name} must fit a 64-bit integer, got {value}.")
    return value


def extract_images(extractor: FeatureExtractor, paths: list[str], progress: bool = True) -> Extracted:
    """Features of ``paths``, ``extractor.batch_size`` at a time; an unreadable image is skipped and named."""
    features, kept, skipped = [], [], {}
    with tqdm(total=len(paths), desc="features", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), extractor.batch_size):
            chunk = paths[start : start + extractor.batch_size]
            images = _read_images(chunk, start, kept, skipped)
            if images:
                features.append(extractor.embed(extractor.preprocess(images)))
            bar.update(len(chunk))
    if not kept:
        listing = "; ".join(f"{path} ({reason})" for path, reason in list(skipped.items())[:5])
        raise ExtractError(f"None of the {len(paths)} image(s) can be read, e.g. {listing}.")
    return Extracted(torch.cat(features), kept, skipped)


def _read_images(paths: list[str], start: int, kept: list[int], skipped: dict[str, str]) -> list[Image.Image]:
    """The RGB images of ``paths`` (list indices from ``start``) that read; the others go to ``skipped``, warned."""
    images: list[Image.Image] = []
    for index, path in enumerate(paths, start):
        reason = unreadable_reason(path, keep=lambda _, image: images.append(image))
        if reason is None:
            kept.append(index)
        else:
            skipped[path] = reason
            warnings.warn(f"Skipping unreadable image {path} ({reason})", BadImageWarning, stacklevel=3)
    return images


@dataclass
class ExtractSummary:
    """What ``extract`` wrote: the file, how many features of what size, and the images it skipped."""

    out: Path
    count: int
    dim: int
    flip: bool
    skipped: dict[str, str]

    def __str__(self) -> str:
        skipped = f"; skipped {len(self.skipped)} unreadable image(s)" if self.skipped else ""
        flip = " (flip-averaged)" if self.flip else ""
        return f"Wrote {self.out}: {self.count} features of {self.dim} dims{flip}{skipped}"


def extract(
    weights: str | Path,
    images: str | Path,
    out: str | Path,
    batch_size: int = 64,
    flip: bool | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """``ccsc-reid extract``: the features of ``images`` (folder or CSV) with checkpoint ``weights``, into ``out``.

    ``flip`` None follows the checkpoint's stored ``test.flip``. Output and input are checked before the model
    loads, so a mistake costs no extraction.
    """
    out = check_output(out, overwrite)
    listed = list_images(images)
    extractor = FeatureExtractor.from_checkpoint(weights, device=device, batch_size=batch_size, flip=flip)
    done = extract_images(extractor, listed.paths, progress)
    test = extractor.cfg.test
    arrays = {
        "features": done.features.numpy().astype(np.float32),
        "paths": np.array([listed.paths[i] for i in done.kept], dtype=str),
        **{f"{name}s": np.array([ids[i] for i in done.kept], dtype=np.int64) for name, ids in listed.labels.items()},
        "skipped": np.array(list(done.skipped), dtype=str),
        "checkpoint": np.array(str(extractor.checkpoint)),
        "flip": np.array(extractor.flip),
        "normalize_feature": np.array(bool(test.normalize_feature)),
        "dist_metric": np.array(str(test.dist_metric)),
    }
    atomic_write(out, lambda tmp: _save_npz(tmp, arrays), size_hint=arrays["features"].nbytes)
    return ExtractSummary(out, len(done.kept), int(done.features.shape[1]), extractor.flip, done.skipped)


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a file object: numpy adds no second .npz suffix
        np.savez(handle, **arrays)
