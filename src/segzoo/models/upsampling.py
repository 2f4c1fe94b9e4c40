"""Fixed bilinear upsampling to a skip's size, shared by decoders that do not unpool.

A 2x2/2 ceil-mode pooling takes a side ``s`` to ``ceil(s / 2)``; doubling that gives ``s`` or
``s + 1``, so the upsampled map is cut (top-left, unconditionally, so that no data-dependent branch
stands in the way of export) to the size of the map it came from. With ``align_corners=False``
the pooled pixel ``j`` (covering ``2j`` and ``2j + 1``) lands at ``2j + 0.5``, its window's centre.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Size, Tensor


def crop_to(x: Tensor, size: Size | tuple[int, int]) -> Tensor:
    """The top-left ``size`` (H, W) of ``x`` (N, C, >= H, >= W)."""
    return x[:, :, : size[-2], : size[-1]]


def upsample2x(x: Tensor, size: Size | tuple[int, int]) -> Tensor:
    """Bilinear 2x upsampling of ``x`` (N, C, h, w) cut to ``size``, which must be at most (2h, 2w)."""
    return crop_to(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), size)
