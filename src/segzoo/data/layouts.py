"""Datasets by layout name, as the command line and recipes ask for them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .ade20k import ADE20K
from .cityscapes import Cityscapes
from .colour_tables import ColourTable
from .folder import CamVid, SegmentationFolder, read_split_list
from .labelmaps import LabelMap
from .pairs import resolve_classes

#: ``camvid``: ``root/{split}``, ``root/{split}annot``; ``folder``: ``root/{split}/images``, ``root/{split}/masks``
#: (or ``root/images``, ``root/masks`` and a split list ``root/splits/{split}.txt``);
#: ``voc``: Pascal VOC 2012 in torchvision's layout, ``root/VOCdevkit/VOC2012/`` (the split is the image set);
#: ``cityscapes``: ``root/leftImg8bit/{split}/{city}/``, ``root/gtFine/{split}/{city}/``;
#: ``ade20k``: ``root/ADEChallengeData2016/{images,annotations}/{training,validation}/``
LAYOUTS = ("camvid", "folder", "voc", "cityscapes", "ade20k")

#: the class count and ignore label of the layouts that have their own
_OWN_CLASSES = {
    "camvid": (len(CamVid.CLASS_NAMES), CamVid.IGNORE_INDEX),
    "voc": (21, 255),
    "cityscapes": (len(Cityscapes.CLASS_NAMES), Cityscapes.IGNORE_INDEX),
    "ade20k": (len(ADE20K.CLASS_NAMES), ADE20K.IGNORE_INDEX),
}


def layout_classes(
    layout: str,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    label_map: LabelMap | None = None,
    colour_table: ColourTable | None = None,
) -> tuple[int, int | None]:
    """The class count and ignore label of ``layout``'s datasets, checked before any file is read.

    The folder layout takes them from the arguments: ``num_classes`` is required unless
    ``label_map`` or ``colour_table`` gives it (see :func:`~segzoo.data.pairs.resolve_classes`).
    CamVid (11 classes, void label 11), VOC (21, border 255), Cityscapes (19, 255) and ADE20K
    (150, 255) have their own classes and label encoding: other values, a label map or a colour
    table would be ignored, so they are a ``ValueError`` (``None`` or the layout's own values are accepted).
    """
    if layout in _OWN_CLASSES:
        own = _OWN_CLASSES[layout]
        given = [f"{name}={value}" for name, value, expected in zip(("num_classes", "ignore_index"), (num_classes, ignore_index), own)
                 if value is not None and value != expected]  # fmt: skip
        given += [what for what, value in (("a label map", label_map), ("a colour table", colour_table)) if value is not None]
        if given:
            raise ValueError(
                f"the {layout} layout has {own[0]} classes, ignore label {own[1]} and mask encoding of its own, not "
                f"{', '.join(given)} (which it would ignore); for other labels use the folder layout"
            )
        return own
    if layout == "folder":
        return resolve_classes(num_classes, ignore_index, label_map, colour_table)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def open_split(
    root: str | os.PathLike,
    layout: str,
    split: str,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    label_map: LabelMap | None = None,
    colour_table: ColourTable | None = None,
) -> Any:
    """The untransformed ``split`` of the dataset at ``root`` in ``layout`` (one of :data:`LAYOUTS`).

    The folder layout takes ``num_classes``, ``ignore_index`` and how its masks store classes
    (``label_map`` or ``colour_table``); it reads ``root/{split}/images`` and ``root/{split}/masks``,
    or, where those do not exist, ``root/images`` and ``root/masks`` restricted to the stems listed
    in ``root/splits/{split}.txt`` (one per line). The other layouts refuse values other than their
    own (see :func:`layout_classes`); ``voc`` reads VOC 2012's image set ``split`` (``train``,
    ``val``, ``trainval``) through torchvision; ``ade20k`` takes ``train``/``val``.
    """
    num_classes, ignore_index = layout_classes(layout, num_classes, ignore_index, label_map, colour_table)
    if layout == "camvid":
        return CamVid(root, split)
    if layout == "cityscapes":
        return Cityscapes(root, split)
    if layout == "ade20k":
        return ADE20K(root, split)
    if layout == "voc":
        from .voc import VOCSegmentation

        return VOCSegmentation(root, "2012", image_set=split)
    root = Path(root)
    split_list = root / "splits" / f"{split}.txt"
    if (root / split / "images").is_dir() or not split_list.is_file():
        if split_list.is_file():
            raise ValueError(f"{root} has both {root / split / 'images'} and the split list {split_list}: keep one")
        folders = (root / split / "images", root / split / "masks")
        stems = None
    else:
        folders, stems = (root / "images", root / "masks"), read_split_list(split_list)
    return SegmentationFolder(
        *folders, num_classes, ignore_index, label_map=label_map, colour_table=colour_table, stems=stems
    )  # fmt: skip


def open_splits(
    root: str | os.PathLike,
    layout: str,
    train_split: str = "train",
    val_split: str = "val",
    num_classes: int | None = None,
    ignore_index: int | None = None,
    label_map: LabelMap | None = None,
    colour_table: ColourTable | None = None,
) -> tuple[Any, Any]:
    """The untransformed training and validation splits (see :func:`open_split`)."""
    layout_classes(layout, num_classes, ignore_index, label_map, colour_table)  # before the training split's files are read
    return (
        open_split(root, layout, train_split, num_classes, ignore_index, label_map, colour_table),
        open_split(root, layout, val_split, num_classes, ignore_index, label_map, colour_table),
    )
