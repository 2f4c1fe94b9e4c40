"""Segmentation datasets, their colour palettes, joint transforms and data settings.

``folder`` (image/mask folder pairs and CamVid), ``voc`` (Pascal VOC through torchvision),
``synthetic`` (procedural shapes, no download), ``cache`` (a split decoded once, kept in memory), ``palettes`` (class colour tables), ``transforms``
(joint image/mask transforms), ``layouts`` (datasets by layout name), ``config`` (:class:`DataConfig`, a run's data settings).

Every dataset's ``ds[i]`` is ``(image, mask)``: a uint8 (3, H, W) image and an int64 (H, W) mask
of class indices (``ignore_index`` allowed), or whatever its ``transforms`` makes of them; each
has ``num_classes``, ``ignore_index``, ``class_names``, ``palette`` and ``layout``. Only
``VOCSegmentation`` and the transforms need torchvision, and they import it when used.
"""

from .cache import InMemoryDataset
from .config import DataConfig
from .folder import CamVid, SegmentationFolder
from .layouts import LAYOUTS, layout_classes, open_split, open_splits
from .palettes import CAMVID_PALETTE, palette
from .synthetic import SyntheticShapes
from .transforms import denormalize, eval_transforms, train_transforms
from .voc import VOCSegmentation

__all__ = [
    "CAMVID_PALETTE",
    "CamVid",
    "DataConfig",
    "InMemoryDataset",
    "LAYOUTS",
    "SegmentationFolder",
    "SyntheticShapes",
    "VOCSegmentation",
    "denormalize",
    "eval_transforms",
    "layout_classes",
    "open_split",
    "open_splits",
    "palette",
    "train_transforms",
]
