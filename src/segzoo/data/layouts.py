"""Datasets by layout name, as the command line and recipes ask for them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .folder import CamVid, SegmentationFolder

#: ``camvid``: ``root/{split}``, ``root/{split}annot``; ``folder``: ``root/{split}/images``, ``root/{split}/masks``;
#: ``voc``: Pascal VOC 2012 in torchvision's layout, ``root/VOCdevkit/VOC2012/`` (the split is the image set)
LAYOUTS = ("camvid", "folder", "voc")


def layout_classes(layout: str, num_classes: int | None = None, ignore_index: int | None = None) -> tuple[int, int | None]:
    """The class count and ignore label of ``layout``'s datasets, checked before any file is read.

    The folder layout takes them from the arguments (``num_classes`` is required). CamVid (11
    classes, void label 11) and VOC (21 classes, border label 255) have their own: other values
    would be ignored, so they are a ``ValueError`` (``None`` or the layout's own values are accepted).
    """
    if layout in ("camvid", "voc"):
        own = (len(CamVid.CLASS_NAMES), CamVid.IGNORE_INDEX) if layout == "camvid" else (21, 255)
        given = [f"{name}={value}" for name, value, expected in zip(("num_classes", "ignore_index"), (num_classes, ignore_index), own)
                 if value is not None and value != expected]  # fmt: skip
        if given:
            raise ValueError(
                f"the {layout} layout has {own[0]} classes and ignore label {own[1]} of its own, not {', '.join(given)} "
                "(which it would ignore); for other labels use the folder layout"
            )
        return own
    if layout == "folder":
        if num_classes is None:
            raise ValueError("the folder layout needs num_classes (--num-classes)")
        return num_classes, ignore_index
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def open_split(
    root: str | os.PathLike,
    layout: str,
    split: str,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> Any:
    """The untransformed ``split`` of the dataset at ``root`` in ``layout`` (one of :data:`LAYOUTS`);
    the folder layout needs ``num_classes`` and takes ``ignore_index``; the camvid and voc layouts
    refuse values other than their own (see :func:`layout_classes`); ``voc`` reads VOC 2012's image
    set ``split`` (``train``, ``val``, ``trainval``) through torchvision."""
    num_classes, ignore_index = layout_classes(layout, num_classes, ignore_index)
    if layout == "camvid":
        return CamVid(root, split)
    if layout == "voc":
        from .voc import VOCSegmentation

        return VOCSegmentation(root, "2012", image_set=split)
    return SegmentationFolder(Path(root) / split / "images", Path(root) / split / "masks", num_classes, ignore_index)


def open_splits(
    root: str | os.PathLike,
    layout: str,
    train_split: str = "train",
    val_split: str = "val",
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> tuple[Any, Any]:
    """The untransformed training and validation splits (see :func:`open_split`)."""
    layout_classes(layout, num_classes, ignore_index)  # before the training split's files are read
    return (
        open_split(root, layout, train_split, num_classes, ignore_index),
        open_split(root, layout, val_split, num_classes, ignore_index),
    )
