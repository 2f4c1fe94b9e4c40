"""Mixed precision: which autocast dtype a run's ``amp`` mode means on a given device.

``TrainConfig.amp`` / ``segzoo train --amp`` take one of :data:`AMP_MODES`:

- ``"off"``: float32 everywhere.
- ``"on"`` (bare ``--amp``, or ``amp=True``; segzoo's behaviour before the modes): bfloat16
  autocast on the CPU, float16 autocast with gradient scaling on CUDA.
- ``"auto"``: bfloat16 where the hardware computes it natively, else the fast safe choice: on the
  CPU bfloat16 with AVX512-BF16 or AMX (x86) or the BF16 extension (Arm), otherwise float32 (an
  emulated bfloat16 is slower than float32); on CUDA bfloat16 where ``torch.cuda.is_bf16_supported()``
  (Ampere and later), otherwise float16 with gradient scaling.
- ``"bf16"``: bfloat16 autocast on any device (a ``ValueError`` on a GPU without bfloat16).
- ``"fp16"``: float16 autocast with gradient scaling, CUDA only.

bfloat16 has float32's range, so it needs no gradient scaling; float16 does, and the trainer scales
exactly when the dtype is float16.
"""

from __future__ import annotations

from pathlib import Path

import torch

AMP_MODES = ("off", "on", "auto", "bf16", "fp16")

#: /proc/cpuinfo flags of native bfloat16 arithmetic: x86 AVX512-BF16 and AMX-BF16, Arm's BF16 extension
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def normalize_amp(mode: bool | str | None) -> str:
    """``mode`` as one of :data:`AMP_MODES`: ``True`` is ``"on"``, ``False``/``None`` ``"off"``."""
    if mode is None or mode is False:
        return "off"
    if mode is True:
        return "on"
    if not isinstance(mode, str):
        raise TypeError(f"amp must be one of {AMP_MODES} (or a bool), got {type(mode).__name__} {mode!r}")
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES} (or a bool), got {mode!r}")
    return mode


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (``flags`` on x86, ``Features`` on Arm); empty elsewhere."""
    try:
        text = _CPUINFO.read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively: torch's own probes (AVX512-BF16, AMX) where
    this torch has them, else the kernel's CPU flags (:data:`NATIVE_BF16_FLAGS`)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def autocast_dtype(mode: bool | str | None, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``mode`` on ``device`` (``None``: float32, no autocast).

    Raises ``ValueError`` where the device cannot run the mode (``fp16`` off CUDA, ``bf16`` on a
    GPU without bfloat16).
    """
    mode = normalize_amp(mode)
    device = torch.device(device)
    cuda = device.type == "cuda"
    if mode == "off":
        return None
    if mode == "on":
        return torch.float16 if cuda else torch.bfloat16
    if mode == "fp16":
        if not cuda:
            raise ValueError(f"amp 'fp16' (float16 with gradient scaling) needs a CUDA device, got {device}; use 'bf16' or 'auto'")
        return torch.float16
    if mode == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{device} has no bfloat16 support; use amp 'fp16' or 'auto'")
        return torch.bfloat16
    # auto
    if cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


def describe_amp(mode: bool | str | None, device: torch.device | str) -> str:
    """One line for logs: the mode and what it means here, e.g. ``"auto: bfloat16 autocast"``."""
    dtype = autocast_dtype(mode, device)
    what = "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    if dtype == torch.float16:
        what += " with gradient scaling"
    return f"{normalize_amp(mode)}: {what} on {torch.device(device).type}"
