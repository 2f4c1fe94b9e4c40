"""Procedural shapes on textured backgrounds: a segmentation dataset that needs no download.

Each item is drawn on the fly from a ``torch.Generator`` seeded by ``(seed, index)``, so ``ds[i]``
is the same on every call, in every worker and in any access order. Colours are random for every
class; only the outline tells a disc from a square from a triangle, so a model has to learn shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_bool
from .folder import PairTransform
from .palettes import palette as voc_palette

_MIN_SIDE = 16  # below this the smallest shapes are a pixel or two and lose their outline
_EXTENT = (0.12, 0.35)  # shape diameter as a fraction of the shorter image side
_MIN_CONTRAST = 0.35  # RGB distance (in [0, 1] units) kept between a shape and the background under it
_TEXTURE_AMPLITUDE = 0.15  # of the [0, 1] range: clearly visible, yet the shape keeps its colour


class SyntheticShapes(Dataset[tuple[Tensor, Tensor]]):
    """``num_images`` images of 2-5 discs, squares and triangles on striped or graded backgrounds.

    Classes: 0 background, 1 disc, 2 square, 3 triangle. Shapes have random position, rotation,
    size (roughly 12-35% of the shorter side) and colour, with per-pixel noise; later shapes are
    drawn over earlier ones and the mask follows what is visible. Edges are crisp (no
    anti-aliasing), so the mask matches the image pixel for pixel.

    With ``class_textures=True`` every class also has its own fill pattern (disc: checks, square:
    diagonal stripes, triangle: vertical stripes; colours still random), so classes are separable
    by local appearance as well as by outline: a few minutes of CPU training then suffice, which
    is what ``segzoo demo`` uses. Without it, only the outline tells the classes apart.

    ``ds[i]`` is ``(image, mask)``: uint8 (3, H, W) and int64 (H, W) for ``size=(H, W)``, or
    whatever ``transforms`` makes of them.
    """

    num_classes = 4
    ignore_index = None
    class_names = ("background", "disc", "square", "triangle")
    layout = "synthetic"
    palette = voc_palette(4)

    def __init__(
        self,
        num_images: int = 64,
        size: tuple[int, int] = (64, 64),
        seed: int = 0,
        transforms: PairTransform | None = None,
        class_textures: bool = False,
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= _MIN_SIDE for s in size)
        ):
            raise ValueError(f"size must be (height, width) with both ints >= {_MIN_SIDE}, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be a callable (image, mask) -> (image, mask), got {type(transforms).__name__}")
        check_bool("class_textures", class_textures)
        self.num_images = num_images
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.transforms = transforms
        self.class_textures = class_textures

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index %= self.num_images
        # SeedSequence mixes (seed, index) so neighbouring items get unrelated streams
        item_seed = int(np.random.SeedSequence((self.seed, index)).generate_state(1, np.uint64)[0])
        image, mask = _draw_shapes(self.size, torch.Generator().manual_seed(item_seed), self.class_textures)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


def _draw_shapes(size: tuple[int, int], generator: torch.Generator, class_textures: bool = False) -> tuple[Tensor, Tensor]:
    """One image (uint8 (3, H, W)) and its mask (int64 (H, W)), drawn from ``generator``."""
    height, width = size
    ys = torch.arange(height, dtype=torch.float32).add_(0.5).view(height, 1)
    xs = torch.arange(width, dtype=torch.float32).add_(0.5).view(1, width)
    image = _background(xs, ys, generator)
    mask = torch.zeros(height, width, dtype=torch.int64)
    count = int(torch.randint(2, 6, (), generator=generator))
    # a permutation first, so any image with three or more shapes holds every class
    classes = torch.cat([torch.randperm(3, generator=generator), torch.randint(0, 3, (2,), generator=generator)])
    side = min(height, width)
    for label in (classes[:count] + 1).tolist():
        extent = side * _uniform(generator, *_EXTENT)
        cy = _uniform(generator, extent / 2, height - extent / 2)
        cx = _uniform(generator, extent / 2, width - extent / 2)
        angle = _uniform(generator, 0.0, 2 * math.pi)
        inside = _inside(label, xs - cx, ys - cy, extent, angle)
        under = (image * inside).sum((1, 2)) / inside.sum().clamp(min=1)
        colour = torch.rand(3, generator=generator)
        if torch.linalg.vector_norm(colour - under) < _MIN_CONTRAST:
            colour = (under + 0.5) % 1.0  # a shape the colour of its background would be invisible, not hard
        fill = colour.view(3, 1, 1) + 0.04 * torch.randn(3, height, width, generator=generator)
        if class_textures:
            fill = fill + _TEXTURE_AMPLITUDE * _texture(label, xs, ys)
        image = torch.where(inside, fill, image)
        mask[inside] = label
    return image.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8), mask  # +0.5 then truncation rounds


def _texture(label: int, xs: Tensor, ys: Tensor) -> Tensor:
    """A +-1 square-wave pattern of period 4 pixels, one per class, in image coordinates."""
    def wave(t: Tensor) -> Tensor:
        return torch.where((t.floor() % 4) < 2, 1.0, -1.0)

    if label == 1:
        return wave(xs) * wave(ys)  # checks
    if label == 2:
        return wave(xs + ys)  # diagonal stripes
    return wave(xs).expand(ys.shape[0], -1)  # vertical stripes


def _background(xs: Tensor, ys: Tensor, generator: torch.Generator) -> Tensor:
    """Low-frequency colour noise plus stripes or a gradient in a random direction, in [0, 1]."""
    height, width = ys.shape[0], xs.shape[1]
    coarse = torch.rand(1, 3, 4, 4, generator=generator)
    base = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    angle = _uniform(generator, 0.0, 2 * math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    if _uniform(generator, 0.0, 1.0) < 0.5:
        period = _uniform(generator, 6.0, 20.0)
        pattern = torch.sin(along * (2 * math.pi / period) + _uniform(generator, 0.0, 2 * math.pi))
    else:
        pattern = (along - along.min()) / (along.max() - along.min()) * 2 - 1
    tint = (torch.rand(3, 1, 1, generator=generator) - 0.5) * 0.5
    noise = 0.03 * torch.randn(3, height, width, generator=generator)
    return 0.15 + 0.7 * base + tint * pattern + noise


def _inside(label: int, x: Tensor, y: Tensor, extent: float, angle: float) -> Tensor:
    """Boolean (H, W) mask of a shape of diameter about ``extent`` centred at x = y = 0."""
    if label == 1:
        return x * x + y * y <= (extent / 2) ** 2
    # a regular polygon is the intersection of half-planes, one per side, at its inradius
    sides, inradius = (4, 0.45 * extent) if label == 2 else (3, 0.33 * extent)
    inside = torch.ones(y.shape[0], x.shape[1], dtype=torch.bool)
    for k in range(sides):
        normal = angle + 2 * math.pi * k / sides
        inside &= x * math.cos(normal) + y * math.sin(normal) <= inradius
    return inside


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))
