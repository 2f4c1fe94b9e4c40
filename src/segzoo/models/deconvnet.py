"""DeconvNet (Noh, Hong and Han, "Learning Deconvolution Network for Semantic Segmentation",
ICCV 2015, arXiv 1505.04366) on the shared VGG16 encoder."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_int
from ._inputs import check_images
from .base import SegmentationModel
from .blocks import ConvBNReLU, make_stages, mirror
from .pooling import max_pool_with_indices, max_unpool
from .registry import register_model
from .segnet import UNPOOLING_MODES, Unpooling
from .vgg import FC6_SHAPE, FC7_SHAPE, VGG16, VGGEncoder
from .weights import BackboneWeights, load_vgg_backbone


@register_model("deconvnet")
class DeconvNet(SegmentationModel):
    """DeconvNet (`arXiv 1505.04366 <https://arxiv.org/abs/1505.04366>`_): VGG16-BN encoder, fc6/fc7,
    and a mirrored decoder of unpooling and deconvolution, BN after every layer but the classifier.

    Encoder: VGG16's 13 convs (3x3, with bias) + BN + ReLU, 2x2 max pooling keeping the indices.
    fc6 (7x7, 4096) and fc7 (1x1, 4096) as convolutions, each + BN + ReLU; deconv-fc6, a 7x7
    deconvolution back to 512 channels + BN + ReLU. Decoder: per stage, unpooling with the pooling
    indices (as SegNet; :mod:`segzoo.models.pooling`), then 3x3 deconvolutions + BN + ReLU mirroring
    the encoder's widths (512, 512, 512 | 512, 512, 256 | 256, 256, 128 | 128, 64 | 64, 64); a 1x1
    conv to ``num_classes`` raw logits. Every deconvolution is an ``nn.ConvTranspose2d`` (weights
    (in, out, k, k), Caffe's Deconvolution layout) at stride 1.

    Geometry: the paper runs fc6 'valid' on 7x7 pool5 maps of 224x224 proposals (fc6 output 1x1,
    deconv-fc6 back to 7x7). Here fc6 and deconv-fc6 are padded by 3, so pool5 keeps its size
    whatever it is: the same weights, any H, W >= 1 (ceil-mode pools, as SegNet), no 224x224 crops.

    Parameters (21 classes): 251,805,653; paper (Noh et al.): 252M. Encoder 14,723,136 (VGG16-BN);
    fc6 102,764,544 + BN 8,192; fc7 16,781,312 + BN 8,192; deconv-fc6 102,760,960 + BN 1,024; decoder
    14,756,928; classifier 1,365.

    ``weights_backbone`` loads ImageNet VGG16-BN weights into the encoder and fc6/fc7 (torchvision's
    classifier reshaped, as for FCN); their BN layers, deconv-fc6 and the decoder start fresh.
    ``unpooling`` as for :class:`SegNet`.

    Input: float (N, in_channels, H, W), any H, W >= 1. Output: logits (N, num_classes, H, W).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        weights_backbone: BackboneWeights = None,
        progress: bool = True,
        unpooling: Unpooling = "compact",
    ) -> None:
        super().__init__()
        num_classes, in_channels = check_int("num_classes", num_classes, 1), check_int("in_channels", in_channels, 1)
        check_bool("progress", progress)
        check_choice("unpooling", unpooling, UNPOOLING_MODES)
        self.unpooling = unpooling
        self.encoder = VGGEncoder(in_channels, True, VGG16, ceil_mode=True)
        fc6_out, fc6_in, fc6_kernel = FC6_SHAPE[:3]
        # fc6 and deconv-fc6 keep a fast CPU backward on pool5 maps under 7 pixels (small_maps.py)
        self.fc6 = ConvBNReLU(fc6_in, fc6_out, fc6_kernel, explicit_padding=True)
        self.fc7 = ConvBNReLU(FC7_SHAPE[1], FC7_SHAPE[0], 1)
        self.deconv_fc6 = ConvBNReLU(FC7_SHAPE[0], fc6_in, fc6_kernel, transposed=True, explicit_padding=True)
        self.decoder = make_stages(mirror(VGG16), VGG16[-1][-1], True, transposed=True)
        self.classifier = nn.Conv2d(VGG16[0][-1], num_classes, 1)
        load_vgg_backbone(
            nn.ModuleDict({"encoder": self.encoder, "fc6": self.fc6.conv, "fc7": self.fc7.conv}),
            weights_backbone,
            True,
            progress,
        )

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "unpooling": self.unpooling}

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        sizes, indices = [], []
        compact = self.unpooling == "compact"
        for stage in self.encoder.stages:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, where = max_pool_with_indices(x, self.encoder.ceil_mode, compact)
            indices.append(where)
        x = self.deconv_fc6(self.fc7(self.fc6(x)))
        for stage in self.decoder:
            x = stage(max_unpool(x, indices.pop(), sizes.pop()))
        return self.classifier(x)
