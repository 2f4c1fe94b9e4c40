"""Class weights for the loss: median-frequency balancing, as the SegNet paper trains CamVid."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_optional_int
from ..labels import PAD_LABEL


def median_frequency_weights(
    dataset_or_masks: Iterable[Any], num_classes: int, ignore_index: int | None = None, power: float = 1.0
) -> Tensor:
    """Median-frequency class weights (SegNet paper, after Eigen & Fergus 2015).

    ``freq(c)`` = pixels of class c / total pixels of the images in which c is present, and
    ``weight(c) = (median(freq) / freq(c)) ** power``, the median taken over the classes present
    anywhere. ``power=1`` is the paper's balancing; ``power=0.5`` (their square root) balances
    half as strongly on a log scale, and ``power=0`` weighs every present class 1.
    Pixels labelled ``ignore_index`` or :data:`~segzoo.labels.PAD_LABEL` are counted nowhere. Classes that never occur get weight 0.

    ``dataset_or_masks`` yields label masks (H, W) or batches of them (N, H, W), as tensors or
    arrays, or ``(image, mask)`` pairs as a segmentation dataset does. Returns a float32 tensor of
    ``num_classes`` weights, ready for ``nn.CrossEntropyLoss(weight=...)``.
    """
    num_classes = check_int("num_classes", num_classes, 1)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 <= power <= 1:
        raise ValueError(f"power must be a number in [0, 1], got {power!r}")
    ignore_index = check_optional_int("ignore_index", ignore_index)
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for item in dataset_or_masks:
        mask = item[-1] if isinstance(item, (tuple, list)) else item
        mask = mask.cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        if mask.dtype.kind not in "iu":
            raise TypeError(f"masks must hold integer class labels, got dtype {mask.dtype}")
        if mask.ndim < 2:
            raise ValueError(f"masks must be (H, W) or (N, H, W), got shape {mask.shape}")
        # an empty mask has nothing to count (and reshape's -1 would be ambiguous for it)
        for single in mask.reshape(-1, *mask.shape[-2:]) if mask.size else ():
            counted = single != PAD_LABEL if ignore_index is None else (single != PAD_LABEL) & (single != ignore_index)
            labels = single[counted]
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                outside = sorted(set(np.unique(labels[(labels < 0) | (labels >= num_classes)]).tolist()))[:10]
                raise ValueError(f"mask holds labels {outside} outside [0, {num_classes}) and ignore_index={ignore_index}")
            counts = np.bincount(labels.ravel(), minlength=num_classes)
            pixels += counts
            image_pixels[counts > 0] += labels.size
    present = pixels > 0
    if not present.any():
        raise ValueError("no labelled pixels found: class frequencies need at least one pixel not labelled ignore_index")
    frequency = pixels[present] / image_pixels[present]
    weights = np.zeros(num_classes)
    weights[present] = (np.median(frequency) / frequency) ** power
    return torch.from_numpy(weights).float()
