"""Datasets by layout name, as the command line and recipes ask for them."""

from __future__ import annotations

import os
from pathlib import Path

from typing import Any

from .folder import CamVid, SegmentationFolder

#: ``camvid``: ``root/{split}``, ``root/{split}annot``; ``folder``: ``root/{split}/images``, ``root/{split}/masks``;
#: ``voc``: Pascal VOC 2012 in torchvision's layout, ``root/VOCdevkit/VOC2012/`` (the split is the image set)
LAYOUTS = ("camvid", "folder", "voc")


def open_split(
    root: str | os.PathLike,
    layout: str,
    split: str,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> Any:
    """The untransformed ``split`` of the dataset at ``root`` in ``layout`` (one of :data:`LAYOUTS`);
    the folder layout needs ``num_classes`` and takes ``ignore_index``; ``voc`` reads VOC 2012's
    image set ``split`` (``train``, ``val``, ``trainval``) through torchvision."""
    if layout == "camvid":
        return CamVid(root, split)
    if layout == "voc":
        from .voc import VOCSegmentation

        return VOCSegmentation(root, "2012", image_set=split)
    if layout == "folder":
        if num_classes is None:
            raise ValueError("the folder layout needs num_classes (--num-classes)")
        return SegmentationFolder(Path(root) / split / "images", Path(root) / split / "masks", num_classes, ignore_index)
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def open_splits(
    root: str | os.PathLike,
    layout: str,
    train_split: str = "train",
    val_split: str = "val",
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> tuple[Any, Any]:
    """The untransformed training and validation splits (see :func:`open_split`)."""
    return (
        open_split(root, layout, train_split, num_classes, ignore_index),
        open_split(root, layout, val_split, num_classes, ignore_index),
    )
