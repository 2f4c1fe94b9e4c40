"""Whether a training run keeps its model and batches in channels_last memory format.

``TrainConfig.channels_last`` / ``segzoo train --channels-last`` take ``True``, ``False`` or
``"auto"``. ``"auto"`` is channels_last where it trains faster and NCHW where it trains slower:

- on a GPU, and under autocast (bfloat16 on a CPU that computes it natively): channels_last;
- in float32 on a CPU with AVX-512: channels_last (one SegNet-Basic SGD step, batch 2, 360x480, on
  an AVX-512 EPYC: 1.25x faster than NCHW);
- in float32 on other CPUs: NCHW. On a 2-core AVX2 EPYC channels_last trained 1.11x slower for
  SegNet-Basic at batch 16, 64x64 (the demo's former batch), 1.3-1.4x at batch 4, 360x480, and 1.5x for SegNet at
  batch 2, 360x480 (``benchmarks/recipe_throughput.py``; README, Training).

The choice changes speed, not results beyond rounding: convolutions sum in another order.
"""

from __future__ import annotations

from typing import Literal

import torch

ChannelsLast = bool | Literal["auto"]

#: the command line's words for the modes (``segzoo train --channels-last``, the benchmarks)
CHANNELS_LAST_WORDS: dict[str, ChannelsLast] = {"auto": "auto", "on": True, "off": False}


def check_channels_last(value: object) -> ChannelsLast:
    """``value``, which must be ``True``, ``False`` or ``"auto"`` (``TypeError`` otherwise)."""
    if isinstance(value, bool) or value == "auto":
        return value  # type: ignore[return-value]
    raise TypeError(f"channels_last must be True, False or 'auto', got {value!r} ({type(value).__name__})")


def cpu_has_avx512() -> bool:
    """Whether torch's CPU kernels run at AVX-512 width on this machine."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def trains_channels_last(mode: ChannelsLast, device: torch.device | str, amp_dtype: torch.dtype | None) -> bool:
    """Whether a run with ``channels_last=mode`` on ``device``, under autocast to ``amp_dtype``
    (``None``: float32), trains in channels_last (see the module docstring for ``"auto"``)."""
    mode = check_channels_last(mode)
    if mode != "auto":
        return mode
    device = torch.device(device)
    if device.type == "cuda" or amp_dtype is not None:
        return True
    return device.type == "cpu" and cpu_has_avx512()


def describe_channels_last(mode: ChannelsLast, device: torch.device | str, amp_dtype: torch.dtype | None) -> str:
    """One line for logs, e.g. ``"auto: NCHW (float32 on a CPU without AVX-512)"``."""
    layout = "channels_last" if trains_channels_last(mode, device, amp_dtype) else "NCHW"
    if mode != "auto":
        return f"{'on' if mode else 'off'}: {layout}"
    device = torch.device(device)
    if device.type == "cuda":
        why = "on a GPU"
    elif amp_dtype is not None:
        why = f"{str(amp_dtype).removeprefix('torch.')} autocast"
    elif device.type == "cpu":
        why = f"float32 on a CPU {'with' if cpu_has_avx512() else 'without'} AVX-512"
    else:
        why = f"float32 on {device.type}"
    return f"auto: {layout} ({why})"
