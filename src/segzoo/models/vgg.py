"""The VGG16 stage description, the encoder built from it, and the torchvision key map derived from it.

torchvision's ``vgg16`` / ``vgg16_bn`` store the body as one flat ``features`` Sequential
(conv, [BN], ReLU per conv; a MaxPool after each stage) and the classifier as ``classifier.{0,3,6}``.
The map below is computed from the same :data:`VGG16` description that builds the modules, so the
modules and the loader cannot drift apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_int
from ..io.state_dict import preview_keys
from .blocks import Stages, check_stages, make_stages

VGG16: Stages = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

#: fc6 / fc7 of torchvision's classifier as convolutions: (out, in, kernel) and the source index.
FC6_SHAPE = (4096, 512, 7, 7)
FC7_SHAPE = (4096, 4096, 1, 1)
_FC_SOURCE = {"fc6": "classifier.0", "fc7": "classifier.3"}
_CLASSIFIER_KEYS = tuple(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))


class VGGEncoder(nn.Module):
    """VGG-style encoder: ``stages`` of conv-BN-ReLU blocks, each followed by 2x2 max pooling.

    ``forward`` returns the pooled output of every stage (pool1..pool5 for VGG16), the taps FCN uses;
    SegNet iterates ``self.stages`` itself to keep the pooling indices. Its Conv2d modules, in
    definition order, are conv1_1 .. conv5_3.
    """

    def __init__(
        self,
        in_channels: int = 3,
        batch_norm: bool = True,
        stages: Stages = VGG16,
        kernel_size: int = 3,
        bias: bool = True,
        relu: bool = True,
        ceil_mode: bool = True,
        first_padding: int | None = None,
    ) -> None:
        in_channels, kernel_size = check_int("in_channels", in_channels, 1), check_int("kernel_size", kernel_size, 1)
        for name, value in (("batch_norm", batch_norm), ("bias", bias), ("relu", relu), ("ceil_mode", ceil_mode)):
            check_bool(name, value)
        check_stages(stages)
        if first_padding is not None:
            first_padding = check_int("first_padding", first_padding, 0)
        super().__init__()
        self.in_channels = in_channels
        self.batch_norm = batch_norm
        self.stage_widths = tuple(tuple(widths) for widths in stages)
        self.ceil_mode = ceil_mode
        self.stages = make_stages(stages, in_channels, batch_norm, kernel_size, bias, relu)
        if first_padding is not None:
            # Caffe FCN pads conv1_1 by 100 so that any input survives the valid 7x7 fc6
            self.stages[0][0].conv.padding = (first_padding, first_padding)

    @property
    def out_channels(self) -> list[int]:
        return [widths[-1] for widths in self.stage_widths]

    @property
    def min_size(self) -> int:
        """Smallest input side for which every pool sees at least a full 2x2 window (floor mode)."""
        return 1 if self.ceil_mode else 2 ** len(self.stage_widths)

    def forward(self, x: Tensor) -> list[Tensor]:
        pooled = []
        for stage in self.stages:
            x = F.max_pool2d(stage(x), 2, 2, ceil_mode=self.ceil_mode)
            pooled.append(x)
        return pooled

    def skips_and_bottom(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Each stage's output before its pooling (the maps U-Net-style decoders add or concatenate)
        and the last pooled map (what the decoder starts from)."""
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
            x = F.max_pool2d(x, 2, 2, ceil_mode=self.ceil_mode)
        return skips, x


def torchvision_key_map(stages: Stages, batch_norm: bool) -> dict[str, str]:
    """Map this package's encoder keys (``stages.S.C.conv.weight``) to torchvision's
    (``features.N.weight``), derived from the stage description alone."""
    mapping: dict[str, str] = {}
    index = 0
    for s, widths in enumerate(stages):
        for c in range(len(widths)):
            ours = f"stages.{s}.{c}"
            for p in ("weight", "bias"):
                mapping[f"{ours}.conv.{p}"] = f"features.{index}.{p}"
            if batch_norm:
                for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                    mapping[f"{ours}.bn.{p}"] = f"features.{index + 1}.{p}"
            index += 3 if batch_norm else 2  # conv, [bn], relu
        index += 1  # max pool
    return mapping


def from_torchvision(
    state: dict[str, Tensor], batch_norm: bool, with_fc: bool, stages: Stages = VGG16
) -> dict[str, Tensor]:
    """Convert a torchvision ``vgg16[_bn]`` state dict to this package's layout.

    Returns keys ``encoder.stages...`` and, with ``with_fc``, ``fc6.*`` / ``fc7.*`` reshaped from the
    classifier (4096x25088 -> 4096x512x7x7, 4096x4096 -> 4096x4096x1x1). Exactly the classifier keys
    that are not used are dropped; anything else unexpected, or missing, is a ``ValueError``.
    ``num_batches_tracked`` may be absent (the published vgg16_bn file predates it).
    """
    mapping = torchvision_key_map(stages, batch_norm)
    optional = {k for k in mapping.values() if k.endswith("num_batches_tracked")}
    missing = sorted(set(mapping.values()) - optional - set(state))
    unexpected = sorted(set(state) - set(mapping.values()) - set(_CLASSIFIER_KEYS))
    if with_fc:
        missing += [k for k in _CLASSIFIER_KEYS[:4] if k not in state]
    if missing or unexpected:
        flavour = "vgg16_bn" if batch_norm else "vgg16"
        raise ValueError(
            f"state dict does not have torchvision's {flavour} layout: "
            f"missing {preview_keys(missing)}, unexpected {preview_keys(unexpected)}"
            + (f"; batch_norm={batch_norm} expects a {flavour} checkpoint" if unexpected else "")
        )
    converted = {f"encoder.{ours}": state[theirs] for ours, theirs in mapping.items() if theirs in state}
    if with_fc:
        for name, shape in (("fc6", FC6_SHAPE), ("fc7", FC7_SHAPE)):
            weight = state[f"{_FC_SOURCE[name]}.weight"]
            if weight.numel() != torch.Size(shape).numel():
                raise ValueError(
                    f"{_FC_SOURCE[name]}.weight has shape {tuple(weight.shape)}; "
                    f"expected {shape[0]}x{torch.Size(shape[1:]).numel()} to become {name} {shape}"
                )
            converted[f"{name}.weight"] = weight.reshape(shape)
            converted[f"{name}.bias"] = state[f"{_FC_SOURCE[name]}.bias"]
    return converted

