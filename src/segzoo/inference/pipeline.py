"""One prediction pipeline: working size, test-time augmentation, tiles and Monte Carlo dropout,
composed in that order around a model, giving class probabilities at each image's own size.

Every stage maps normalised images (N, C, H, W) to per-pixel outputs whose first K channels are
class probabilities; Monte Carlo dropout adds one channel, the mean entropy of its samples. Every
stage is linear in those outputs (resizing, flipping and tile blending are weighted means), so the
stages compose in any combination and the mutual information is still "entropy of the mean minus
mean entropy" at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mc_dropout import mc_predict
from .tiling import BLENDS, Predictor, sliding_window
from .tta import augmented, check_scales


@dataclass(frozen=True)
class InferenceOptions:
    """How to predict (all off by default: one forward pass of the whole image).

    ``size``: (h, w) the images are resized to for the model (a run's eval size); outputs come back
    at each image's own size (bilinear). ``tile``: sliding-window tiles of (h, w) with ``overlap``,
    ``blend`` and ``tile_batch`` tiles per forward (:mod:`segzoo.inference.tiling`). ``flip`` /
    ``scales``: test-time augmentation (:mod:`segzoo.inference.tta`). ``mc_samples``: Monte Carlo
    dropout passes (seeded by ``seed``) instead of one deterministic pass.
    """

    size: tuple[int, int] | None = None
    tile: tuple[int, int] | None = None
    overlap: float = 0.25
    blend: str = "gaussian"
    tile_batch: int = 4
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    mc_samples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("size", "tile"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, (tuple, list))
                or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            ):
                raise ValueError(f"{name} must be (height, width) with positive ints, got {value!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}")
        if isinstance(self.tile_batch, bool) or not isinstance(self.tile_batch, int) or self.tile_batch < 1:
            raise ValueError(f"tile_batch must be a positive int, got {self.tile_batch!r}")
        if self.mc_samples is not None and (
            isinstance(self.mc_samples, bool) or not isinstance(self.mc_samples, int) or self.mc_samples < 1
        ):
            raise ValueError(f"mc_samples must be a positive int or None, got {self.mc_samples!r}")
        object.__setattr__(self, "scales", check_scales(self.scales))


@dataclass(frozen=True)
class Inference:
    """Outputs for N images of H x W with K classes."""

    #: class probabilities (N, K, H, W), float32
    probabilities: Tensor
    #: predictive entropy (N, H, W) in nats, with Monte Carlo dropout only
    entropy: Tensor | None = None
    #: mutual information (N, H, W) in nats, with Monte Carlo dropout only
    mutual_information: Tensor | None = None

    @property
    def labels(self) -> Tensor:
        """Class labels (N, H, W): the argmax of the probabilities."""
        return self.probabilities.argmax(1)


def model_predictor(model: nn.Module, options: InferenceOptions) -> Predictor:
    """The innermost stage: softmax probabilities of ``model`` in eval mode, or Monte Carlo
    dropout's mean probabilities plus the mean entropy of its samples."""
    if options.mc_samples is None:

        def softmax(images: Tensor) -> Tensor:
            return model(images).float().softmax(1)

        return softmax

    def monte_carlo(images: Tensor) -> Tensor:
        result = mc_predict(model, images, options.mc_samples, seed=options.seed)
        expected_entropy = (result.entropy - result.mutual_information).float()
        return torch.cat([result.probabilities.float(), expected_entropy[:, None]], 1)

    return monte_carlo


@torch.no_grad()
def infer(model: nn.Module, images: Any, options: InferenceOptions | None = None) -> Inference:
    """Predict ``images`` (anything :meth:`SegmentationModel.prepare` takes: PIL images, uint8
    arrays/tensors or a normalised float batch) with ``options``; see the module docstring. The
    model runs in eval mode (its modes are restored afterwards)."""
    options = options or InferenceOptions()
    batch = model.prepare(images) if hasattr(model, "prepare") else images
    if not isinstance(batch, Tensor) or batch.dim() != 4:
        raise ValueError(f"expected images as an (N, C, H, W) batch, got {type(batch).__name__}")
    height, width = batch.shape[-2:]
    predictor = model_predictor(model, options)
    if options.tile is not None:
        inner, tile = predictor, options.tile

        def predictor(images: Tensor) -> Tensor:
            return sliding_window(inner, images, tile, options.overlap, options.blend, options.tile_batch)

    if options.flip or options.scales != (1.0,):
        predictor = augmented(predictor, options.flip, options.scales)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        working = batch
        if options.size is not None and tuple(options.size) != (height, width):
            shrinking = options.size[0] < height or options.size[1] < width
            working = F.interpolate(batch, size=tuple(options.size), mode="bilinear", align_corners=False, antialias=shrinking)
        out = predictor(working)
    finally:
        for module, training in modes.items():
            module.training = training
    if out.shape[-2:] != (height, width):
        out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
    num_classes = out.shape[1] - (1 if options.mc_samples is not None else 0)
    probabilities = out[:, :num_classes]
    if options.mc_samples is None:
        return Inference(probabilities)
    entropy = -torch.xlogy(probabilities, probabilities).sum(1)
    return Inference(probabilities, entropy, (entropy - out[:, num_classes]).clamp(min=0))
