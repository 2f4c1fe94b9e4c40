"""The one conv-BN-ReLU block and the stage builder every encoder and decoder is made from."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .._checks import check_bool, check_int
from .small_maps import ExplicitPadConv2d, ExplicitPadConvTranspose2d

#: A network body described as data: one entry per stage, holding the output width of each conv.
Stages = Sequence[Sequence[int]]


class ConvBNReLU(nn.Sequential):
    """``conv`` (same padding), optional ``bn``, optional ``relu``: named children, so keys read
    ``conv.weight`` / ``bn.running_mean`` and map one-to-one onto published checkpoints.

    ``groups`` as in ``nn.Conv2d`` (``groups=in_channels=out_channels``: one single-channel filter per
    map). ``transposed`` makes ``conv`` an ``nn.ConvTranspose2d`` (stride 1, same size): the same
    function family as a conv, kept for the weight layout (in, out, k, k) of Caffe's Deconvolution
    layers, which DeconvNet's published weights use. ``explicit_padding`` makes it the
    :mod:`~segzoo.models.small_maps` layer of the same kind, whose CPU backward stays fast on maps
    smaller than the kernel (DeconvNet's 4096-channel fc6 and deconv-fc6).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        batch_norm: bool = True,
        bias: bool = True,
        relu: bool = True,
        groups: int = 1,
        transposed: bool = False,
        explicit_padding: bool = False,
    ) -> None:
        in_channels, out_channels = check_int("in_channels", in_channels, 1), check_int("out_channels", out_channels, 1)
        kernel_size = check_int("kernel_size", kernel_size, 1)
        for name, value in (("batch_norm", batch_norm), ("bias", bias), ("relu", relu), ("explicit_padding", explicit_padding)):
            check_bool(name, value)
        super().__init__()
        # bias kept by default even with BN: torchvision's vgg16_bn checkpoint has conv biases
        if explicit_padding:
            conv = ExplicitPadConvTranspose2d if transposed else ExplicitPadConv2d
        else:
            conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias, groups=groups)
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_channels)
        if relu:
            self.relu = nn.ReLU(inplace=True)


def make_stages(
    stages: Stages,
    in_channels: int,
    batch_norm: bool = True,
    kernel_size: int = 3,
    bias: bool = True,
    relu: bool = True,
    depthwise: bool = False,
    transposed: bool = False,
) -> nn.ModuleList:
    """Build one ``nn.Sequential`` of :class:`ConvBNReLU` blocks per stage.

    ``stages=((64, 64), (128, 128))`` gives two stages of two convs each; every conv's input width
    is the previous conv's output width, starting from ``in_channels``. Pooling is not part of a
    stage: SegNet and FCN pool differently (with indices, or to tap pool3/pool4). ``depthwise``:
    every filter sees one map only (the SegNet paper's single-channel decoder filters), so each conv
    must keep its width; ``transposed``: see :class:`ConvBNReLU`.
    """
    check_stages(stages)
    in_channels = check_int("in_channels", in_channels, 1)
    built = nn.ModuleList()
    width = in_channels
    for widths in stages:
        blocks = []
        for out in widths:
            if depthwise and out != width:
                raise ValueError(f"depthwise stages keep their width; a conv from {width} to {out} channels cannot be depthwise")
            groups = width if depthwise else 1
            blocks.append(ConvBNReLU(width, out, kernel_size, batch_norm, bias, relu, groups, transposed))
            width = out
        built.append(nn.Sequential(*blocks))
    return built


def check_stages(stages: Stages) -> None:
    """``TypeError``/``ValueError`` unless ``stages`` is a non-empty sequence of non-empty sequences
    of positive int widths."""
    expected = "stages must be a non-empty sequence of non-empty sequences of widths (ints >= 1)"
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
        raise ValueError(f"{expected}, got {stages!r}")
    for widths in stages:
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise ValueError(f"{expected}, got {stages!r}")
        for width in widths:
            try:
                check_int("width", width, 1)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{expected}, got {stages!r}") from None


def stage_out_channels(stages: Stages) -> list[int]:
    """Output width of each stage (the width of its last conv)."""
    return [widths[-1] for widths in stages]


def mirror(stages: Stages) -> tuple[tuple[int, ...], ...]:
    """Decoder widths for an encoder: its stages in reverse, each conv keeping its width except a
    stage's last, which narrows to the width of the stage below (for the first stage, its own)."""
    reversed_stages = list(reversed(stages))
    decoder = []
    for i, widths in enumerate(reversed_stages):
        below = reversed_stages[i + 1][-1] if i + 1 < len(reversed_stages) else widths[-1]
        decoder.append((*widths[:-1], below))
    return tuple(decoder)
