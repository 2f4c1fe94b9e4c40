"""Sliding-window (tiled) inference: images of any size through a model in overlapping tiles.

A tile grid covers the image with tiles of at most ``tile`` pixels, consecutive tiles overlapping
by ``overlap`` of the tile side, the last row and column flush with the image's border. Each tile's
output (class probabilities, and any extra channels a predictor returns) is accumulated with a
per-pixel weight, and the sum is divided by the summed weights: ``"mean"`` weighs every pixel of a
tile alike; ``"gaussian"`` weighs a tile's centre over its border (sigma = 1/8 of the tile side, as
nnU-Net does), so tile borders, where a network sees the least context, count least and no seam
shows. Where one tile covers the whole image the result is exactly the whole-image prediction.
Memory: the accumulator is (channels, H, W) float32 per image (528 MB for 11 classes at
4000x3000), plus one batch of tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

#: normalised float images (N, C, H, W) -> probabilities first, then any extra channels (N, K, H, W)
Predictor = Callable[[Tensor], Tensor]
BLENDS = ("gaussian", "mean")


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels every ``stride`` pixels over ``length`` pixels, the
    last one flush with the end (so every pixel is covered)."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_weights(height: int, width: int, blend: str, device: torch.device | None = None) -> Tensor:
    """The (height, width) float32 weight of each pixel of a tile (see the module docstring)."""
    if blend == "mean":
        return torch.ones(height, width, device=device)
    if blend != "gaussian":
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    axes = []
    for side in (height, width):
        position = torch.arange(side, dtype=torch.float64, device=device) - (side - 1) / 2
        sigma = max(side / 8, 1e-3)
        axes.append(torch.exp(-0.5 * (position / sigma) ** 2))
    weight = torch.outer(*axes)
    return (weight / weight.max()).float().clamp(min=1e-6)  # every pixel of a tile counts a little


@torch.no_grad()
def sliding_window(
    predictor: Predictor,
    images: Tensor,
    tile: tuple[int, int],
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
) -> Tensor:
    """Run ``predictor`` over overlapping tiles of ``images`` (N, C, H, W) and blend the outputs
    into one (N, K, H, W) float32 map; see the module docstring. ``tile`` is (height, width),
    clipped to the image; ``overlap`` in [0, 1) is the fraction of a tile shared with the next one;
    ``batch_size`` tiles run per predictor call."""
    tile_h, tile_w = _tile(tile)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images).__name__)}")
    _, _, height, width = images.shape
    tile_h, tile_w = min(tile_h, height), min(tile_w, width)
    if (tile_h, tile_w) == (height, width):
        return predictor(images).float()
    stride_h, stride_w = (max(1, math.floor(side * (1 - overlap))) for side in (tile_h, tile_w))
    boxes = [(y, x) for y in tile_starts(height, tile_h, stride_h) for x in tile_starts(width, tile_w, stride_w)]
    weight = tile_weights(tile_h, tile_w, blend, images.device)
    outputs = []
    for image in images:
        total: Tensor | None = None
        coverage = torch.zeros(height, width, device=images.device)
        for first in range(0, len(boxes), batch_size):
            chunk = boxes[first : first + batch_size]
            crops = torch.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in chunk])
            predicted = predictor(crops).float()
            if total is None:
                total = torch.zeros(predicted.shape[1], height, width, device=images.device)
            for (y, x), out in zip(chunk, predicted):
                total[:, y : y + tile_h, x : x + tile_w] += out * weight
                coverage[y : y + tile_h, x : x + tile_w] += weight
        assert total is not None  # at least one tile
        outputs.append(total / coverage)
    return torch.stack(outputs)


def _tile(tile: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(tile, (tuple, list))
        or len(tile) != 2
        or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in tile)
    ):
        raise ValueError(f"tile must be (height, width) with positive ints, got {tile!r}")
    return int(tile[0]), int(tile[1])
