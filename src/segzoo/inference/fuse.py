"""An inference-only copy of a model: BatchNorm folded into the convolutions, frozen, channels_last,
native unpooling."""

from __future__ import annotations

import copy
from typing import Literal, TypeVar

import torch
from torch import nn
from torch.nn.utils import fuse_conv_bn_eval

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)

# devices whose convolutions ran faster in channels_last: on a 2-core x86 CPU at 1x3x360x480 the fused
# SegNet, SegNet-Basic and FCN-8s took 25-35 % less time; CUDA's cuDNN has NHWC kernels (not measured)
_CHANNELS_LAST_DEVICES = ("cpu", "cuda")
_UNPOOLING_CHOICES = ("native", "compact", None)


def fuse_for_inference(
    model: ModuleT, channels_last: bool | None = None, unpooling: Literal["native", "compact"] | None = None
) -> ModuleT:
    """A frozen eval-mode copy of ``model`` with every BatchNorm folded into the conv before it.

    A 2-D conv (or transposed conv) followed directly by a BatchNorm inside an ``nn.Sequential``
    (every :class:`ConvBNReLU`, and any other such pair) becomes one conv whose weight and bias
    absorb the BN's running statistics and affine parameters; the BN is replaced by ``nn.Identity``.
    Outputs equal the original model's in eval mode up to float rounding, for the same (N, C, H, W)
    inputs. The copy has ``requires_grad=False`` everywhere. With ``channels_last`` (default: on
    the devices where it was measured faster, CPU and CUDA) its 4-D weights are stored
    channels_last, and the logits it returns may be channels_last-strided (``.contiguous()``
    restores NCHW). ``model`` itself is not changed.

    A model that unpools with pooling indices (SegNet, DeconvNet, the Table 1 variants: those with an
    ``unpooling`` attribute) gets ``unpooling`` in its copy: ``"native"`` (``F.max_unpool2d``; the
    default, ``None``, unless ``torch.use_deterministic_algorithms`` is on, since that kernel has no
    deterministic version) or ``"compact"``. Their outputs are equal bit for bit; native is faster
    in eager inference (fused SegNet-Basic at 1x3x360x480 in float32 on a 2-core AMD EPYC: 444
    against 586 ms); compact is what ``torch.compile`` with changing sizes and ``torch.export`` with
    free sizes need. Training keeps compact (8x smaller indices saved for backward, deterministic).
    """
    if unpooling not in _UNPOOLING_CHOICES:
        raise ValueError(f"unpooling must be 'native', 'compact' or None, got {unpooling!r}")
    fused = copy.deepcopy(model).eval()
    if hasattr(fused, "unpooling"):
        deterministic = torch.are_deterministic_algorithms_enabled()
        fused.unpooling = unpooling or ("compact" if deterministic else "native")
    for sequential in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = sequential._modules[conv_name], sequential._modules[bn_name]
            if _foldable(conv, bn):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                sequential._modules[conv_name] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
                sequential._modules[bn_name] = nn.Identity()  # keeps the other children's names and indices
    fused.eval().requires_grad_(False)  # eval again: the new Identity modules start in training mode
    for parameter in fused.parameters():
        parameter.grad = None  # gradients copied from a model in training are of no use here
    if channels_last is None:
        parameter = next(fused.parameters(), None)
        channels_last = parameter is not None and parameter.device.type in _CHANNELS_LAST_DEVICES
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    return fused


def _foldable(conv: nn.Module | None, bn: nn.Module | None) -> bool:
    """A conv then a BN over its output channels that normalises with running statistics in eval."""
    return (
        isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
        and isinstance(bn, _BATCH_NORMS)
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )
