"""One prediction pipeline: test-time augmentation, tiles and Monte Carlo dropout composed around
a model, giving class probabilities at the input's size or any other.

Every stage maps normalised images (N, C, H, W) to per-pixel outputs whose first K channels are
class probabilities; Monte Carlo dropout adds one channel, the mean entropy of its samples. Every
stage is linear in those outputs (resizing, flipping and tile blending are weighted means), so the
stages compose in any combination and the mutual information is still "entropy of the mean minus
mean entropy" at the end. Outputs are brought to another size the way scores are counted
(:func:`~segzoo.metrics.upsample_logits`): logits, or log-probabilities (the same up to a per-pixel
constant), upsampled bilinearly, then normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..metrics import upsample_logits
from .mc_dropout import mc_predict
from .tiling import BLENDS, Predictor, sliding_window
from .tta import augmented, check_scales


@dataclass(frozen=True)
class InferenceOptions:
    """How to predict (all off by default: one forward pass of the whole image).

    ``tile``: sliding-window tiles of (h, w) with ``overlap``, ``blend`` and ``tile_batch`` tiles per
    forward (:mod:`segzoo.inference.tiling`). ``flip`` / ``scales``: test-time augmentation
    (:mod:`segzoo.inference.tta`). ``mc_samples``: Monte Carlo dropout passes (seeded by ``seed``)
    instead of one deterministic pass.
    """

    tile: tuple[int, int] | None = None
    overlap: float = 0.25
    blend: str = "gaussian"
    tile_batch: int = 4
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    mc_samples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tile is not None and (
            not isinstance(self.tile, (tuple, list))
            or len(self.tile) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in self.tile)
        ):
            raise ValueError(f"tile must be (height, width) with positive ints, got {self.tile!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) or not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}")
        if isinstance(self.tile_batch, bool) or not isinstance(self.tile_batch, int) or self.tile_batch < 1:
            raise ValueError(f"tile_batch must be a positive int, got {self.tile_batch!r}")
        if self.mc_samples is not None and (
            isinstance(self.mc_samples, bool) or not isinstance(self.mc_samples, int) or self.mc_samples < 1
        ):
            raise ValueError(f"mc_samples must be a positive int or None, got {self.mc_samples!r}")
        if not isinstance(self.flip, bool):
            raise TypeError(f"flip must be a bool, got {self.flip!r}")
        object.__setattr__(self, "scales", check_scales(self.scales))
        if self.tile is not None:
            object.__setattr__(self, "tile", (int(self.tile[0]), int(self.tile[1])))

    @property
    def plain(self) -> bool:
        """Whether these options ask for nothing but one forward pass (logits are then used as they are)."""
        return self.tile is None and not self.flip and self.scales == (1.0,) and self.mc_samples is None


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


def pipeline(model: nn.Module, options: InferenceOptions) -> Predictor:
    """The composed stages of ``options`` around ``model`` (innermost: the model or MC dropout,
    then tiles, then test-time augmentation)."""
    predictor = model_predictor(model, options)
    if options.tile is not None:
        inner, tile = predictor, options.tile

        def tiled(images: Tensor) -> Tensor:
            return sliding_window(inner, images, tile, options.overlap, options.blend, options.tile_batch)

        predictor = tiled
    if options.flip or options.scales != (1.0,):
        predictor = augmented(predictor, options.flip, options.scales)
    return predictor


@torch.no_grad()
def infer(
    model: nn.Module, images: Any, options: InferenceOptions | None = None, output_size: tuple[int, int] | None = None
) -> Inference:
    """Predict ``images`` (anything :meth:`SegmentationModel.prepare` takes: PIL images, uint8
    arrays/tensors or a normalised float batch) with ``options``, at ``output_size`` (default: the
    input's size); see the module docstring. The model runs in eval mode (its modes are restored
    afterwards)."""
    options = options or InferenceOptions()
    batch = model.prepare(images) if hasattr(model, "prepare") else images
    if not isinstance(batch, Tensor) or batch.dim() != 4:
        raise ValueError(f"expected images as an (N, C, H, W) batch, got {type(batch).__name__}")
    size = tuple(batch.shape[-2:]) if output_size is None else (int(output_size[0]), int(output_size[1]))
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        if options.plain:
            return Inference(upsample_logits(model(batch).float(), size).softmax(1))
        out = pipeline(model, options)(batch)
    finally:
        for module, training in modes.items():
            module.training = training
    num_classes = out.shape[1] - (1 if options.mc_samples is not None else 0)
    probabilities, extra = out[:, :num_classes], out[:, num_classes:]
    if tuple(out.shape[-2:]) != size:
        probabilities = upsample_logits(_log(probabilities), size).softmax(1)
        if extra.shape[1]:
            extra = F.interpolate(extra, size=size, mode="bilinear", align_corners=False)
    if options.mc_samples is None:
        return Inference(probabilities)
    entropy = -torch.xlogy(probabilities, probabilities).sum(1)
    return Inference(probabilities, entropy, (entropy - extra[:, 0]).clamp(min=0))


def log_probabilities(model: nn.Module, images: Tensor, options: InferenceOptions) -> Tensor:
    """:func:`infer`'s class log-probabilities (N, K, H, W) for a normalised batch: scores that
    stand in for logits wherever logits are expected (their softmax is the prediction)."""
    return _log(infer(model, images, options).probabilities)


def _log(probabilities: Tensor) -> Tensor:
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
