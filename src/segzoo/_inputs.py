"""Early, readable checks on the image batch a model is called with."""

from __future__ import annotations

from torch import Tensor


def check_images(x: Tensor, in_channels: int, min_size: int, model: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``x`` is a float (N, in_channels, H, W) batch with
    ``H, W >= min_size``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of shape (N, {in_channels}, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension: x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"{model} expects a 4-D tensor (N, {in_channels}, H, W), got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating-point tensor, got {x.dtype}; convert images with x.float() / 255 "
            "and normalise them with the weights' mean/std"
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"{model} expects {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f"{model} needs inputs of at least {min_size}x{min_size}, got {x.shape[-2]}x{x.shape[-1]}"
        )
