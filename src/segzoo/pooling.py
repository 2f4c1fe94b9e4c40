"""2x2 max pooling that remembers where each maximum came from, and the unpooling that uses it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Size, Tensor


def max_pool_with_indices(x: Tensor, ceil_mode: bool) -> tuple[Tensor, Tensor]:
    """2x2/2 max pooling returning the pooled map and the flat position of each maximum in its plane."""
    return F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode, return_indices=True)


def max_unpool(x: Tensor, indices: Tensor, size: Size | tuple[int, int]) -> Tensor:
    """Place each value of ``x`` at its recorded position in a zero map of spatial ``size``.

    ``size`` must be the pre-pool size: the indices are flat positions in a plane of that width,
    and the size PyTorch infers without it is wrong for odd sizes and for ceil-mode pooling.
    """
    return F.max_unpool2d(x, indices, 2, 2, output_size=size[-2:])
