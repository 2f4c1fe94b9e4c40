"""FCN-32s / FCN-16s / FCN-8s (Long et al., CVPR 2015, arXiv 1411.4038) on the shared VGG16 encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_int
from ..io.state_dict import StateDictSource
from . import ports
from ._inputs import check_images
from .base import SegmentationModel
from .registry import register_model
from .score import ScoreConv2d
from .small_maps import ExplicitPadConv2d
from .vgg import FC6_SHAPE, FC7_SHAPE, VGG16, VGGEncoder
from .weights import BackboneWeights, load_vgg_backbone

Geometry = Literal["default", "caffe"]
GEOMETRIES = ("default", "caffe")

# Caffe geometry (conv1_1 padding 100, valid fc6): offsets of the crops that align each score map
# with the upsampled coarser one, and the final crop back to the input (voc-fcn*s reference nets).
_CAFFE_OFFSETS = {32: {"out": 19}, 16: {"pool4": 5, "out": 27}, 8: {"pool4": 5, "pool3": 9, "out": 31}}


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """(channels, channels, k, k) transposed-conv weight that upsamples each channel bilinearly
    (Caffe's bilinear filler, per channel: no mixing across channels)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = torch.outer(ramp, ramp)
    return weight.float()


# the pool taps fused by each variant, in the order of skip_scales
_SKIP_TAPS = {32: (), 16: ("pool4",), 8: ("pool4", "pool3")}


class _FCN(SegmentationModel):
    stride: int  # output stride of the coarsest prediction that is upsampled: 32, 16 or 8

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        batch_norm: bool = True,
        geometry: Geometry = "default",
        fixed_upsampling: bool = False,
        weights_backbone: BackboneWeights = None,
        progress: bool = True,
        skip_scales: Sequence[float] | None = None,
    ) -> None:
        num_classes, in_channels = check_int("num_classes", num_classes, 1), check_int("in_channels", in_channels, 1)
        for name, value in (("batch_norm", batch_norm), ("fixed_upsampling", fixed_upsampling), ("progress", progress)):
            check_bool(name, value)
        check_choice("geometry", geometry, GEOMETRIES)
        super().__init__()
        self.geometry = geometry
        self.skip_scales = self._check_skip_scales(skip_scales)
        self.fixed_upsampling = fixed_upsampling
        caffe = geometry == "caffe"
        self.encoder = VGGEncoder(in_channels, batch_norm, VGG16, ceil_mode=True, first_padding=100 if caffe else None)
        # an nn.Conv2d whose CPU backward stays fast on pool5 maps under 7 pixels (small_maps.py)
        self.fc6 = ExplicitPadConv2d(FC6_SHAPE[1], FC6_SHAPE[0], FC6_SHAPE[-1], padding=0 if caffe else FC6_SHAPE[-1] // 2)
        self.fc7 = nn.Conv2d(FC7_SHAPE[1], FC7_SHAPE[0], 1)
        self.drop6 = nn.Dropout(0.5)
        self.drop7 = nn.Dropout(0.5)
        # float32 on CPU bf16: its bf16 backward corrupts the heap on AMX CPUs (see models/score.py)
        self.score_fr = ScoreConv2d(FC7_SHAPE[0], num_classes)
        if self.stride <= 16:
            self.score_pool4 = nn.Conv2d(VGG16[3][-1], num_classes, 1)
            self.upscore2 = self._upsampler(num_classes, 2, fixed_upsampling)
        if self.stride == 8:
            self.score_pool3 = nn.Conv2d(VGG16[2][-1], num_classes, 1)
            self.upscore_pool4 = self._upsampler(num_classes, 2, fixed_upsampling)
        self.upscore = self._upsampler(num_classes, self.stride, fixed_upsampling)
        load_vgg_backbone(
            nn.ModuleDict({"encoder": self.encoder, "fc6": self.fc6, "fc7": self.fc7}),
            weights_backbone,
            batch_norm,
            progress,
        )

    def _check_skip_scales(self, skip_scales: Sequence[float] | None) -> tuple[float, ...]:
        taps = _SKIP_TAPS[self.stride]
        if skip_scales is None:
            return (1.0,) * len(taps)
        scales = tuple(float(scale) for scale in skip_scales)
        if len(scales) != len(taps) or not all(math.isfinite(scale) and scale > 0 for scale in scales):
            raise ValueError(
                f"skip_scales must be {len(taps)} positive finite factors for {type(self).__name__}'s skips "
                f"{taps}, got {tuple(skip_scales)}"
            )
        return scales

    def _upsampler(self, num_classes: int, factor: int, fixed: bool) -> nn.ConvTranspose2d:
        # default geometry pads by factor/2, so the output is exactly factor x the input
        padding = 0 if self.geometry == "caffe" else factor // 2
        up = nn.ConvTranspose2d(num_classes, num_classes, 2 * factor, factor, padding, bias=False)
        with torch.no_grad():
            up.weight.copy_(bilinear_kernel(num_classes, 2 * factor))
        up.weight.requires_grad_(not fixed)
        return up

    @property
    def num_classes(self) -> int:
        return self.score_fr.out_channels

    @property
    def config(self) -> dict[str, Any]:
        config = {
            **super().config,
            "batch_norm": self.encoder.batch_norm,
            "geometry": self.geometry,
            "fixed_upsampling": self.fixed_upsampling,
        }
        if any(scale != 1.0 for scale in self.skip_scales):  # default models' configs stay as they were
            config["skip_scales"] = self.skip_scales
        return config

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        _, _, pool3, pool4, pool5 = self.encoder(x)
        h = self.drop6(F.relu(self.fc6(pool5)))
        h = self.score_fr(self.drop7(F.relu(self.fc7(h))))
        if self.stride <= 16:
            h = self._fuse(self.upscore2(h), self.score_pool4(self._scale(pool4, 0)), "pool4")
        if self.stride == 8:
            h = self._fuse(self.upscore_pool4(h), self.score_pool3(self._scale(pool3, 1)), "pool3")
        return self._crop(self.upscore(h), x, "out")

    def _scale(self, tap: Tensor, skip: int) -> Tensor:
        # the tap itself, before its score layer (whose bias is not scaled), as FCN8sAtOnce does
        scale = self.skip_scales[skip]
        return tap if scale == 1.0 else tap * scale

    def _fuse(self, upsampled: Tensor, skip: Tensor, tap: str) -> Tensor:
        if self.geometry == "caffe":
            return upsampled + self._crop(skip, upsampled, tap)
        # default geometry: the upsampled map is at least the tap's size (ceil pooling); cut it to
        # that size unconditionally, so no data-dependent branch stands in the way of export
        return self._crop(upsampled, skip, tap) + skip

    def _crop(self, x: Tensor, like: Tensor, tap: str) -> Tensor:
        offset = _CAFFE_OFFSETS[self.stride][tap] if self.geometry == "caffe" else 0
        return x[:, :, offset : offset + like.shape[-2], offset : offset + like.shape[-1]]

    @classmethod
    def from_pytorch_fcn(cls, checkpoint: StateDictSource, at_once: bool = False, **kwargs) -> _FCN:
        """Build this FCN from a state dict (or its file) of the Caffe-faithful PyTorch FCN port
        (wkentaro/pytorch-fcn), e.g. its trainer's ``model_best.pth.tar``.

        That port names its layers ``conv1_1 .. conv5_3, fc6, fc7, score_fr, score_pool4,
        score_pool3, upscore2, upscore_pool4`` and ``upscore`` / ``upscore16`` / ``upscore8``. The
        model is built with the Caffe geometry and no BN; ``in_channels`` and ``num_classes`` are read
        from the weights; ``kwargs`` (e.g. ``fixed_upsampling=True``) go to the constructor, except
        the options the converter sets itself (``num_classes``, ``in_channels``, ``batch_norm``,
        ``geometry``, ``skip_scales``), which are a ``ValueError``.

        ``at_once=True`` (FCN8s only) reads the port's ``FCN8sAtOnce``: the same keys, but its
        forward scales the pool4 / pool3 maps by 0.01 / 0.0001 before their score layers, which the
        model reproduces with ``skip_scales=(0.01, 0.0001)``. The two files cannot be told apart by
        their keys: a FCN8sAtOnce file loaded without ``at_once=True`` loads without error and
        predicts wrongly.
        """
        return ports.from_pytorch_fcn(cls, checkpoint, at_once=at_once, **kwargs)


_DOC = """{name} (Long et al., `arXiv 1411.4038 <https://arxiv.org/abs/1411.4038>`_): {what}

    VGG16 encoder (``batch_norm=True``: VGG16-BN) with fc6 (7x7, 4096) and fc7 (1x1, 4096) as
    convolutions, 1x1 score layers, skips fused by addition, transposed convolutions initialised to
    bilinear upsampling (``fixed_upsampling=True`` freezes them, as the reference release does).

    ``geometry="default"``: ceil-mode pools, 'same'-padded fc6, upsampling by exactly 2x / {stride}x and
    top-left cuts to each tap's size: any H, W >= 1, about half the FLOPs of the Caffe geometry.
    ``geometry="caffe"``: conv1_1 padding 100, valid fc6 and the reference crops, so published
    checkpoints reproduce exactly (see :meth:`from_pytorch_fcn`).
    ``skip_scales``: one factor per skip (pool4, then pool3) that the pool map is multiplied by
    before its score layer; default 1 (no scaling). ``(0.01, 0.0001)`` on FCN-8s is the
    "at once" FCN-8s (pytorch-fcn's FCN8sAtOnce, ``from_pytorch_fcn(..., at_once=True)``).

    Input: float (N, in_channels, H, W), any H, W >= 1. Output: logits (N, num_classes, H, W).
    """


@register_model("fcn32s")
class FCN32s(_FCN):
    __doc__ = _DOC.format(name="FCN-32s", what="one 32x upsampling of the fc7 scores.", stride=32)
    stride = 32


@register_model("fcn16s")
class FCN16s(_FCN):
    __doc__ = _DOC.format(name="FCN-16s", what="fc7 scores upsampled 2x, fused with pool4 scores, then 16x.", stride=16)
    stride = 16


@register_model("fcn8s")
class FCN8s(_FCN):
    __doc__ = _DOC.format(
        name="FCN-8s", what="fc7 scores fused with pool4 then pool3 scores (2x each), then 8x.", stride=8
    )
    stride = 8

    @classmethod
    def from_pytorch_semseg(cls, checkpoint: StateDictSource, **kwargs) -> FCN8s:
        """Build an FCN-8s from pytorch-semseg's ``fcn8s`` (meetshah1995/pytorch-semseg) with learned
        upsampling (``learned_billinear=True``, its default): a state dict, its file, or the
        trainer's ``{"model_state": ...}`` file, ``module.`` prefixes and all.

        That network is the Caffe FCN-8s under other names (``conv_block1..5``, ``classifier.0/3/6``
        for fc6, fc7, score_fr, ``upscore4`` for upscore_pool4); the model is built as by
        :meth:`from_pytorch_fcn` and gives its outputs at any size. semseg's fcn32s, fcn16s and
        ``learned_billinear=False`` fcn8s upsample with nearest-neighbour ``F.upsample`` instead and
        are refused. ``kwargs`` as for :meth:`from_pytorch_fcn`.
        """
        return ports.from_pytorch_semseg_fcn8s(cls, checkpoint, **kwargs)
