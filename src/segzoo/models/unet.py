"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015, arXiv 1505.04597) on the shared VGG16 encoder,
in the layout of U-Net-VGG16 ports such as TernausNet's ``UNet16`` (Iglovikov and Shvets, arXiv 1801.05746)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_bool, check_int
from ._inputs import check_images
from .base import SegmentationModel
from .blocks import make_stages
from .registry import register_model
from .upsampling import upsample2x
from .vgg import VGG16, VGGEncoder
from .weights import BackboneWeights, load_vgg_backbone

#: (middle, out) widths of the centre block and of the decoder blocks from the deepest (conv5's
#: resolution) to the finest (conv1's): TernausNet's UNet16 with num_filters=32
CENTER = (512, 256)
DECODER = ((512, 256), (512, 256), (256, 64), (128, 32), (32, 32))


@register_model("unet_vgg16")
class UNetVGG16(SegmentationModel):
    """U-Net with a VGG16 encoder (`arXiv 1505.04597 <https://arxiv.org/abs/1505.04597>`_;
    layout of TernausNet's UNet16, `arXiv 1801.05746 <https://arxiv.org/abs/1801.05746>`_).

    Encoder: VGG16's 13 convs (``batch_norm=True``: VGG16-BN), 2x2 ceil-mode max pooling; the
    pre-pool output of each stage (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3) is a skip. Centre:
    two 3x3 conv-BN-ReLU on pool5 (512 -> 512 -> 256). Five decoder blocks, each: bilinear 2x
    upsampling cut to its skip's size, concatenation with the skip, two 3x3 conv-BN-ReLU; widths
    (256+512 -> 512 -> 256), (256+512 -> 512 -> 256), (256+256 -> 256 -> 64), (64+128 -> 128 -> 32),
    (32+64 -> 32 -> 32). A 1x1 conv to ``num_classes`` raw logits.

    TernausNet concatenates before upsampling and its finest block has one conv (96 -> 32); here
    every block upsamples first, then concatenates (the U-Net paper's order, as the decoder blocks
    of segmentation_models_pytorch), and has two convs: the same widths plus one 32 -> 32 conv.

    Parameters (21 classes, ``batch_norm=True``): 29,330,517. With ``batch_norm=False`` and one class
    29,315,713, against TernausNet's UNet16 29,306,465 (its one conv fewer: 32*32*9 + 32 = 9,248).
    The SegNet paper does not count this model (it cites U-Net, Section 2, but does not benchmark it).

    ``weights_backbone`` loads ImageNet VGG16(-BN) weights into the encoder; the rest starts fresh.

    Input: float (N, in_channels, H, W), any H, W >= 1. Output: logits (N, num_classes, H, W).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        batch_norm: bool = True,
        weights_backbone: BackboneWeights = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        num_classes, in_channels = check_int("num_classes", num_classes, 1), check_int("in_channels", in_channels, 1)
        check_bool("batch_norm", batch_norm)
        check_bool("progress", progress)
        self.encoder = VGGEncoder(in_channels, batch_norm, VGG16, ceil_mode=True)
        skips = self.encoder.out_channels[::-1]
        (self.center,) = make_stages((CENTER,), skips[0], batch_norm)
        blocks = nn.ModuleList()
        width = CENTER[-1]
        for skip, widths in zip(skips, DECODER):
            (block,) = make_stages((widths,), width + skip, batch_norm)
            blocks.append(block)
            width = widths[-1]
        self.decoder = blocks
        self.classifier = nn.Conv2d(width, num_classes, 1)
        load_vgg_backbone(nn.ModuleDict({"encoder": self.encoder}), weights_backbone, batch_norm, progress)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "batch_norm": self.encoder.batch_norm}

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        skips, x = self.encoder.skips_and_bottom(x)
        x = self.center(x)
        for block in self.decoder:
            skip = skips.pop()
            x = block(torch.cat([upsample2x(x, skip.shape[-2:]), skip], 1))
        return self.classifier(x)
