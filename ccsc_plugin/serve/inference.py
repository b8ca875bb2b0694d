"""Feature extraction from a trained checkpoint: image paths, PIL images, numpy arrays or a folder.

    from ccsc_plugin.serve.inference import FeatureExtractor

    extractor = FeatureExtractor.from_checkpoint("runs/my-run")        # run folder or .pt file
    features = extractor(["a.jpg", "b.jpg"])                             # (2, 512) float32 tensor
    features, paths = extractor.extract_folder("gallery/")              # every image below a folder
    index = extractor.index_folder("gallery/")                          # FAISS index labelled by path
    hits = index.search(extractor(query_images), k=10)

The checkpoint's stored recipe (``config``) gives the model, input size and normalisation
(:func:`ccsc_plugin.pipeline.trained.load_trained`), so features match what ``ccsc-reid test`` computes:
torchreid's test transform (resize, to tensor, normalise) and the model in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm
from yacs.config import CfgNode as CN

from ccsc_plugin.data.images import read_image, to_rgb
from ccsc_plugin.models.flip import flip_averaged
from ccsc_plugin.pipeline.trained import load_trained, test_transform
from ccsc_plugin.serve.index import GalleryIndex

ImageInput = str | Path | Image.Image | np.ndarray
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def to_pil(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a path, a PIL image, or an H x W (x 3) uint8 / [0, 1] float RGB array.

    Paths and PIL images are converted as training and ``test`` convert them (:mod:`ccsc_plugin.data.images`).
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"Image {path} does not exist.")
        return read_image(path)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise ValueError(f"An image array must be H x W or H x W x 3 (RGB), got shape {image.shape}.")
        if np.issubdtype(image.dtype, np.floating):
            if image.min() < 0 or image.max() > 1:
                raise ValueError("A float image array must hold values in [0, 1]; pass uint8 for 0..255 values.")
            image = np.round(image * 255)
        elif image.dtype != np.uint8:
            raise ValueError(f"An image array must be uint8 (0..255) or float in [0, 1], got {image.dtype}.")
        return Image.fromarray(image.astype(np.uint8).squeeze()).convert("RGB")
    raise TypeError(f"Cannot read an image from {type(image).__name__}: pass a path, a PIL image or a numpy array.")


def find_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files below ``folder`` (sorted), by extension."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Folder {folder} does not exist.")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


class FeatureExtractor:
    """Batched, eval-mode feature extraction with a re-ID model.

    Args:
        model: returns the feature in eval mode (e.g. ``resnet50_ccsc``, ``osnet_x0_25``).
        height, width, norm_mean, norm_std: the test transform (the recipe's ``data`` values).
        device: ``"cuda"``, ``"cpu"``...; default CUDA when available.
        batch_size: images per forward pass.
        flip: average each image's features with its mirror's (``test.flip``, :mod:`ccsc_plugin.models.flip`).

    :meth:`from_checkpoint` also keeps the ``checkpoint`` file and its stored recipe ``cfg`` (else None).
    """

    checkpoint: Path | None = None
    cfg: CN | None = None

    def __init__(
        self,
        model: torch.nn.Module,
        height: int = 384,
        width: int = 128,
        norm_mean: Sequence[float] = (0.485, 0.456, 0.406),
        norm_std: Sequence[float] = (0.229, 0.224, 0.225),
        device: str | torch.device | None = None,
        batch_size: int = 64,
        flip: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.height, self.width = height, width
        self.batch_size = batch_size
        self.flip = flip
        self.transform = test_transform(height, width, norm_mean, norm_std)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None, batch_size: int = 64, flip: bool | None = None
    ) -> FeatureExtractor:
        """An extractor for a ``ccsc-reid train`` checkpoint (file, or run folder: its latest).

        ``flip`` None follows the ``test.flip`` of the checkpoint's stored recipe.
        """
        trained = load_trained(path)
        cfg = trained.cfg
        extractor = cls(
            trained.model,
            height=cfg.data.height,
            width=cfg.data.width,
            norm_mean=cfg.data.norm_mean,
            norm_std=cfg.data.norm_std,
            device=device,
            batch_size=batch_size,
            flip=bool(cfg.test.flip) if flip is None else flip,
        )
        extractor.checkpoint, extractor.cfg = trained.path, cfg
        return extractor

    def preprocess(self, images: Iterable[ImageInput]) -> torch.Tensor:
        """A normalised (N, 3, height, width) batch, as torchreid's test loader builds it."""
        return torch.stack([self.transform(to_pil(image)) for image in images])

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Features (float32, on the CPU) of a preprocessed batch, flip-averaged if ``flip``."""
        return flip_averaged(self.model, batch.to(self.device), self.flip).cpu()

    @torch.no_grad()
    def extract(self, images: ImageInput | Sequence[ImageInput], progress: bool = True) -> torch.Tensor:
        """Features (N x D, float32, on the CPU) of one image or a sequence, ``batch_size`` at a time."""
        if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim <= 3):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("No images given: pass at least one path, PIL image or array.")
        features = []
        # the bar stays when done: it reports how many images were read
        with tqdm(total=len(images), desc="features", unit="img", disable=not progress) as bar:
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                features.append(self.embed(self.preprocess(chunk)))
                bar.update(len(chunk))
        return torch.cat(features)

    __call__ = extract

    def extract_folder(
        self, folder: str | Path, recursive: bool = True, progress: bool = True
    ) -> tuple[torch.Tensor, list[Path]]:
        """Features of every image below ``folder`` and their paths (same order)."""
        paths = find_images(folder, recursive)
        if not paths:
            raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}.")
        return self.extract(paths, progress=progress), paths

    def index_folder(self, folder: str | Path, recursive: bool = True, **index_options: Any) -> GalleryIndex:
        """A FAISS ``GalleryIndex`` over a folder's images, labelled by path (``index_options``: kind...)."""
        features, paths = self.extract_folder(folder, recursive)
        index = GalleryIndex(dim=features.shape[1], **index_options)
        index.add(features, labels=[str(p) for p in paths])
        return index
