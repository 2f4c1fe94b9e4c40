"""Same-padded convolutions that stay fast to train on CPU maps smaller than their kernel.

oneDNN's CPU weight gradient of a large same-padded 7x7 layer falls off a cliff when the map is
shorter than the kernel: the forward and backward of FCN's and DeconvNet's fc6 (4096x512x7x7,
padding 3) took 6.4 s for a batch of two 2x2 maps and 33.5 s for 6x8 maps, against 1.7 s for 8x10
maps, and DeconvNet's deconv-fc6 did the same (2-core AMD EPYC, AVX2;
``benchmarks/small_map_backward.py``). Those are the pool5 maps of images at most 192 pixels high.
Padding the input explicitly and running the layer unpadded computes the same function with the fast
kernel (1.8 s for the 6x8 maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pads_explicitly(layer: nn.Conv2d | nn.ConvTranspose2d, x: Tensor) -> bool:
    """Whether ``layer`` (stride 1, no dilation, positive numeric zero padding) pads ``x`` itself:
    a CPU map shorter or narrower than the kernel, with autograd recording, outside compilation,
    export and tracing (their graphs keep the padded layer as it is)."""
    if x.device.type != "cpu" or not torch.is_grad_enabled() or not (x.requires_grad or layer.weight.requires_grad):
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if layer.stride != (1, 1) or layer.dilation != (1, 1) or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        return False
    if layer.padding == (0, 0) or (isinstance(layer, nn.ConvTranspose2d) and layer.output_padding != (0, 0)):
        return False
    return x.shape[-2] < layer.kernel_size[0] or x.shape[-1] < layer.kernel_size[1]


class ExplicitPadConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same keys, same function) that, where :func:`pads_explicitly` says so, runs
    unpadded on an explicitly zero-padded input: the same values up to float rounding, and the
    gradients through the fast kernel. Everywhere else it is the plain layer, bit for bit."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not pads_explicitly(self, input):
            return super()._conv_forward(input, weight, bias)
        pad_h, pad_w = self.padding
        return F.conv2d(F.pad(input, (pad_w, pad_w, pad_h, pad_h)), weight, bias, groups=self.groups)


class ExplicitPadConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same keys, same function) that, where :func:`pads_explicitly` says
    so, runs unpadded and crops its output: the same values up to float rounding, and the gradients
    through the fast kernel. Everywhere else it is the plain layer, bit for bit."""

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None or not pads_explicitly(self, input):
            return super().forward(input, output_size)
        pad_h, pad_w = self.padding
        out = F.conv_transpose2d(input, self.weight, self.bias, groups=self.groups)
        return out[..., pad_h : out.shape[-2] - pad_h, pad_w : out.shape[-1] - pad_w]
