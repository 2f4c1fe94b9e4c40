"""FCN's fc7 class-score convolution, kept in float32 where CPU bfloat16 kernels are unsafe.

On x86 CPUs with AMX (``amx_bf16``), oneDNN's bf16 backward of a 1x1 convolution from FCN's 4096
fc7 channels to a handful of classes corrupts the heap (glibc aborts: "corrupted double-linked
list", "free(): invalid size"; reported for 2, 3, 5 and 11 classes, torch 2.14 and 2.15, not with
``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``). Running that one layer (``score_fr``) in float32 removed
the crash in the report's bisection, while FCN's other score layers (256 and 512 inputs), SegNet's
and SegNet-Basic's classifiers, and 1x1 convs from 1024 or 2048 channels ran in bf16 without it.
A :class:`ScoreConv2d` therefore computes in float32 whenever it would otherwise run a CPU bf16
kernel (under CPU bf16 autocast, or with bf16 weights or input), on every CPU alike so that
results do not depend on the machine. ``score_fr`` works at 1/32 of the input resolution and holds
well under 0.1% of FCN's FLOPs, so this costs no measurable bf16 speed; every other layer keeps
its bf16 kernels. Its state-dict keys are those of ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ScoreConv2d(nn.Conv2d):
    """``nn.Conv2d(in_channels, num_classes, 1)`` computing in float32 instead of CPU bfloat16.

    The output is float32 under autocast (later autocast layers cast it down again as usual) and
    the input's dtype otherwise; gradients reach bf16 weights through the casts.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        if not _cpu_bf16(x, self.weight):
            return super().forward(x)
        bias = self.bias.float() if self.bias is not None else None
        with torch.autocast("cpu", enabled=False):
            out = F.conv2d(x.float(), self.weight.float(), bias)
        return out if torch.is_autocast_enabled("cpu") else out.to(x.dtype)


def _cpu_bf16(x: Tensor, weight: Tensor) -> bool:
    """Whether a conv of ``x`` with ``weight`` would run a CPU bfloat16 kernel."""
    if x.device.type != "cpu":
        return False
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        return True
    return torch.bfloat16 in (x.dtype, weight.dtype)
