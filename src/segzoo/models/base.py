"""What every segzoo model shares besides its layers: its config, encoder freezing, prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .weights import VGG16_BN_IMAGENET1K_V1, channel_statistics


class SegmentationModel(nn.Module):
    """Base of all segzoo models: ``encoder`` + a head producing (N, num_classes, H, W) logits.

    Subclasses set ``self.encoder`` (which knows its ``in_channels``), implement ``forward`` and
    ``num_classes``, and extend ``config`` with their options (checkpoints rebuild from it).

    Inputs are not scanned for NaN or infinity (a pass over every batch, which torchvision's models
    do not pay either): in eval mode a non-finite pixel makes its own image's logits non-finite and
    leaves the other images of the batch alone.
    """

    encoder: nn.Module

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
    def mean(self) -> tuple[float, ...]:
        """Input normalisation expected by ``predict`` and the transforms, one value per input
        channel: the ImageNet encoder weights' (R, G, B) values, or their average for a 1-channel
        model (see :func:`segzoo.models.weights.channel_statistics`)."""
        return channel_statistics(VGG16_BN_IMAGENET1K_V1.mean, self.in_channels)

    @property
    def std(self) -> tuple[float, ...]:
        """See :attr:`mean`."""
        return channel_statistics(VGG16_BN_IMAGENET1K_V1.std, self.in_channels)

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

    def save_pretrained(self, folder: Any, run: Any = None, scores: Any = None) -> Any:
        """Write this model to ``folder`` as ``config.json`` + ``model.safetensors`` + a model card
        (see :func:`segzoo.io.pretrained.save_pretrained`); ``run`` is its
        :class:`~segzoo.RunDescription` (class names, colours, ...). Returns the folder."""
        from ..io.pretrained import save_pretrained

        return save_pretrained(self, folder, run, scores)

    @torch.inference_mode()
    def predict(self, images: Any, return_probabilities: bool = False) -> Tensor:
        """Class labels (N, H, W) for PIL images (one or a list), uint8 tensors (3, H, W) /
        (N, 3, H, W), uint8 arrays (H, W, 3) / (N, H, W, 3), or an already normalised float batch (any
        float dtype, converted to the model's). uint8 input is scaled to [0, 1] and normalised with
        ``mean``/``std``; PIL images are read as shown (EXIF orientation applied, 16-bit scaled to
        8 bits; see :mod:`segzoo.io.images`) and converted to RGB first (to grayscale for a model
        with ``in_channels=1``). With
        ``return_probabilities``, softmax probabilities (N, C, H, W) instead. Runs in eval mode and
        restores the previous mode afterwards. Non-finite logits (non-finite weights or input) are
        a ``ValueError`` naming the images, never labels."""
        batch = self.prepare(images)
        was_training = self.training
        self.eval()
        try:
            logits = self(batch)
        finally:
            self.train(was_training)
        finite = torch.isfinite(logits).flatten(1).all(1)
        if not finite.all():  # argmax would label them class 0 (or wherever the NaN sits), silently
            images = (~finite).nonzero().flatten().tolist()
            raise ValueError(
                f"the model's logits for image(s) {images[:10]} are not finite (NaN or infinity); expected finite "
                "logits: non-finite weights (a diverged run?) or non-finite input"
            )
        return logits.softmax(1) if return_probabilities else logits.argmax(1)

    def prepare(self, images: Any) -> Tensor:
        """Turn images into a batch (N, C, H, W) in the model's dtype, on its device: uint8 data
        (see :meth:`predict`) is scaled to [0, 1] and normalised with ``mean``/``std``, float data is
        taken as already normalised and only converted."""
        weight = next(self.parameters())
        if isinstance(images, Sequence) and not isinstance(images, (Tensor, np.ndarray)):
            if len(images) == 0:
                raise ValueError("expected at least one image, got an empty sequence")
            tensors = [_to_tensor(image, self.in_channels) for image in images]
            kinds = sorted({f"{tuple(t.shape)} {t.dtype}" for t in tensors})
            if any(t.dim() != 3 for t in tensors):
                raise ValueError(f"a sequence must hold single images ((C, H, W) tensors, (H, W, C) arrays), got {kinds}")
            if len(kinds) > 1:
                raise ValueError(f"images in one call must share a size and dtype, got {kinds}")
            batch = torch.stack(tensors)
        else:
            batch = _to_tensor(images, self.in_channels)
            if batch.dim() == 3:
                batch = batch.unsqueeze(0)
        if batch.is_floating_point():
            return batch.to(weight.device, weight.dtype)
        if batch.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (0-255) or already normalised floats, got {batch.dtype}")
        channels = len(self.mean)
        if batch.dim() != 4 or batch.shape[1] != channels:
            raise ValueError(
                f"uint8 images must have {channels} channels: tensors ({channels}, H, W) or (N, {channels}, H, W), "
                f"arrays (H, W, {channels}) or (N, H, W, {channels}); got {tuple(batch.shape)} read channels first"
            )
        # normalised in at least float32, so a half model gets rounded results, not half-precision arithmetic
        work = torch.promote_types(weight.dtype, torch.float32)
        mean = torch.tensor(self.mean, dtype=work, device=weight.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=work, device=weight.device).view(1, -1, 1, 1)
        return ((batch.to(weight.device, work) / 255 - mean) / std).to(weight.dtype)


def _to_tensor(image: Any, channels: int = 3) -> Tensor:
    """Tensors are taken as CHW; numpy arrays and PIL images as HWC, as PIL and OpenCV produce them.
    PIL images are read as RGB, or grayscale (luma) for a model with ``channels=1``."""
    if isinstance(image, Tensor):
        return image
    if not isinstance(image, np.ndarray):
        from PIL import Image

        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")
        from ..io.images import rgb_array, to_channels

        rgb = torch.from_numpy(np.array(np.moveaxis(rgb_array(image), -1, -3), order="C"))  # as shown: EXIF, 16-bit
        return to_channels(rgb, 1) if channels == 1 else rgb
    if image.ndim not in (3, 4):
        raise ValueError(f"expected an HWC image or NHWC batch array, got shape {image.shape}")
    # a copy: the tensor must not share (possibly read-only) memory with the caller's array
    return torch.from_numpy(np.array(np.moveaxis(image, -1, -3), order="C"))
