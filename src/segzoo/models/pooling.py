"""2x2 max pooling that remembers where each maximum came from, and the unpooling that uses it.

Two index formats, chosen by ``compact`` when pooling and recognised by dtype when unpooling:

* int64 flat indices from ``F.max_pool2d(return_indices=True)``, unpooled by ``F.max_unpool2d``;
* uint8 window positions (0..3, row-major inside each 2x2 window), 8x smaller, built and undone
  with element-wise ops and slicing only, so the pair exports (``torch.export``, ONNX), compiles
  with inductor at changing sizes, runs under ``torch.use_deterministic_algorithms(True)`` and
  saves only the positions for backward. Outputs and gradients equal the native pair bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Size, Tensor

_SAME_SIZE_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def max_pool_with_indices(x: Tensor, ceil_mode: bool, compact: bool = False) -> tuple[Tensor, Tensor]:
    """2x2/2 max pooling of ``x`` (N, C, H, W) returning the pooled map and where each maximum was.

    The pooled map is (N, C, h, w) with ``h = ceil(H / 2)`` (``ceil_mode``) or ``floor(H / 2)``,
    likewise ``w``. The indices have the same shape: int64 flat positions in the H x W plane
    (``compact=False``, PyTorch's format) or uint8 positions 0..3 inside each window (``compact=True``).
    Ties keep the first maximum in row-major window order and a window holding NaN pools to its
    last NaN, as ``F.max_pool2d`` does.
    """
    if not compact:
        return F.max_pool2d(x, 2, 2, ceil_mode=ceil_mode, return_indices=True)
    if not x.is_floating_point():
        raise TypeError(f"compact max pooling expects a floating-point tensor, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"compact max pooling expects a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
    if not ceil_mode and min(x.shape[-2:]) < 2:
        raise ValueError(f"max pooling with ceil_mode=False needs H, W >= 2, got {x.shape[-2]}x{x.shape[-1]}")
    if torch.jit.is_tracing():
        # jit.trace keeps an autograd.Function as an opaque Python call that neither torch.jit.save
        # nor the TorchScript ONNX exporter can use: trace its forward's ops instead
        return _pool(x, ceil_mode)
    return _CompactMaxPool.apply(x, ceil_mode)


def max_unpool(x: Tensor, indices: Tensor, size: Size | tuple[int, int]) -> Tensor:
    """Place each value of ``x`` (N, C, h, w) at its recorded position in a zero map of spatial ``size``.

    ``indices`` come from :func:`max_pool_with_indices`: int64 flat indices are unpooled by
    ``F.max_unpool2d``, uint8 window positions by the compact path. ``size`` must be the pre-pool
    (H, W): the size PyTorch infers without it is wrong for odd sizes and for ceil-mode pooling.
    """
    if indices.dtype == torch.int64:
        if torch.is_autocast_enabled(x.device.type):
            # autocast runs max_unpool2d in float32; placing values is exact in any dtype, so unpool
            # in x's own: the same values, without two casts of the map (SegNet under bf16 autocast)
            with torch.autocast(x.device.type, enabled=False):
                return F.max_unpool2d(x, indices, 2, 2, output_size=size[-2:])
        return F.max_unpool2d(x, indices, 2, 2, output_size=size[-2:])
    if indices.dtype != torch.uint8:
        raise TypeError(f"max_unpool expects int64 (native) or uint8 (compact) indices, got {indices.dtype}")
    if indices.shape != x.shape or x.dim() != 4:
        raise ValueError(
            f"compact max_unpool expects x and indices of one (N, C, h, w) shape, got {tuple(x.shape)} "
            f"and {tuple(indices.shape)}"
        )
    height, width = size[-2:]
    h, w = x.shape[-2:]
    # each side pooled with either rounding; `|` keeps traced sizes free of a guard on their parity
    if not (((h == (height + 1) // 2) | (h == height // 2)) and ((w == (width + 1) // 2) | (w == width // 2))):
        raise ValueError(
            f"size {height}x{width} is not the pre-pool size of a {h}x{w} map: pooling gives "
            f"ceil(size / 2) or floor(size / 2) on each side"
        )
    if torch.jit.is_tracing():  # as in max_pool_with_indices
        return _place(x, indices, (height, width))
    return _CompactMaxUnpool.apply(x, indices, (height, width))


class _CompactMaxPool(torch.autograd.Function):
    """Pool forward; backward places the gradient at the saved positions (an unpooling)."""

    @staticmethod
    def forward(ctx, x: Tensor, ceil_mode: bool) -> tuple[Tensor, Tensor]:
        values, positions = _pool(x, ceil_mode)
        ctx.save_for_backward(positions)
        ctx.mark_non_differentiable(positions)
        ctx.size = x.shape[-2:]
        return values, positions

    @staticmethod
    def backward(ctx, grad: Tensor, _: Tensor) -> tuple[Tensor, None]:
        (positions,) = ctx.saved_tensors
        return _place(grad, positions, ctx.size), None


class _CompactMaxUnpool(torch.autograd.Function):
    """Unpool forward; backward gathers the gradient at the saved positions."""

    @staticmethod
    def forward(ctx, x: Tensor, positions: Tensor, size: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(positions)
        return _place(x, positions, size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (positions,) = ctx.saved_tensors
        return _take(grad, positions), None, None


def _later_wins(earlier: Tensor, later: Tensor) -> Tensor:
    """Whether ``F.max_pool2d`` moves from ``earlier`` to ``later``: greater, or NaN (so ties keep the
    first element and the last NaN wins)."""
    return (later > earlier) | later.isnan()


def _pool(x: Tensor, ceil_mode: bool) -> tuple[Tensor, Tensor]:
    """The compact pooling: maxima and their uint8 window positions."""
    extra = 1 if ceil_mode else 0
    h, w = (x.shape[-2] + extra) // 2, (x.shape[-1] + extra) // 2
    # -inf padding never wins: every ceil-mode window holds a real top-left element
    x = _fit(x, (2 * h, 2 * w), float("-inf"))
    # the two columns of each row first, then the two rows: F.max_pool2d's row-major scan in pairs,
    # which keeps its first-maximum and last-NaN choices
    left, right = x[..., 0::2], x[..., 1::2]
    across = _later_wins(left, right)
    columns = torch.where(across, right, left)
    top, bottom = columns[..., 0::2, :], columns[..., 1::2, :]
    down = _later_wins(top, bottom)
    values = torch.where(down, bottom, top)
    across_top, across_bottom = across[..., 0::2, :], across[..., 1::2, :]
    across = across_top ^ (down & (across_top ^ across_bottom))
    return values, down.to(torch.uint8) * 2 + across


def _place(values: Tensor, positions: Tensor, size: Size | tuple[int, int]) -> Tensor:
    """Zero map of spatial ``size`` with each value at its window position (the unpooling)."""
    *lead, h, w = values.shape
    out = values.new_empty((*lead, 2 * h, 2 * w))
    # four selects written into the strided window slots: cheaper than stacking the slots and
    # interleaving them (pixel_shuffle, stack), and exact where a one-hot product is not (it turns
    # the zeros beside a negative value into -0.0, those beside inf into NaN)
    for k in range(4):
        out[..., k // 2 :: 2, k % 2 :: 2] = _select(positions == k, values)
    return _fit(out, size, 0.0)


def _select(mask: Tensor, values: Tensor) -> Tensor:
    """``torch.where(mask, values, 0)``, bit for bit."""
    if _in_graph() or (torch.is_grad_enabled() and values.requires_grad):
        return torch.where(mask, values, 0)
    # eager CPU torch.where is a scalar loop; multiplying the bit patterns by the mask is vectorised
    # and as exact (a kept value's bits, or +0.0), about twice as fast for the whole unpooling
    return (values.view(_SAME_SIZE_INT[values.element_size()]) * mask).view(values.dtype)


def _take(grid: Tensor, positions: Tensor) -> Tensor:
    """The element of ``grid`` at each window's position (the pooling's gather)."""
    h, w = positions.shape[-2:]
    grid = _fit(grid, (2 * h, 2 * w), 0.0)
    down, right = positions >= 2, positions % 2 == 1
    left = torch.where(down, grid[..., 1::2, 0::2], grid[..., 0::2, 0::2])
    return torch.where(right, torch.where(down, grid[..., 1::2, 1::2], grid[..., 0::2, 1::2]), left)


def _fit(t: Tensor, size: Size | tuple[int, int], fill: float) -> Tensor:
    """Crop or pad (bottom and right, with ``fill``) the last two dims of ``t`` to ``size``."""
    dh, dw = size[0] - t.shape[-2], size[1] - t.shape[-1]
    if not _in_graph() and dh <= 0 and dw <= 0:
        return t[..., : size[0], : size[1]]
    # graphs always take F.pad (which crops with negative amounts): testing their sizes would pin
    # the input's parity, as a recompile per parity under torch.compile, a constraint violation
    # under torch.export with dynamic H, W, or the traced size's branch baked into a jit.trace
    return F.pad(t, (0, dw, 0, dh), value=fill)


def _in_graph() -> bool:
    """Whether the ops are being recorded into a graph (torch.compile, torch.export, jit.trace)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()
