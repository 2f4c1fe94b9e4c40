"""Test-time augmentation: average a predictor's probabilities over horizontal flips and scales.

Each scale ``s`` resizes the images to ``round(s * H) x round(s * W)`` (bilinear, antialiased when
shrinking), the predictor's output is resized back to H x W (bilinear) and, with ``flip``, averaged
with the output for the mirrored images mirrored back; the mean over scales is the result.
Probabilities stay probabilities (every step is a convex combination), and the result is exactly
flip-equivariant: augmenting a mirrored image gives the mirrored result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .tiling import Predictor


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """``scales`` as a tuple of positive floats, or a ``ValueError``."""
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or not scales:
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    values = []
    for scale in scales:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        values.append(float(scale))
    return tuple(values)


def augmented(predictor: Predictor, flip: bool = True, scales: Sequence[float] = (1.0,)) -> Predictor:
    """A predictor that runs ``predictor`` on each scaled (and, with ``flip``, mirrored) copy of its
    input and returns the mean output at the input's size; see the module docstring."""
    factors = check_scales(scales)

    @torch.no_grad()
    def run(images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        total: Tensor | None = None
        for scale in factors:
            size = (max(1, round(scale * height)), max(1, round(scale * width)))
            scaled = images if size == (height, width) else _resize(images, size)
            out = predictor(scaled).float()
            if flip:
                out = (out + predictor(scaled.flip(-1)).float().flip(-1)) / 2
            if size != (height, width):
                out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
            total = out if total is None else total + out
        assert total is not None  # at least one scale
        return total / len(factors)

    return run


def _resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
