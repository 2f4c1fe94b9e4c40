"""FCN's fc7 class-score convolution, kept in float32 where CPU bfloat16 kernels are unsafe.

On x86 CPUs with AMX (``amx_bf16``), oneDNN's bf16 weight gradient of a convolution from more than
2048 input channels to fewer than 16 outputs corrupts the heap (glibc aborts: "corrupted
double-linked list", "free(): invalid size", or a segfault), within 20 backward passes. Measured on
a Xeon with AMX, torch 2.14.1 (oneDNN 3.12, kernel ``brgconv_bwd_w:avx10_1_512_amx``): 1x1 and 3x3
kernels alike, 1 to 15 outputs at 2049 to 8192 inputs and 1x1 to 17x17 maps; never with 16 or more
outputs, 2048 or fewer inputs, the forward pass or the input gradient alone, in float32, or with
``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``. In segzoo only FCN's fc7 class-score layer (``score_fr``,
4096 -> classes) meets that condition (tests/test_score.py checks every registered model).
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
