"""Calibration images for int8 quantization (:func:`segzoo.optimize` with ``dtype="int8"``), read from files."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..data.folder import image_to_tensor
from ..models.base import SegmentationModel

#: how many images calibrate int8 unless told otherwise (the observers only need the value ranges)
CALIBRATION_IMAGES = 8
_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def calibration_files(folder: str | os.PathLike, count: int = CALIBRATION_IMAGES) -> list[Path]:
    """The first ``count`` image files of ``folder`` by name; ``ValueError`` if it holds none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"calibration folder {root} is not a folder")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _SUFFIXES)[:count]
    if not files:
        raise ValueError(f"calibration folder {root} holds no images ({', '.join(_SUFFIXES)})")
    return files


def calibration_batches(
    files: list[str | os.PathLike], model: SegmentationModel, size: tuple[int, int] | None = None
) -> list[Tensor]:
    """Each file as a normalised (1, C, H, W) float batch for ``model`` (resized to ``size``, as the
    model was trained, if given)."""
    batches = []
    for path in files:
        try:
            with Image.open(path) as file:
                image = image_to_tensor(file)
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"cannot read calibration image {path}: {error}") from error
        if size:
            image = F.interpolate(image[None].float(), size=tuple(size), mode="bilinear", antialias=True)
            image = image.round().clamp(0, 255).to(torch.uint8)[0]
        batches.append(model.prepare(image))
    return batches
