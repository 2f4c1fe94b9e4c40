"""Early, readable checks on the image batch a model is called with."""

from __future__ import annotations

import torch
from torch import Tensor


def check_images(x: Tensor, in_channels: int, min_size: int, model: str, weight: Tensor | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``x`` is a float (N, in_channels, H, W) batch with
    ``H, W >= min_size``; with ``weight`` (a parameter of the first layer), also unless ``x`` has its
    device and dtype (any float32 or autocast dtype while autocast is on for that device)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of shape (N, {in_channels}, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        hint = " (add a batch dimension: x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"{model} expects a 4-D tensor (N, {in_channels}, H, W), got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating-point tensor, got {x.dtype}; convert images with x.float() / 255 "
            "and normalise them with the weights' mean/std, or pass them to model.predict, which does both"
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"{model} expects {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f"{model} needs inputs of at least {min_size}x{min_size}, got {x.shape[-2]}x{x.shape[-1]}"
        )
    if weight is None:
        return
    if x.device != weight.device:
        raise ValueError(f"{model} expects its input on {weight.device}, where its weights are, got {x.device}")
    if x.dtype != weight.dtype and x.dtype not in _autocast_inputs(x.device.type):
        raise TypeError(
            f"{model} expects {weight.dtype} input, the dtype of its weights, got {x.dtype}; convert the input "
            f"(x.to({weight.dtype})) or the model (model.to({x.dtype})), or run it under torch.autocast"
        )


def _autocast_inputs(device_type: str) -> tuple[torch.dtype, ...]:
    """Input dtypes the layers accept while autocast is on for ``device_type``: float32, which it casts
    down, and its own low-precision dtype (float64 it leaves alone, so the layers would fail on it)."""
    if not torch.is_autocast_enabled(device_type):
        return ()
    return (torch.float32, torch.get_autocast_dtype(device_type))
