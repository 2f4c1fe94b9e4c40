"""The SegNet paper's decoder variants (Badrinarayanan et al., arXiv 1511.00561, Section 3.1, Table 1).

Every variant shares SegNet-Basic's encoder: four stages of one 7x7, 64-channel conv (no bias) + BN +
ReLU, each followed by 2x2 max pooling; only the decoder differs. Parameter counts below are for 3
input channels and 11 classes (CamVid), worked out from these pieces:

* encoder: 3*64*49 + 3 * (64*64*49) = 611,520 conv weights + 4 BN * 128 = **612,032**;
* SegNet-Basic's decoder: 4 * (64*64*49 + 128) = 803,328; the 1x1 classifier 64*11 + 11 = 715.

The paper's own figures (Table 1, in millions) read as "0.625 for the encoder plus the decoder":
SegNet-Basic 1.425 = 0.625 + 0.80. Counted layer by layer, the shared part is 0.613M, so every count
here sits about 0.012M below the paper's, except where a variant's own layers differ (stated on it).

Section 3.1 says which encoder map each decoder uses: the one of "the corresponding resolution",
i.e. decoder ``d`` upsamples to the size of encoder stage ``d``'s conv output (the map SegNet pools
and keeps the indices of) and uses that map. ``ceil_mode`` pooling throughout, so any H, W >= 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_int
from ._inputs import check_images
from .base import SegmentationModel
from .blocks import make_stages, mirror
from .fcn import bilinear_kernel
from .pooling import max_pool_with_indices, max_unpool
from .registry import register_model
from .segnet import SEGNET_BASIC, DropoutPlacement, Unpooling, _check_options, _SegNetBase
from .upsampling import crop_to, upsample2x
from .vgg import VGGEncoder

#: FCN-Basic's upsampling kernel ("We set the kernel size to 8 x 8", Section 3.1)
UPSAMPLING_KERNEL = 8


def basic_encoder(in_channels: int, ceil_mode: bool = True) -> VGGEncoder:
    """SegNet-Basic's encoder: 4 stages of 7x7 conv (no bias) + BN + ReLU, 64 channels."""
    return VGGEncoder(in_channels, True, SEGNET_BASIC, kernel_size=7, bias=False, ceil_mode=ceil_mode)


@register_model("segnet_basic_single_channel_decoder")
class SegNetBasicSingleChannelDecoder(_SegNetBase):
    """SegNet-Basic-SingleChannelDecoder (`arXiv 1511.00561 <https://arxiv.org/abs/1511.00561>`_, Table 1).

    SegNet-Basic whose decoder filters are single-channel: "they only convolve their corresponding
    upsampled feature map" (depthwise 7x7 convs, ``groups=64``, + BN, no ReLU, no bias).

    Parameters (11 classes): 612,032 + 4 * (64*49 + 128) + 715 = **625,803**; paper 0.625M.

    Input: float (N, in_channels, H, W), any H, W >= 1 (``ceil_mode=True``) or >= 16 (``False``).
    Output: logits (N, num_classes, H, W). ``dropout`` and ``unpooling`` as for :class:`SegNetBasic`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        ceil_mode: bool = True,
        dropout: DropoutPlacement = "none",
        dropout_rate: float = 0.5,
        unpooling: Unpooling = "compact",
    ) -> None:
        num_classes, in_channels, dropout_rate = _check_options(num_classes, in_channels, ceil_mode, dropout, dropout_rate, unpooling)
        width = SEGNET_BASIC[-1][-1]
        decoder = make_stages(mirror(SEGNET_BASIC), width, True, kernel_size=7, bias=False, relu=False, depthwise=True)
        super().__init__(
            basic_encoder(in_channels, ceil_mode), decoder, nn.Conv2d(width, num_classes, 1), dropout, dropout_rate, unpooling
        )


@register_model("segnet_basic_encoder_addition")
class SegNetBasicEncoderAddition(_SegNetBase):
    """SegNet-Basic-EncoderAddition (`arXiv 1511.00561 <https://arxiv.org/abs/1511.00561>`_, Table 1).

    SegNet-Basic that also adds the 64 encoder feature maps of each stage to its decoder: each
    unpooled map plus the encoder stage's conv output (the map whose pooling indices were kept), then
    the decoder's 7x7 conv + BN. The paper says the encoder maps are "added to the corresponding
    output feature maps from the SegNet decoder"; adding them before the decoder conv, where the
    unpooled map is sparse, is the reading taken here (the parameters are the same either way).

    Parameters (11 classes): **1,416,075**, SegNet-Basic's (the addition has none); paper 1.425M.

    Input: float (N, in_channels, H, W), any H, W >= 1 (``ceil_mode=True``) or >= 16 (``False``).
    Output: logits (N, num_classes, H, W). ``dropout`` and ``unpooling`` as for :class:`SegNetBasic`.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        ceil_mode: bool = True,
        dropout: DropoutPlacement = "none",
        dropout_rate: float = 0.5,
        unpooling: Unpooling = "compact",
    ) -> None:
        num_classes, in_channels, dropout_rate = _check_options(num_classes, in_channels, ceil_mode, dropout, dropout_rate, unpooling)
        width = SEGNET_BASIC[-1][-1]
        decoder = make_stages(mirror(SEGNET_BASIC), width, True, kernel_size=7, bias=False, relu=False)
        super().__init__(
            basic_encoder(in_channels, ceil_mode), decoder, nn.Conv2d(width, num_classes, 1), dropout, dropout_rate, unpooling
        )

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        skips, indices = [], []
        compact = self.unpooling == "compact"
        for stage, drop in zip(self.encoder.stages, self.encoder_dropout):
            x = stage(x)
            skips.append(x)
            x, where = max_pool_with_indices(x, self.encoder.ceil_mode, compact)
            indices.append(where)
            x = drop(x)
        for stage, drop in zip(self.decoder, self.decoder_dropout):
            skip = skips.pop()
            x = drop(stage(max_unpool(x, indices.pop(), skip.shape[-2:]) + skip))
        return self.classifier(x)


@register_model("bilinear_interpolation")
class BilinearInterpolation(SegmentationModel):
    """Bilinear-Interpolation (`arXiv 1511.00561 <https://arxiv.org/abs/1511.00561>`_, Table 1).

    SegNet-Basic's encoder; the decoder upsamples with fixed bilinear interpolation, "and therefore
    requires no learning for upsampling": four 2x bilinear upsamplings (each cut to the size of the
    encoder map of that resolution, see :mod:`segzoo.models.upsampling`), then a 1x1 classifier.
    No decoder convs: the paper's count (0.625M, about the encoder's) and inference time (24.2 ms,
    FCN-Basic's, below the single-channel decoder's 33.1 ms) leave no room for them.

    Parameters (11 classes): 612,032 + 715 = **612,747**; paper 0.625M (the same figure as the
    single-channel decoder's, which counts 625,803 here).

    Input: float (N, in_channels, H, W), any H, W >= 1. Output: logits (N, num_classes, H, W).
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        num_classes, in_channels = check_int("num_classes", num_classes, 1), check_int("in_channels", in_channels, 1)
        self.encoder = basic_encoder(in_channels)
        self.classifier = nn.Conv2d(self.encoder.out_channels[-1], num_classes, 1)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        sizes = []
        for stage in self.encoder.stages:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        for size in reversed(sizes):
            x = upsample2x(x, size)
        return self.classifier(x)


def learned_upsampler(channels: int, fixed: bool = False) -> nn.ConvTranspose2d:
    """8x8 transposed conv, stride 2, that starts as exact 2x bilinear upsampling of each channel.

    Padding 3 gives exactly twice the input size. The 4x4 bilinear kernel of a 2x upsampling sits in
    the middle of the 8x8 one (zeros around it), which makes it the same map as a 4x4 kernel with
    padding 1; training may widen it. (Caffe's bilinear filler for an 8x8 kernel is the 4x kernel,
    which at stride 2 would multiply a constant map by 4.)
    """
    up = nn.ConvTranspose2d(channels, channels, UPSAMPLING_KERNEL, 2, UPSAMPLING_KERNEL // 2 - 1, bias=False)
    with torch.no_grad():
        up.weight.zero_()
        margin = (UPSAMPLING_KERNEL - 4) // 2
        up.weight[:, :, margin : margin + 4, margin : margin + 4] = bilinear_kernel(channels, 4)
    up.weight.requires_grad_(not fixed)
    return up


class _FCNBasic(SegmentationModel):
    """SegNet-Basic's encoder with FCN's decoding (Section 3.1, Fig. 3 right).

    With ``dim_reduction``, a 1x1 conv (with bias, as FCN's score layers) compresses the final
    encoder output (pool4, 1/16) to ``num_classes`` channels, the decoder's input; each of the four
    decoders upsamples 2x with a learned 8x8 deconvolution (bilinear start, no bias, as FCN's) and,
    with ``addition``, adds the encoder map of that resolution, itself compressed by its own 1x1
    conv. The last decoder's output is the logits. Without ``dim_reduction`` the decoder works on the
    64 encoder channels (64-to-64 deconvolutions, the uncompressed maps added), and a 1x1 classifier
    turns its output into logits. There are no other decoder convs (Fig. 3: upsampling, then the sum).
    """

    addition: bool
    dim_reduction: bool

    def __init__(self, num_classes: int, in_channels: int = 3, fixed_upsampling: bool = False) -> None:
        super().__init__()
        num_classes, in_channels = check_int("num_classes", num_classes, 1), check_int("in_channels", in_channels, 1)
        self.fixed_upsampling = check_bool("fixed_upsampling", fixed_upsampling)
        self.encoder = basic_encoder(in_channels)
        channels = self.encoder.out_channels
        if self.dim_reduction:
            self.reduce = nn.Conv2d(channels[-1], num_classes, 1)
            if self.addition:
                self.reduce_skips = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in channels)
            width = num_classes
        else:
            width = channels[-1]
            self.classifier = nn.Conv2d(width, num_classes, 1)
        self.upsample = nn.ModuleList(learned_upsampler(width, fixed_upsampling) for _ in channels)

    @property
    def num_classes(self) -> int:
        return (self.reduce if self.dim_reduction else self.classifier).out_channels

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "fixed_upsampling": self.fixed_upsampling}

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        skips, x = self.encoder.skips_and_bottom(x)
        if self.dim_reduction:
            x = self.reduce(x)
        for d, up in zip(reversed(range(len(skips))), self.upsample):
            skip = skips.pop()
            x = crop_to(up(x), skip.shape[-2:])
            if self.addition:
                x = x + (self.reduce_skips[d](skip) if self.dim_reduction else skip)
        return x if self.dim_reduction else self.classifier(x)


_FCN_BASIC_DOC = """{name} (`arXiv 1511.00561 <https://arxiv.org/abs/1511.00561>`_, Table 1): {what}

    SegNet-Basic's encoder, FCN's decoding: see :class:`_FCNBasic`. ``fixed_upsampling=True``
    freezes the bilinear deconvolutions (the paper's Table 1 learns them, from bilinear weights).

    Parameters (11 classes): {count}.

    Input: float (N, in_channels, H, W), any H, W >= 1. Output: logits (N, num_classes, H, W).
    """


@register_model("fcn_basic")
class FCNBasic(_FCNBasic):
    __doc__ = _FCN_BASIC_DOC.format(
        name="FCN-Basic",
        what="encoder maps compressed to the classes and added.",
        count="612,032 + 5 reductions * (64*11 + 11) + 4 deconvs * (11*11*8*8) = 612,032 + 3,575 + 30,976 "
        "= **646,583**; paper 0.65M",
    )
    addition, dim_reduction = True, True


@register_model("fcn_basic_no_addition")
class FCNBasicNoAddition(_FCNBasic):
    __doc__ = _FCN_BASIC_DOC.format(
        name="FCN-Basic-NoAddition",
        what="the compressed final encoder output upsampled, no encoder maps added.",
        count="612,032 + 715 + 30,976 = **643,723**; paper 0.65M (its skip reductions, which would go "
        "unused, are not built)",
    )
    addition, dim_reduction = False, True


@register_model("fcn_basic_no_dim_reduction")
class FCNBasicNoDimReduction(_FCNBasic):
    __doc__ = _FCN_BASIC_DOC.format(
        name="FCN-Basic-NoDimReduction",
        what="64-channel decoder, the uncompressed encoder maps added.",
        count="612,032 + 4 deconvs * (64*64*8*8) + 715 = 612,032 + 1,048,576 + 715 = **1,661,323**; "
        "paper 1.625M (2% more here: the paper's figures look rounded, 1.625 = 0.625 + 1.0)",
    )
    addition, dim_reduction = True, False


@register_model("fcn_basic_no_addition_no_dim_reduction")
class FCNBasicNoAdditionNoDimReduction(_FCNBasic):
    __doc__ = _FCN_BASIC_DOC.format(
        name="FCN-Basic-NoAddition-NoDimReduction",
        what="64-channel decoder, nothing added.",
        count="**1,661,323**, as FCN-Basic-NoDimReduction (the addition has none); paper 1.625M",
    )
    addition, dim_reduction = False, False
