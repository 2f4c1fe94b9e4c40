"""Convolutions prepacked for eager CPU inference: oneDNN's weight layout made once, ReLU fused in.

An eager ``nn.Conv2d`` on a CPU hands its plain (O, I, kH, kW) weight to oneDNN at every call, which
reorders it into the blocked layout its kernel reads, and a ReLU after it is a second pass over the
whole map. :func:`prepack_convolutions` does what inductor's freezing does for a compiled graph, in
an eager model: each convolution keeps its weight in oneDNN's layout (reordered once) and runs
``torch.ops.mkldnn._convolution_pointwise``, with a directly following ReLU applied inside the
kernel. One layer, bf16 channels_last, on a 2-core Xeon with AMX (medians, beside a training job):
64 -> 64 channels 3x3 at 360x480, conv then ReLU 46 ms, the fused kernel 28 ms, fused and
prepacked 24 ms; 128 channels at 180x240: 27, 17 and 8 ms. :func:`segzoo.optimize` applies it to
its uncompiled paths; the whole models are timed by ``benchmarks/fast_paths.py`` (README, Deployment).
"""

from __future__ import annotations

import copy
import platform

import torch
from torch import Tensor, nn

from ..models.small_maps import ExplicitPadConv2d

_PACKABLE_DTYPES = (torch.float32, torch.bfloat16)
#: ``platform.machine()`` names of x86 CPUs
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def prepack_available() -> bool:
    """Whether convolutions are prepacked here: x86 CPUs (where it was measured) with a PyTorch
    build that has oneDNN's pointwise convolution."""
    return (
        platform.machine().lower() in X86_MACHINES
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    )


def bias_or_zeros(conv: nn.Conv2d) -> Tensor:
    """``conv``'s bias, detached, or zeros of its weight's dtype where it has none."""
    return conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=conv.weight.dtype)


class PackedWeightModule(nn.Module):
    """A module holding oneDNN-packed weights in ``packed_weight``: a tensor with no storage to copy,
    never written, so deep copies share it (it stays out of ``state_dict``; rebuild from the original
    model to save or move it)."""

    packed_weight: Tensor

    def _keep_geometry(self, conv: nn.Conv2d) -> None:
        """The conv's ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``padding``,
        ``dilation`` and ``groups``, which models and forward read."""
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
            setattr(self, name, getattr(conv, name))

    def __deepcopy__(self, memo: dict) -> PackedWeightModule:
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        state = {key: value for key, value in self.__dict__.items() if key != "packed_weight"}
        clone.__dict__.update(copy.deepcopy(state, memo))
        clone.packed_weight = self.packed_weight
        return clone


class PrepackedConv2d(PackedWeightModule):
    """An inference-only ``nn.Conv2d`` (zero padding) whose weight is stored in oneDNN's layout,
    optionally with the ReLU after it fused in, or a clamp of its output to ``clamp = (low, high)``
    (oneDNN's hardtanh post-op). Input of another dtype than the weight's is cast to it first, as
    autocast would; the output has the weight's dtype. ``in_channels``,
    ``out_channels``, ``kernel_size``, ``stride``, ``padding``, ``dilation`` and ``groups`` are the
    conv's; ``bias`` is a parameter (zeros for a conv without one), the packed weight is not (it
    stays out of ``state_dict`` and is shared by deep copies: rebuild from the original model to
    save or move it)."""

    def __init__(self, conv: nn.Conv2d, relu: bool = False, clamp: tuple[float, float] | None = None) -> None:
        super().__init__()
        if not packable(conv):
            raise ValueError(f"only a zero-padded CPU nn.Conv2d with float32 or bfloat16 weights can be prepacked, got {conv}")
        if relu and clamp is not None:
            raise ValueError("a prepacked conv fuses a ReLU or a clamp, not both")
        self._keep_geometry(conv)
        self.relu = relu
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))
        weight = conv.weight.detach()
        self.dtype = weight.dtype
        bias = bias_or_zeros(conv)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        # the layout oneDNN picks for a typical image; other sizes read it too (reordered if they must)
        example = [1, conv.in_channels, 360, 480]
        self.packed_weight = torch.ops.mkldnn._reorder_convolution_weight(
            weight.contiguous(), list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, example
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed_weight, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups,
            *self._post_op(), "",
        )  # fmt: skip

    def _post_op(self) -> tuple[str, list[float]]:
        if self.clamp is not None:
            return "hardtanh", list(self.clamp)
        return ("relu" if self.relu else "none"), []

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, dtype={self.dtype}, relu={self.relu}"
            + (f", clamp={self.clamp}" if self.clamp is not None else "")
        )


def packable(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (or its :class:`~segzoo.models.small_maps.ExplicitPadConv2d`, the same
    layer outside autograd; no other subclass) with numeric zero padding and float32/bfloat16 weights
    on the CPU."""
    return (
        type(module) in (nn.Conv2d, ExplicitPadConv2d)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
        and module.weight.device.type == "cpu"
        and module.weight.dtype in _PACKABLE_DTYPES
    )


def prepack_convolutions(model: nn.Module) -> int:
    """Replace every :func:`packable` conv of ``model`` (in place, for inference) by a
    :class:`PrepackedConv2d`, fusing the ``nn.ReLU`` that directly follows one inside an
    ``nn.Sequential`` that runs its children in order (not a subclass with its own ``forward``;
    ``nn.Identity`` children between them, such as a folded BatchNorm's, are
    skipped; the ReLU becomes an ``nn.Identity``). Outputs are those of the model before, up to
    float rounding (bitwise in bfloat16 at the sizes tested). Returns how many convs it replaced;
    0 where :func:`prepack_available` is false."""
    if not prepack_available():
        return 0
    fused_relus = set()
    # only where the Sequential runs its children in order (a subclass may run them otherwise)
    in_order = [m for m in model.modules() if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward]
    for sequential in in_order:
        children = list(sequential._modules.items())
        for i, (_, child) in enumerate(children):
            if not packable(child):
                continue
            following = next((c for c in children[i + 1 :] if not isinstance(c[1], nn.Identity)), None)
            if following is not None and type(following[1]) is nn.ReLU:
                fused_relus.add(id(child))
                sequential._modules[following[0]] = nn.Identity()
    replaced = 0
    for name, module in list(model.named_modules()):
        if name and packable(module):
            model.set_submodule(name, PrepackedConv2d(module, relu=id(module) in fused_relus))
            replaced += 1
    return replaced
