"""Segmentation datasets and joint image/mask transforms.

Every dataset's ``ds[i]`` is ``(image, mask)``: a uint8 (3, H, W) image and an int64 (H, W) mask
of class indices (``ignore_index`` allowed), or whatever its ``transforms`` makes of them; each
has ``num_classes``, ``ignore_index`` and ``class_names``. Only ``VOCSegmentation`` and the
transforms need torchvision, and they import it when used.
"""

from .folder import CamVid, SegmentationFolder
from .synthetic import SyntheticShapes
from .transforms import denormalize, eval_transforms, train_transforms
from .voc import VOCSegmentation

__all__ = [
    "CamVid",
    "SegmentationFolder",
    "SyntheticShapes",
    "VOCSegmentation",
    "denormalize",
    "eval_transforms",
    "train_transforms",
]
