"""Eager int8 inference for the SegNet family: uint8 maps from convolution to convolution, through
max pooling and unpooling, on oneDNN's int8 kernels.

Inductor compiles SegNet's int8 graph with compact unpooling only (native unpooling does not export
with free sizes), whose element-wise code made it slower than eager bf16 (SegNet at 1x3x360x480 on a
2-core Xeon with AMX: 235 against 128 ms). Here every conv between the first and the classifier is
``torch.ops.onednn.qconv2d_pointwise``: uint8 activations, per-tensor affine (scale and zero point
from histogram observers over the calibration images, as the x86 inductor quantizer's default),
per-channel symmetric int8 weights packed once, the ReLU and the requantization of the output fused
into the kernel. The first conv, which sees the image, and the classifier stay float32, as in the
compiled int8 graph (:func:`segzoo.inference.optimize.float_layer_names`); the last int8 conv
writes float32 for the classifier.

Max pooling must pick the maxima the float model picks: among uint8 values, ties (within a
quantization step, and every value past the calibrated range) move values in the unpooled maps (a
random SegNet-Basic at 96x128 on an AVX2 EPYC: 98.4% argmax agreement with float32, against 99.7%
with what follows). So each encoder stage's last conv writes float32 *codes*,
``value / scale + zero_point + 0.5`` (the scale folded into the kernel's weight scales and bias),
which order as the values do; they are pooled, then clamped and truncated to uint8, which rounds to
nearest. Unpooling only moves values, so a map keeps its scale through it:
it is unpooled as float16 bit patterns (``F.max_unpool2d`` has no integer kernel).
"""

from __future__ import annotations

import itertools
import platform
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Size, Tensor, nn
from torch.ao.quantization.observer import HistogramObserver

from ..models.segnet import _SegNetBase
from .prepack import PackedWeightModule, PrepackedConv2d, bias_or_zeros, packable, prepack_available

#: a uint8 map's scale and zero point: value = scale * (q - zero_point)
QParams = tuple[float, int]
#: a conv block as forward runs it: (the block, its conv, whether a ReLU follows)
Block = tuple[nn.Module, nn.Conv2d, bool]

# float16 bits of 1.0, added to the widened uint8 values so that they cross the float unpooling as
# normal numbers (no subnormals a flush-to-zero mode could touch, no NaNs); a multiple of 256, so the
# low byte, which the narrowing keeps, is the value again, and the unpooling's zero fill stays 0
_HALF_ONE_BITS = 0x3C00


_FLOAT_MAX = torch.finfo(torch.float32).max


def int8_weight_max() -> int:
    """The largest int8 weight magnitude oneDNN's int8 convolution on this CPU takes without error:
    127 where it has VNNI (AVX512-VNNI, AVX-VNNI, AMX); 63 on older ones (AVX2, AVX-512 without
    VNNI), whose kernels add pairs of u8*s8 products in int16 with saturation (a random 7x7 conv
    on 0..255 inputs with weights up to 127: 9% error on an AVX2 EPYC; up to 63: exact)."""
    return 127 if torch.cpu._is_vnni_supported() else 63


def eager_int8_available() -> bool:
    """Whether this machine runs eager int8: where convolutions are prepacked (the first and the
    classifier stay float32, prepacked) and oneDNN's int8 convolution is there."""
    return prepack_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")


def eager_int8_supported(model: nn.Module) -> bool:
    """Whether ``model`` is one eager int8 runs: the SegNet family's forward (SegNet, SegNet-Basic,
    Bayesian SegNet at inference, where its dropout is off, the single-channel decoder variant),
    stages of conv(-BN)(-ReLU) blocks."""
    if type(model).forward is not _SegNetBase.forward:
        return False
    try:
        _chain(model)
    except ValueError:
        return False
    return True


class QuantizedConv2d(PackedWeightModule):
    """An inference-only conv from a uint8 map (``source`` scale and zero point) to a uint8 map
    (``target``), with the ReLU after it fused when ``relu``: per-output-channel symmetric int8
    weights (scale ``max|w| / weight_max``, :func:`int8_weight_max`) packed for oneDNN once, bias
    kept in float32. ``target`` ``None``: a float32 map instead; ``float_codes``: the uint8 values
    as float32 codes (as :class:`QuantizingConv2d` writes them). Input and output are
    (N, C, H, W), channels_last."""

    def __init__(
        self,
        conv: nn.Conv2d,
        relu: bool,
        source: QParams,
        target: QParams | None,
        float_codes: bool = False,
        weight_max: int | None = None,
    ) -> None:
        super().__init__()
        if not packable(conv) or conv.weight.dtype != torch.float32:
            raise ValueError(f"only a zero-padded float32 CPU nn.Conv2d can be quantized, got {conv}")
        if target is None and float_codes:
            raise ValueError("float codes need their target scale and zero point")
        self._keep_geometry(conv)
        self.relu, self.source, self.target, self.float_codes = relu, source, target, float_codes
        weight, weight_max = conv.weight.detach(), weight_max or int8_weight_max()
        scales = (weight.abs().amax(dim=(1, 2, 3)) / weight_max).clamp_min(torch.finfo(torch.float32).tiny)
        levels = torch.round(weight / scales.view(-1, 1, 1, 1)).clamp(-weight_max, weight_max)
        self.weight_int8 = levels.to(torch.int8).contiguous()
        bias = bias_or_zeros(conv)
        if float_codes:  # the kernel's float32 result becomes the code: value / scale + zero point + 0.5
            scale, zero_point = target
            scales, bias = scales / scale, bias / scale + zero_point + 0.5
        self.register_buffer("weight_scales", scales.contiguous())
        self.register_buffer("weight_zero_points", torch.zeros(conv.out_channels, dtype=torch.long))
        self.register_buffer("bias", bias.clone())
        self.packed_weight = torch.ops.onednn.qconv_prepack(
            self.weight_int8, self.weight_scales, source[0], source[1], list(conv.stride), list(conv.padding),
            list(conv.dilation), conv.groups, None,
        )  # fmt: skip

    def forward(self, q: Tensor) -> Tensor:
        uint8 = self.target is not None and not self.float_codes
        scale, zero_point = self.target if uint8 else (1.0, 0)
        return torch.ops.onednn.qconv2d_pointwise(
            q, self.source[0], self.source[1], self.packed_weight, self.weight_scales, self.weight_zero_points, self.bias,
            list(self.stride), list(self.padding), list(self.dilation), self.groups, scale, zero_point,
            torch.uint8 if uint8 else torch.float32, *self._post_op(), "",
        )  # fmt: skip

    def _post_op(self) -> tuple[str, list[float]]:
        if self.float_codes:
            return "hardtanh", list(_code_range(self.target, self.relu, pooled=True))
        return ("relu" if self.relu else "none"), []  # a uint8 output saturates to 0..255

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}, "
            f"groups={self.groups}, relu={self.relu}, source={self.source}, target={self.target}, "
            f"float_codes={self.float_codes}, weight_max={int(self.weight_int8.abs().max())}"
        )


class QuantizingConv2d(nn.Module):
    """A float32 conv writing a uint8 map (``target`` scale and zero point), the ReLU after it fused
    when ``relu``: the weights and bias are divided by the scale and ``zero_point + 0.5`` added to
    the bias, so the kernel's clamp to [low, 255] and a truncation round to nearest.
    ``float_codes``: the float32 codes before the truncation, not clamped above, whose order is the
    values' (max pooling picks the maxima the float model picks); truncated after pooling."""

    def __init__(self, conv: nn.Conv2d, relu: bool, target: QParams, float_codes: bool = False) -> None:
        super().__init__()
        scale, zero_point = target
        scaled = _copy_conv(conv, conv.weight / scale, bias_or_zeros(conv) / scale + zero_point + 0.5)
        self.target, self.float_codes = target, float_codes
        self.conv = PrepackedConv2d(scaled, clamp=_code_range(target, relu, pooled=float_codes))

    def forward(self, x: Tensor) -> Tensor:
        codes = self.conv(x)
        return codes if self.float_codes else codes.to(torch.uint8)


class EagerInt8SegNet(nn.Module):
    """A SegNet-family model (fused: :func:`segzoo.fuse_for_inference`) running in int8, eagerly.

    Calibrated at construction: ``batches`` (normalised float32 (N, C, H, W)) run through the
    float32 model with a histogram observer on every conv block's output. Input: float32 images
    (N, C, H, W), any size the model takes; output: float32 logits (N, K, H, W). ``ValueError``
    where the model is not one :func:`eager_int8_supported` covers or the machine has no oneDNN
    int8 convolution (:func:`eager_int8_available`).
    """

    def __init__(self, fused: nn.Module, batches: list[Tensor]) -> None:
        super().__init__()
        if not eager_int8_available():
            raise ValueError(f"eager int8 needs an x86 CPU with oneDNN's int8 convolution, got {platform.machine()}")
        if type(fused).forward is not _SegNetBase.forward:
            raise ValueError(f"eager int8 runs the SegNet family (SegNet, SegNet-Basic and variants), got {type(fused).__name__}")
        if torch.are_deterministic_algorithms_enabled():
            raise ValueError(
                "eager int8 unpools with F.max_unpool2d, which has no deterministic kernel, and deterministic algorithms are "
                "on (torch.use_deterministic_algorithms); turn them off or run int8 compiled"
            )
        encoder, decoder = _chain(fused)
        if any(isinstance(m, nn.BatchNorm2d) for m in (*fused.encoder.modules(), *fused.decoder.modules())):
            raise ValueError("eager int8 runs a fused model: segzoo.fuse_for_inference(model) first (BatchNorm folded)")
        blocks = [block for stage in (*encoder, *decoder) for block in stage]
        qparams = _calibrate(fused, [module for module, _, _ in blocks[:-1]], batches)
        stage_ends = list(itertools.accumulate(len(stage) for stage in (*encoder, *decoder)))
        pooled = {end - 1 for end in stage_ends[: len(encoder)]}
        layers: list[nn.Module] = []
        for k, (_, conv, relu) in enumerate(blocks):
            # the last block's output, the classifier's input, stays float32, as in the compiled graph
            target = qparams[k] if k < len(blocks) - 1 else None
            if k == 0:
                layers.append(QuantizingConv2d(conv, relu, target, float_codes=k in pooled))
            else:
                layers.append(QuantizedConv2d(conv, relu, qparams[k - 1], target, float_codes=k in pooled))
        taken = iter(layers)
        self.encoder = nn.ModuleList(nn.Sequential(*_take(taken, len(stage))) for stage in encoder)
        self.decoder = nn.ModuleList(nn.Sequential(*_take(taken, len(stage))) for stage in decoder)
        # each decoder stage unpools the map the stage before it wrote
        self.unpool_zero_points = [qparams[end - 1][1] for end in stage_ends[len(encoder) - 1 : -1]]
        self.classifier = PrepackedConv2d(fused.classifier)
        self.classifier_bn = fused.classifier_bn
        self.ceil_mode = fused.encoder.ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        sizes, indices = [], []
        for stage in self.encoder:
            codes = stage(x)  # float32 codes: max pooling picks the maxima the float model picks
            sizes.append(codes.shape[-2:])
            codes, where = F.max_pool2d(codes, 2, 2, ceil_mode=self.ceil_mode, return_indices=True)
            x = codes.clamp_(max=255).to(torch.uint8)  # truncated: the codes carry + 0.5, so rounded
            indices.append(where)
        for stage, zero_point in zip(self.decoder, self.unpool_zero_points):
            x = stage(unpool_uint8(x, zero_point, indices.pop(), sizes.pop()))
        x = self.classifier(x)
        if self.classifier_bn is not None:
            x = F.relu(self.classifier_bn(x))
        return x


def _code_range(target: QParams, relu: bool, pooled: bool) -> tuple[float, float]:
    """Where float codes are clamped: from the code of 0 after a ReLU (else from 0) to 255, or not
    above where they are pooled before truncation (values past the calibrated range still order
    the pooling; the pooled codes are clamped)."""
    return (target[1] + 0.5 if relu else 0.0), (_FLOAT_MAX if pooled else 255.0)


def unpool_uint8(q: Tensor, zero_point: int, where: Tensor, size: Size | tuple[int, int]) -> Tensor:
    """``F.max_unpool2d`` of a uint8 map whose real zero is ``zero_point``: the unpooled map holds
    ``zero_point`` (the value 0) wherever no maximum lands. Exact: the values (shifted so that the
    zero point is 0, modulo 256) cross the float16 kernel as bit patterns."""
    if zero_point:
        q = q - zero_point  # uint8 arithmetic wraps: modulo 256, undone below
    bits = q.to(torch.int16).add_(_HALF_ONE_BITS).view(torch.float16)
    out = F.max_unpool2d(bits, where, 2, 2, output_size=size).view(torch.int16).to(torch.uint8)
    if zero_point:
        out += zero_point
    return out


def _chain(model: nn.Module) -> tuple[list[list[Block]], list[list[Block]]]:
    """Each encoder and decoder stage's blocks as (block, conv, relu), in the order forward runs
    them; ``ValueError`` unless every block is a conv, a BatchNorm (or the ``nn.Identity`` a folded
    one leaves) and an optional ReLU in an ``nn.Sequential`` run in order, and the classifier is a
    quantizable conv."""
    if not isinstance(model.classifier, nn.Conv2d) or not packable(model.classifier):
        raise ValueError(f"eager int8 needs a plain float32 conv classifier, got {model.classifier}")
    stages = [("encoder", model.encoder.stages), ("decoder", model.decoder)]
    return tuple([_stage_blocks(stage, f"{name} stage {i}") for i, stage in enumerate(group)] for name, group in stages)


def _stage_blocks(stage: nn.Module, where: str) -> list[Block]:
    if not _runs_in_order(stage):
        raise ValueError(f"eager int8 needs {where} to be an nn.Sequential, got {type(stage).__name__}")
    blocks = []
    for block in stage:
        # a BatchNorm2d right after the conv is folded into it (fuse_for_inference; an nn.Identity there)
        folded = (nn.Identity, nn.BatchNorm2d)
        layers = [m for m in block.children() if not isinstance(m, folded)] if _runs_in_order(block) else [block]
        conv, rest = (layers[0], layers[1:]) if layers else (None, [])
        known = rest == [] or (len(rest) == 1 and type(rest[0]) is nn.ReLU)
        if not (conv is not None and packable(conv) and conv.weight.dtype == torch.float32 and known):
            raise ValueError(f"eager int8 runs blocks of a conv, a folded BatchNorm and a ReLU; {where} holds {block}")
        blocks.append((block, conv, rest != []))
    return blocks


def _runs_in_order(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _calibrate(model: nn.Module, blocks: list[nn.Module], batches: list[Tensor]) -> list[QParams]:
    """The uint8 scale and zero point of each block's output, from histogram observers over the
    float32 model's outputs on ``batches``."""
    observers = [HistogramObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine) for _ in blocks]
    handles = [block.register_forward_hook(_observing(observer)) for block, observer in zip(blocks, observers)]
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch.contiguous(memory_format=torch.channels_last))
    finally:
        for handle in handles:
            handle.remove()
    qparams = []
    for observer in observers:
        scale, zero_point = observer.calculate_qparams()
        qparams.append((float(scale), int(zero_point)))
    return qparams


def _observing(observer: HistogramObserver) -> Callable[[nn.Module, tuple, Tensor], None]:
    def hook(_: nn.Module, __: tuple, out: Tensor) -> None:
        observer(out.detach())

    return hook


def _take(items: Iterator[nn.Module], count: int) -> list[nn.Module]:
    return [next(items) for _ in range(count)]


def _copy_conv(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    """A conv like ``conv`` (same geometry) with ``weight`` and ``bias``."""
    copy = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups
    ).requires_grad_(False)
    copy.weight.copy_(weight.detach())
    copy.bias.copy_(bias)
    return copy.to(memory_format=torch.channels_last)
