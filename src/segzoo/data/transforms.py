"""Joint image/mask transforms built on ``torchvision.transforms.v2``.

The image is wrapped as ``tv_tensors.Image`` and the mask as ``tv_tensors.Mask``, so every geometric
step moves both the same way and masks are always resized with nearest neighbour: a label is never
interpolated into a neighbouring class. torchvision is imported only when a transform is built or
run, so the rest of ``segzoo`` works without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..io.images import to_channels
from ..labels import PAD_LABEL
from .pairs import PairTransform


def train_transforms(
    crop_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
) -> PairTransform:
    """Random scale, random crop, horizontal flip, then float conversion and normalisation.

    Takes ``(image uint8 (3, H, W), mask int64 (H, W))`` and returns ``(image float32 (C, h, w),
    mask int64 (h, w))`` with ``(h, w) = crop_size``, both plain tensors. The image is resized by a
    factor drawn uniformly from ``scale``; where it is then smaller than ``crop_size`` it is padded,
    the image with 0 and the mask with :data:`segzoo.labels.PAD_LABEL` (-1), which is never a
    class: every segzoo loss and metric skips it, whether or not the dataset has an ignore label.
    The image is finally
    ``(x / 255 - mean) / std``.

    **Channels**: ``C = len(mean)`` is the model's ``in_channels`` (pass ``model.mean`` and
    ``model.std``): 3 keeps RGB, 1 turns it into grayscale (luma, :func:`segzoo.io.images.to_channels`)
    before normalising. Randomness comes from torch's global generator.
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    crop = _size(crop_size, "crop_size")
    low, high = _scale_range(scale)
    steps: list[Callable] = []
    if (low, high) != (1.0, 1.0):
        steps.append(_RandomScale(low, high))
    steps.append(v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: PAD_LABEL}))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    steps += _to_normalised_float(mean, std)
    return _JointTransform(v2.Compose(steps))


def eval_transforms(
    mean: Sequence[float],
    std: Sequence[float],
    size: tuple[int, int] | None = None,
    resize_mask: bool = False,
) -> PairTransform:
    """Optional resize of the image to ``size = (h, w)``, then float conversion and normalisation.

    Takes ``(image uint8 (3, H, W), mask int64 (H, W))`` and returns ``(image float32 (C, h, w),
    mask int64 (H, W))`` as plain tensors, ``C = len(mean)`` (see :func:`train_transforms`);
    without ``size`` the spatial size is kept. The image is
    resized bilinearly with antialiasing; the mask keeps its own resolution, because scores are
    counted against each label as it is (the evaluation loop upsamples the logits to it, see
    :func:`segzoo.training.evaluate`). ``resize_mask=True`` also resizes the mask to ``size``, with
    nearest neighbour: for training on whole resized images, where the loss needs labels at the
    logits' size.
    """
    from torchvision.transforms import v2

    steps: list[Callable] = []
    if size is not None:
        steps.append(v2.Resize(_size(size, "size")) if resize_mask else _ResizeImage(_size(size, "size")))
    steps += _to_normalised_float(mean, std)
    return _JointTransform(v2.Compose(steps))


def denormalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Undo ``(x / 255 - mean) / std`` for display: float (C, H, W) or (N, C, H, W) to uint8 RGB,
    clamped; ``C = len(mean)`` is 3, or 1 (grayscale, replicated into three channels for display)."""
    if not image.is_floating_point():
        raise TypeError(f"denormalize expects a normalised float image, got dtype {image.dtype}")
    mean_t, std_t = _mean_std(mean, std)
    channels = len(mean_t)
    if image.dim() < 3 or image.shape[-3] != channels:
        raise ValueError(f"image must be ({channels}, H, W) or (N, {channels}, H, W), got shape {tuple(image.shape)}")
    mean_t = mean_t.to(image.device).view(-1, 1, 1)
    std_t = std_t.to(image.device).view(-1, 1, 1)
    pixels = (image * std_t + mean_t).mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.expand(*pixels.shape[:-3], 3, *pixels.shape[-2:]).contiguous() if channels == 1 else pixels


class _JointTransform:
    """Runs a v2 pipeline on an ``(image, mask)`` pair and hands back plain tensors.

    A module-level class rather than a closure so DataLoader workers can pickle it.
    """

    def __init__(self, pipeline: Callable) -> None:
        self.pipeline = pipeline

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        from torchvision import tv_tensors

        _check_pair(image, mask)
        image, mask = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
        # tv_tensors subclasses leak through torch ops in surprising ways downstream; hand back plain tensors
        return image.as_subclass(Tensor), mask.as_subclass(Tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


class _RandomScale:
    """Resize image and mask together by one factor drawn uniformly from ``[low, high]``.

    v2 has no "scale by a random factor" step (``RandomResize`` draws an absolute size), hence this.
    """

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        from torchvision.transforms.v2 import functional as TF

        factor = float(torch.empty(()).uniform_(self.low, self.high))
        height, width = image.shape[-2:]
        size = [max(1, round(height * factor)), max(1, round(width * factor))]
        # F.resize dispatches on the tv_tensor type: antialiased bilinear for Image, nearest for Mask
        return TF.resize(image, size, antialias=True), TF.resize(mask, size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(low={self.low}, high={self.high})"


class _ResizeImage:
    """Resize the image of a pair (bilinear, antialiased) and hand the mask back untouched."""

    def __init__(self, size: list[int]) -> None:
        self.size = size

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        from torchvision.transforms.v2 import functional as TF

        return TF.resize(image, self.size, antialias=True), mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def _to_normalised_float(mean: Sequence[float], std: Sequence[float]) -> list[Callable]:
    from torchvision.transforms import v2

    mean_t, std_t = _mean_std(mean, std)
    steps: list[Callable] = [] if len(mean_t) == 3 else [_ToChannels(len(mean_t))]
    # a bare dtype converts only images and videos, so the mask stays int64
    return steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean_t.tolist(), std_t.tolist())]


class _ToChannels:
    """The image of a pair as the model's channel count (:func:`segzoo.io.images.to_channels`)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        from torchvision import tv_tensors

        return tv_tensors.Image(to_channels(image.as_subclass(Tensor), self.channels)), mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels})"


def _mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    if mean_t.numel() not in (1, 3) or std_t.numel() != mean_t.numel():
        raise ValueError(
            f"mean and std must hold 3 values (R, G, B) or 1 (grayscale), one per model input channel; got mean={mean!r}, std={std!r}"
        )
    if not bool((std_t > 0).all()):
        raise ValueError(f"std must be positive, got {std!r}")
    return mean_t, std_t


def _size(size: tuple[int, int], name: str) -> list[int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        raise ValueError(f"{name} must be (height, width) with positive ints, got {size!r}")
    return [size[0], size[1]]


def _scale_range(scale: tuple[float, float]) -> tuple[float, float]:
    if not isinstance(scale, (tuple, list)) or len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}")
    return float(scale[0]), float(scale[1])


def _check_pair(image: Tensor, mask: Tensor) -> None:
    if not isinstance(image, Tensor) or not isinstance(mask, Tensor):
        raise TypeError(f"expected (image, mask) tensors, got ({type(image).__name__}, {type(mask).__name__})")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
    if mask.dim() != 2 or mask.shape != image.shape[1:]:
        raise ValueError(f"mask must be (H, W) matching image {tuple(image.shape)}, got shape {tuple(mask.shape)}")
    if image.dtype != torch.uint8:
        raise TypeError(f"image must be uint8 in [0, 255] (it is scaled by 1/255), got dtype {image.dtype}")
    if mask.is_floating_point():
        raise TypeError(f"mask must hold integer class labels, got dtype {mask.dtype}")
