"""An independent brute-force boundary F1 (BF) score, used as ground truth in tests: binary
masks, numpy edge padding and pairwise distances, one image and class at a time."""

from __future__ import annotations

import math

import numpy as np
import torch


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask; edge padding copies a pixel to its outside
    neighbour, so the image border never counts."""
    padded = np.pad(mask, 1, mode="edge")
    neighbours = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
    return mask & np.logical_or.reduce([n != mask for n in neighbours])


def reference_matched(points: np.ndarray, others: np.ndarray, theta: float) -> int:
    """How many of ``points`` lie within ``theta`` of one of ``others``."""
    if len(points) == 0 or len(others) == 0:
        return 0
    distance = np.sqrt(((points[:, None, :] - others[None, :, :]) ** 2).sum(-1))
    return int((distance.min(1) <= theta).sum())


def reference_bf(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image BF (N,) and per-image, per-class F1 (N, num_classes) of int64 label maps (N, H, W),
    NaN where a class (or an image) is not scored. Pad pixels (label -1, unless that is the ignore
    label) lie outside the image: each image is cut to the bounding box of its other pixels first,
    and pad pixels inside it are void like ignored ones."""
    prediction, target = prediction.numpy(), target.numpy()
    n = target.shape[0]
    image_bf, class_f1 = np.full(n, np.nan), np.full((n, num_classes), np.nan)
    for i in range(n):
        t, p = target[i], prediction[i]
        if ignore_index != -1:
            rows, columns = np.flatnonzero((t != -1).any(1)), np.flatnonzero((t != -1).any(0))
            if len(rows) == 0:
                continue
            box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
            t, p = t[box], p[box]
        h, w = t.shape
        theta = tolerance * math.sqrt(h * h + w * w)
        void = (t == ignore_index) | (t == -1)
        p = np.where(void, t, p)
        for c in range(num_classes):
            if c == ignore_index or not (t == c).any():
                continue
            bp, bt = np.argwhere(reference_boundary(p == c)), np.argwhere(reference_boundary(t == c))
            if len(bp) == 0 or len(bt) == 0:
                class_f1[i, c] = float(len(bp) == len(bt))
                continue
            precision = reference_matched(bp, bt, theta) / len(bp)
            recall = reference_matched(bt, bp, theta) / len(bt)
            class_f1[i, c] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if not np.isnan(class_f1[i]).all():
            image_bf[i] = np.nanmean(class_f1[i])
    return image_bf, class_f1
