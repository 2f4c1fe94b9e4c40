"""Cityscapes' fine annotations in the layout the official archives unpack to (never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

from .folder import _few
from .labelmaps import LabelMap
from .pairs import PairedDataset, PairTransform

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(PairedDataset):
    """Cityscapes ``root/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png`` with
    ``root/gtFine/{split}/{city}/{name}_gtFine_labelIds.png`` (``leftImg8bit_trainvaltest.zip`` and
    ``gtFine_trainvaltest.zip`` unpacked into ``root``).

    The 19 standard training classes, with their standard names and colours (cityscapesScripts'
    ``labels.py``): labelIds are turned into trainIds as they are read (the built-in label map
    ``"cityscapes"``), and the 15 labelIds without a trainId become 255, the ``ignore_index``.
    Every image must have its gtFine labelIds file (a missing one is a ``ValueError`` naming it);
    other gtFine files (``_color``, ``_instanceIds``, polygons) are not read.
    """

    CLASS_NAMES = (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    )  # fmt: skip
    COLOURS = (
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    )  # fmt: skip
    IGNORE_INDEX = 255
    layout = "cityscapes"

    def __init__(self, root: str | os.PathLike, split: str = "train", transforms: PairTransform | None = None) -> None:
        root = Path(root)
        if not isinstance(split, str):
            raise TypeError(f"split must be a str such as 'train', got {split!r}")
        images_root, labels_root = root / "leftImg8bit" / split, root / "gtFine" / split
        if not images_root.is_dir():
            present = sorted(p.name for p in (root / "leftImg8bit").iterdir() if p.is_dir()) if (root / "leftImg8bit").is_dir() else []
            raise FileNotFoundError(
                f"Cityscapes split {split!r} not found: expected {images_root} (leftImg8bit/{{split}}/{{city}}/*{IMAGE_SUFFIX}); "
                f"splits present: {present}. segzoo does not download Cityscapes"
            )
        if not labels_root.is_dir():
            raise FileNotFoundError(f"Cityscapes labels not found: expected {labels_root} (gtFine/{{split}}/{{city}}/*{LABEL_SUFFIX})")
        samples, missing = [], []
        for image in sorted(images_root.glob(f"*/*{IMAGE_SUFFIX}")):
            label = labels_root / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)
            (samples if label.is_file() else missing).append((image, label))
        if missing:
            raise ValueError(
                f"{len(missing)} Cityscapes image(s) have no gtFine labelIds file: "
                f"{_few([f'{image} (expected {label})' for image, label in missing])}"
            )
        if not samples:
            raise ValueError(f"no Cityscapes images found in {images_root}; expected {{city}}/*{IMAGE_SUFFIX}")
        super().__init__(
            samples, len(self.CLASS_NAMES), self.IGNORE_INDEX, self.CLASS_NAMES, transforms, self.COLOURS,
            label_map=LabelMap.named("cityscapes"),
        )  # fmt: skip
        self.root = root
        self.split = split
