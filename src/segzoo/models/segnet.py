"""SegNet and SegNet-Basic (Badrinarayanan et al., arXiv 1511.00561)."""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_float, check_int
from ..io.state_dict import StateDictSource
from . import ports
from ._inputs import check_images
from .base import SegmentationModel
from .blocks import Stages, make_stages, mirror
from .pooling import max_pool_with_indices, max_unpool
from .registry import register_model
from .vgg import VGG16, VGGEncoder
from .weights import BackboneWeights, load_vgg_backbone

SEGNET_BASIC: Stages = ((64,), (64,), (64,), (64,))

Unpooling = Literal["compact", "native"]
UNPOOLING_MODES: tuple[str, ...] = ("compact", "native")

DropoutPlacement = Literal["none", "central", "encoder", "decoder", "encoder-decoder", "classifier"]
#: where Bayesian SegNet (Kendall et al., arXiv 1511.02680, Table 1) puts dropout; "central" is its choice
DROPOUT_PLACEMENTS: tuple[str, ...] = ("none", "central", "encoder", "decoder", "encoder-decoder", "classifier")


def dropout_stages(placement: str, num_stages: int) -> tuple[frozenset[int], frozenset[int]]:
    """Encoder stages followed by dropout (after their pooling) and encoder stages whose mirrored
    decoder stage is followed by dropout, for a ``placement`` of :data:`DROPOUT_PLACEMENTS`.

    "central" is the paper's best: the innermost stages, all but the outer two (pool3-pool5 and the
    decoders of stages 5-3 for SegNet; pool3, pool4 and decoders 4, 3 for SegNet-Basic); "classifier"
    is dropout before the classifier only.
    """
    every = frozenset(range(num_stages))
    inner = frozenset(range(2, num_stages))
    presets = {
        "none": (frozenset(), frozenset()),
        "central": (inner, inner),
        "encoder": (every, frozenset()),
        "decoder": (frozenset(), every),
        "encoder-decoder": (every, every),
        "classifier": (frozenset(), frozenset({0})),
    }
    if placement not in presets:
        raise ValueError(f"dropout must be one of {DROPOUT_PLACEMENTS}, got {placement!r}")
    return presets[placement]


class _SegNetBase(SegmentationModel):
    """Encoder stages pooled with indices; decoder stages fed by unpooling with those indices.

    Optional dropout (Bayesian SegNet) follows the chosen encoder stages' pooling and decoder stages;
    the dropout modules hold no weights, so plain and Bayesian checkpoints are interchangeable.
    ``unpooling`` picks the index format (see :mod:`segzoo.pooling`); outputs and gradients are
    bitwise the same either way.
    """

    def __init__(
        self,
        encoder: VGGEncoder,
        decoder: nn.ModuleList,
        classifier: nn.Conv2d,
        dropout: str,
        dropout_rate: float,
        unpooling: str,
        classifier_bn: nn.BatchNorm2d | None = None,
    ) -> None:
        super().__init__()
        self.unpooling = unpooling
        num_stages = len(encoder.stages)
        after_encoder, after_decoder = dropout_stages(dropout, num_stages)
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = classifier
        # BN + ReLU on the logits (pytorch-semseg's SegNet); None: raw classifier outputs
        self.classifier_bn = classifier_bn
        self.dropout, self.dropout_rate = dropout, dropout_rate
        self.encoder_dropout = nn.ModuleList(_dropout(i in after_encoder, dropout_rate) for i in range(num_stages))
        # decoder stage d mirrors encoder stage num_stages - 1 - d
        self.decoder_dropout = nn.ModuleList(
            _dropout(num_stages - 1 - d in after_decoder, dropout_rate) for d in range(num_stages)
        )

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    @property
    def config(self) -> dict[str, Any]:
        return {
            **super().config,
            "ceil_mode": self.encoder.ceil_mode,
            "dropout": self.dropout,
            "dropout_rate": self.dropout_rate,
            "unpooling": self.unpooling,
        }

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, self.in_channels, self.encoder.min_size, type(self).__name__, next(self.encoder.parameters()))
        sizes, indices = [], []
        compact = self.unpooling == "compact"
        for stage, drop in zip(self.encoder.stages, self.encoder_dropout):
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, where = max_pool_with_indices(x, self.encoder.ceil_mode, compact)
            indices.append(where)
            x = drop(x)
        for stage, drop in zip(self.decoder, self.decoder_dropout):
            # popped, so each stage's indices are freed as soon as they are used (at inference)
            x = drop(stage(max_unpool(x, indices.pop(), sizes.pop())))
        x = self.classifier(x)
        if self.classifier_bn is not None:
            x = F.relu(self.classifier_bn(x))
        return x


def _check_options(
    num_classes: Any, in_channels: Any, ceil_mode: Any, dropout: Any, dropout_rate: Any, unpooling: Any
) -> tuple[int, int, float]:
    """The options both SegNets share, checked before a layer is built; returns the sizes and
    rate as plain Python numbers."""
    num_classes, in_channels = check_int("num_classes", num_classes, 1), check_int("in_channels", in_channels, 1)
    check_bool("ceil_mode", ceil_mode)
    check_choice("dropout", dropout, DROPOUT_PLACEMENTS)
    dropout_rate = check_float("dropout_rate", dropout_rate, 0.0, 1.0, high_open=True)
    check_choice("unpooling", unpooling, UNPOOLING_MODES)
    return num_classes, in_channels, dropout_rate


def _dropout(enabled: bool, rate: float) -> nn.Module:
    return nn.Dropout(rate) if enabled else nn.Identity()


@register_model("segnet")
class SegNet(_SegNetBase):
    """SegNet (`arXiv 1511.00561 <https://arxiv.org/abs/1511.00561>`_): VGG16 encoder, mirrored decoder.

    The 13-conv VGG16(-BN) encoder max-pools after each stage and keeps the argmax indices; the
    decoder unpools with them (no learned upsampling) and mirrors the encoder's 13 convs, the last of
    which (conv1_1_D) is the per-pixel classifier: a 3x3 conv to ``num_classes`` raw logits, without
    BN or ReLU. 29,449,355 parameters for 11 classes.

    Input: float (N, in_channels, H, W), any H, W >= 1 with ``ceil_mode=True`` (the paper's Caffe
    pooling: 360x480 gives 23x30 at pool5), H, W >= 32 with ``ceil_mode=False``.
    Output: logits (N, num_classes, H, W).

    ``weights_backbone`` loads ImageNet weights into the encoder (see
    :func:`segzoo.weights.resolve_backbone_weights`); the decoder stays freshly initialised.
    ``dropout="central"`` is Bayesian SegNet (`arXiv 1511.02680 <https://arxiv.org/abs/1511.02680>`_):
    dropout of ``dropout_rate`` after pool3-pool5 and after the decoders of stages 5-3; sample it with
    :func:`segzoo.uncertainty.mc_predict`. Other placements: :data:`DROPOUT_PLACEMENTS`.

    ``unpooling="compact"`` (default) keeps each pooling window's argmax as a uint8 position (8x
    less memory than int64 indices; exports, compiles at changing sizes and trains
    deterministically); ``"native"`` uses ``F.max_unpool2d`` (faster in eager mode on CPU).

    ``classifier_bn_relu=True`` follows the classifier with BatchNorm (``classifier_bn``) and ReLU,
    so the logits are non-negative: pytorch-semseg's SegNet, whose last decoder block is a
    conv-BN-ReLU like every other (see :meth:`from_pytorch_semseg`). Not the paper's network.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        batch_norm: bool = True,
        ceil_mode: bool = True,
        weights_backbone: BackboneWeights = None,
        progress: bool = True,
        dropout: DropoutPlacement = "none",
        dropout_rate: float = 0.5,
        unpooling: Unpooling = "compact",
        classifier_bn_relu: bool = False,
    ) -> None:
        num_classes, in_channels, dropout_rate = _check_options(num_classes, in_channels, ceil_mode, dropout, dropout_rate, unpooling)
        check_bool("batch_norm", batch_norm)
        check_bool("progress", progress)
        decoder_stages = mirror(VGG16)
        # the mirror of conv1_1 is the classifier, so the last decoder stage ends one conv early
        decoder_stages = (*decoder_stages[:-1], decoder_stages[-1][:-1])
        super().__init__(
            VGGEncoder(in_channels, batch_norm, VGG16, ceil_mode=ceil_mode),
            make_stages(decoder_stages, VGG16[-1][-1], batch_norm),
            nn.Conv2d(VGG16[0][-1], num_classes, 3, padding=1),
            dropout,
            dropout_rate,
            unpooling,
            nn.BatchNorm2d(num_classes) if classifier_bn_relu else None,
        )
        load_vgg_backbone(nn.ModuleDict({"encoder": self.encoder}), weights_backbone, batch_norm, progress)

    @property
    def config(self) -> dict[str, Any]:
        config = {**super().config, "batch_norm": self.encoder.batch_norm}
        if self.classifier_bn is not None:  # default models' configs stay as they were
            config["classifier_bn_relu"] = True
        return config

    @classmethod
    def from_segnet_pytorch(cls, checkpoint: StateDictSource, **kwargs) -> SegNet:
        """Build a SegNet from a state dict (or its file) of the widely used PyTorch SegNet port.

        That port names its layers ``conv11, bn11, ..., conv53, bn53`` (encoder) and
        ``conv53d, bn53d, ..., conv12d, bn12d, conv11d`` (decoder; ``conv11d`` is the classifier).
        ``in_channels`` and ``num_classes`` are read from the weights; ``kwargs`` (e.g. ``ceil_mode``)
        go to :class:`SegNet`, except ``num_classes``, ``in_channels``, ``batch_norm`` and
        ``classifier_bn_relu``, which the converter sets (a ``ValueError``). Outputs equal the
        port's wherever the port runs (multiples of 32).
        """
        return ports.from_segnet_pytorch(cls, checkpoint, **kwargs)

    @classmethod
    def from_pytorch_semseg(cls, checkpoint: StateDictSource, **kwargs) -> SegNet:
        """Build a SegNet from pytorch-semseg's ``segnet`` (meetshah1995/pytorch-semseg): a state
        dict, its file, or the trainer's ``{"model_state": ...}`` file, ``module.`` prefixes and all.

        That port names its layers ``downS.convC.cbr_unit.{0: conv, 1: BN}`` and
        ``upS.convC.cbr_unit.{0,1}``; its pooling is floor mode, unpooled to the pre-pool size, and
        its last block (``up1.conv2``, the classifier) is conv-BN-ReLU. The model is built with
        ``ceil_mode=False`` and ``classifier_bn_relu=True`` (both saved in its config), so its outputs
        equal the port's at every size the port runs (H, W >= 32). ``in_channels`` and
        ``num_classes`` are read from the weights; ``kwargs`` (e.g. ``unpooling``, ``dropout``) go to
        :class:`SegNet`, except the options the converter sets (``num_classes``, ``in_channels``,
        ``batch_norm``, ``ceil_mode``, ``classifier_bn_relu``: a ``ValueError``).
        """
        return ports.from_pytorch_semseg_segnet(cls, checkpoint, **kwargs)


@register_model("segnet_basic")
class SegNetBasic(_SegNetBase):
    """SegNet-Basic (`arXiv 1511.00561 <https://arxiv.org/abs/1511.00561>`_, Section 4.1).

    Four encoder stages of one 7x7, 64-channel conv + BN + ReLU + 2x2 max pooling; four decoder
    stages of unpooling + 7x7 conv + BN with no ReLU; convs without biases, as the paper states; a
    1x1 classifier to raw logits. 1,416,075 parameters for 11 classes.

    Input: float (N, in_channels, H, W), any H, W >= 1 (``ceil_mode=True``) or >= 16 (``False``).
    Output: logits (N, num_classes, H, W).

    ``dropout="central"`` is Bayesian SegNet-Basic (`arXiv 1511.02680 <https://arxiv.org/abs/1511.02680>`_):
    dropout of ``dropout_rate`` after pool3 and pool4 and after decoder stages 4 and 3.
    ``unpooling`` as for :class:`SegNet`.
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
        super().__init__(
            VGGEncoder(in_channels, True, SEGNET_BASIC, kernel_size=7, bias=False, ceil_mode=ceil_mode),
            make_stages(mirror(SEGNET_BASIC), width, True, kernel_size=7, bias=False, relu=False),
            nn.Conv2d(width, num_classes, 1),
            dropout,
            dropout_rate,
            unpooling,
        )
