"""What every segzoo model shares besides its layers: its config, encoder freezing, prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .weights import VGG16_BN_IMAGENET1K_V1


class SegmentationModel(nn.Module):
    """Base of all segzoo models: ``encoder`` + a head producing (N, num_classes, H, W) logits.

    Subclasses set ``self.encoder`` (which knows its ``in_channels``), implement ``forward`` and
    ``num_classes``, and extend ``config`` with their options (checkpoints rebuild from it).
    """

    encoder: nn.Module
    #: input normalisation expected by ``predict`` (that of the ImageNet encoder weights)
    mean: tuple[float, float, float] = VGG16_BN_IMAGENET1K_V1.mean
    std: tuple[float, float, float] = VGG16_BN_IMAGENET1K_V1.std

    def __init__(self) -> None:
        super().__init__()
        self.encoder_frozen = False

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        return self.encoder.in_channels

    @property
    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this architecture; subclasses add their own options."""
        return {"num_classes": self.num_classes, "in_channels": self.in_channels}

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Stop (or restart) training the encoder: no gradients, and its BatchNorm layers stay in
        eval mode, so their running statistics stop moving too, even after ``model.train()``."""
        self.encoder_frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    @torch.inference_mode()
    def predict(self, images: Any, return_probabilities: bool = False) -> Tensor:
        """Class labels (N, H, W) for PIL images (one or a list), uint8 tensors (3, H, W) /
        (N, 3, H, W), uint8 arrays (H, W, 3) / (N, H, W, 3), or an already normalised float batch. uint8 input is scaled to [0, 1] and normalised with
        ``mean``/``std``. With ``return_probabilities``, softmax probabilities (N, C, H, W) instead.
        Runs in eval mode and restores the previous mode afterwards."""
        batch = self.prepare(images)
        was_training = self.training
        self.eval()
        try:
            logits = self(batch)
        finally:
            self.train(was_training)
        return logits.softmax(1) if return_probabilities else logits.argmax(1)

    def prepare(self, images: Any) -> Tensor:
        """Turn PIL images / uint8 data into a normalised float batch on the model's device."""
        device = next(self.parameters()).device
        if isinstance(images, Sequence) and not isinstance(images, (Tensor, np.ndarray)):
            tensors = [_to_tensor(image) for image in images]
            sizes = {tuple(t.shape) for t in tensors}
            if len(sizes) > 1:
                raise ValueError(f"images in one call must share a size, got {sorted(sizes)}")
            batch = torch.stack(tensors)
        else:
            batch = _to_tensor(images)
            if batch.dim() == 3:
                batch = batch.unsqueeze(0)
        batch = batch.to(device)
        if batch.dtype == torch.uint8:
            mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
            batch = (batch.float() / 255 - mean) / std
        elif not batch.is_floating_point():
            raise TypeError(f"images must be uint8 (0-255) or already normalised floats, got {batch.dtype}")
        return batch


def _to_tensor(image: Any) -> Tensor:
    """Tensors are taken as CHW; numpy arrays and PIL images as HWC, as PIL and OpenCV produce them."""
    if isinstance(image, Tensor):
        return image
    if not isinstance(image, np.ndarray):
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")
        image = np.asarray(image.convert("RGB"))
    if image.ndim not in (3, 4):
        raise ValueError(f"expected an HWC image or NHWC batch array, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, -3)))
