"""Segmentation datasets, how their masks store classes, joint transforms and data settings.

``pairs`` (reading and checking image/mask file pairs), ``folder`` (image/mask folder pairs, split
lists and CamVid), ``cityscapes``, ``ade20k``, ``voc`` (Pascal VOC through torchvision),
``synthetic`` (procedural shapes, no download), ``masks`` (mask files -> class indices),
``labelmaps`` (file values -> classes), ``colour_tables`` (RGB colours -> classes), ``cache`` (a
split decoded once, kept in memory), ``palettes`` (class names and colours of the built-in
datasets), ``transforms`` (joint image/mask transforms), ``layouts`` (datasets by layout name),
``config`` (:class:`DataConfig`, a run's data settings).

Every dataset's ``ds[i]`` is ``(image, mask)``: a uint8 RGB (3, H, W) image and an int64 (H, W)
mask of class indices (``ignore_index`` allowed), or whatever its ``transforms`` makes of them
(they also give the model its channel count: see :func:`train_transforms`); each has
``num_classes``, ``ignore_index``, ``class_names``, ``palette`` and ``layout``, and the file
datasets ``label_map`` and ``colour_table``. Only ``VOCSegmentation`` and the transforms need
torchvision, and they import it when used.
"""

from .ade20k import ADE20K
from .cache import InMemoryDataset
from .cityscapes import Cityscapes
from .colour_tables import BUILT_IN_COLOUR_TABLES, ColourTable
from .config import DataConfig
from .folder import CamVid, SegmentationFolder, read_split_list
from .labelmaps import BUILT_IN_LABEL_MAPS, LabelMap
from .layouts import LAYOUTS, layout_classes, open_split, open_splits
from .pairs import PairedDataset
from .palettes import CAMVID_PALETTE, palette
from .synthetic import SyntheticShapes
from .transforms import denormalize, eval_transforms, train_transforms
from .voc import VOCSegmentation

__all__ = [
    "ADE20K",
    "BUILT_IN_COLOUR_TABLES",
    "BUILT_IN_LABEL_MAPS",
    "CAMVID_PALETTE",
    "CamVid",
    "Cityscapes",
    "ColourTable",
    "DataConfig",
    "InMemoryDataset",
    "LAYOUTS",
    "LabelMap",
    "PairedDataset",
    "SegmentationFolder",
    "SyntheticShapes",
    "VOCSegmentation",
    "denormalize",
    "eval_transforms",
    "layout_classes",
    "open_split",
    "open_splits",
    "palette",
    "read_split_list",
    "train_transforms",
]
