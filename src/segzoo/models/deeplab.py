"""DeepLab-LargeFOV (Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets and Fully
Connected CRFs", ICLR 2015, arXiv 1412.7062) on the shared VGG16 encoder, without the CRF."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_int
from ._inputs import check_images
from .base import SegmentationModel
from .registry import register_model
from .upsampling import crop_to
from .vgg import VGG16, VGGEncoder
from .weights import BackboneWeights, load_vgg_backbone

#: fc6: 3x3 with dilation ("hole") 12, 1024 channels; fc7: 1x1, 1024 channels
FC6_CHANNELS, FC6_KERNEL, FC6_DILATION = 1024, 3, 12
#: the output stride, and so the upsampling factor (pool1-pool3 subsample, pool4/pool5 do not)
STRIDE = 8
#: DeepLab's decimation of ImageNet fc6 (4096x512x7x7) and fc7 (4096x4096): every 4th channel,
#: every 3rd tap of the 7x7 kernel (rows/columns 0, 3, 6)
CHANNEL_STEP, TAP_STEP = 4, 3


def decimate_fc(converted: dict[str, Tensor]) -> dict[str, Tensor]:
    """ImageNet fc6/fc7 (as convolutions, see :func:`segzoo.models.vgg.from_torchvision`) decimated to
    DeepLab-LargeFOV's shapes: fc6 4096x512x7x7 -> 1024x512x3x3, fc7 4096x4096x1x1 -> 1024x1024x1x1."""
    out = dict(converted)
    out["fc6.weight"] = converted["fc6.weight"][::CHANNEL_STEP, :, ::TAP_STEP, ::TAP_STEP]
    out["fc6.bias"] = converted["fc6.bias"][::CHANNEL_STEP]
    out["fc7.weight"] = converted["fc7.weight"][::CHANNEL_STEP, ::CHANNEL_STEP]
    out["fc7.bias"] = converted["fc7.bias"][::CHANNEL_STEP]
    return {key: value.contiguous() for key, value in out.items()}


@register_model("deeplab_largefov")
class DeepLabLargeFOV(SegmentationModel):
    """DeepLab-LargeFOV (`arXiv 1412.7062 <https://arxiv.org/abs/1412.7062>`_), the network without the CRF.

    VGG16 (``batch_norm=True``: VGG16-BN, as segzoo's FCN; ``False``: the paper's plain VGG16) with
    pool1-pool3 3x3 stride 2 padding 1, pool4 and pool5 3x3 stride 1 padding 1 (Caffe's ceil
    rounding), conv5 dilated by 2, fc6 a 3x3 conv with dilation 12 to 1024 channels, fc7 a 1x1 conv
    to 1024, each with ReLU and dropout 0.5, and fc8 a 1x1 conv to ``num_classes``; its output stride
    is 8. The scores are upsampled as Caffe's ``Interp`` layer with ``zoom_factor: 8`` does (bilinear,
    corners aligned, (h - 1) * 8 + 1 wide: score pixel ``i`` lands on input pixel ``8 i``, where its
    pooling windows are centred), then cut to the input's size.

    Parameters (21 classes, ``batch_norm=False``): 14,714,688 (VGG16 convs) + 4,719,616 (fc6) +
    1,049,600 (fc7) + 21,525 (fc8) = 20,505,429; paper 20.5M. ``batch_norm=True`` adds 8,448.

    ``weights_backbone`` loads the ImageNet encoder and, as the paper does, fc6/fc7 decimated from
    the ImageNet classifier: every 4th of the 4096 channels, every 3rd row and column of fc6's 7x7
    kernel (:func:`decimate_fc`). fc8 starts fresh.

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
        for block in self.encoder.stages[-1]:
            block.conv.dilation, block.conv.padding = (2, 2), (2, 2)
        width = VGG16[-1][-1]
        self.fc6 = nn.Conv2d(width, FC6_CHANNELS, FC6_KERNEL, padding=FC6_DILATION, dilation=FC6_DILATION)
        self.fc7 = nn.Conv2d(FC6_CHANNELS, FC6_CHANNELS, 1)
        self.drop6 = nn.Dropout(0.5)
        self.drop7 = nn.Dropout(0.5)
        self.fc8 = nn.Conv2d(FC6_CHANNELS, num_classes, 1)
        load_vgg_backbone(
            nn.ModuleDict({"encoder": self.encoder, "fc6": self.fc6, "fc7": self.fc7}),
            weights_backbone,
            batch_norm,
            progress,
            adapt=decimate_fc,
        )

    @property
    def num_classes(self) -> int:
        return self.fc8.out_channels

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "batch_norm": self.encoder.batch_norm}

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        size = x.shape[-2:]
        for i, stage in enumerate(self.encoder.stages):
            stride = 2 if i < 3 else 1
            x = F.max_pool2d(stage(x), 3, stride, padding=1, ceil_mode=True)
        x = self.drop6(F.relu(self.fc6(x)))
        x = self.fc8(self.drop7(F.relu(self.fc7(x))))
        zoomed = ((x.shape[-2] - 1) * STRIDE + 1, (x.shape[-1] - 1) * STRIDE + 1)
        return crop_to(F.interpolate(x, size=zoomed, mode="bilinear", align_corners=True), size)
