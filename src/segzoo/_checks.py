"""Argument checks shared by every public constructor and the command line: the one place that
says what an int, a bool, a probability or a device argument must be.

Each check raises ``TypeError`` for a value of the wrong type (``2.5``, ``True``, ``None``,
``"11"`` for an int; ``"no"`` or ``1`` for a bool) and ``ValueError`` for a value of the right type
outside its range (``0`` classes), naming the argument and what was expected, before any work is
done. They return the value converted to the plain Python type (``numpy.int64(3)`` becomes ``3``),
so that configs saved in checkpoints hold plain values. Only the standard library and torch are
imported here, so every subpackage may use this module without a cycle.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (bools refused), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = f"an int >= {minimum}" if minimum is not None else "an int"
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_optional_int(name: str, value: Any) -> int | None:
    """``None``, or ``value`` as an ``int`` (an ignore label: any int, negative ones too)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {value!r} ({type(value).__name__})")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value``, which must be ``True`` or ``False`` (``"no"``, ``0`` and ``None`` are refused: a
    non-empty string is truthy, so ``batch_norm="no"`` would otherwise mean yes)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__})")
    return value


def check_float(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` (an int or float, not a bool) as a finite ``float`` inside the given bounds; an open
    bound excludes itself (``low=0, low_open=True``: positive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        if low is None and high is None:
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        left = "(" if low_open or low is None else "["
        right = ")" if high_open or high is None else "]"
        interval = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value``, which must be one of ``choices`` (compared by equality, of the same type)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_device(value: Any, name: str = "device") -> Any:
    """``value`` (a string such as ``"cpu"``, ``"cuda:1"``, or a ``torch.device``) as a
    ``torch.device`` that exists on this machine: an unknown device type, CUDA without a GPU or
    with too few, MPS where it is unavailable are each a ``ValueError`` saying what is there."""
    import torch

    if isinstance(value, torch.device):
        device = value
    elif isinstance(value, str):
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"{name} {value!r} is not a device; expected cpu, cuda, cuda:N, mps, ...") from error
    else:
        raise TypeError(f"{name} must be a str such as 'cpu' or 'cuda:0', or a torch.device; got {value!r} ({type(value).__name__})")
    if device.type in ("cpu", "meta"):
        return device
    backend = {"mps": getattr(torch.backends, "mps", None)}.get(device.type, getattr(torch, device.type, None))
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ValueError(f"{name} {value!s} is not available on this machine; use cpu" + _cuda_note(device))
    count = getattr(backend, "device_count", None)
    if device.index is not None and count is not None and device.index >= count():
        raise ValueError(f"{name} {value!s} does not exist: this machine has {count()} {device.type} device(s), 0 to {count() - 1}")
    return device


def _cuda_note(device: Any) -> str:
    if device.type != "cuda":
        return ""
    import torch

    return " (torch.cuda.is_available() is False: no CUDA GPU, or torch was built without CUDA)" if not torch.cuda.is_available() else ""
