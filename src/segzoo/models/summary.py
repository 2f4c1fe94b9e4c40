"""A table of every registered model: parameters and forward FLOPs at a given input size."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import get_model, list_models


def model_table(size: tuple[int, int] = (360, 480), num_classes: int = 11) -> list[dict[str, Any]]:
    """Name, class, parameter count and forward GFLOPs (2 x multiply-adds) at ``size`` for every model."""
    rows = []
    for name in list_models():
        model = get_model(name, num_classes=num_classes).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, model.in_channels, *size))
        rows.append(
            {
                "name": name,
                "class": type(model).__name__,
                "params": sum(p.numel() for p in model.parameters()),
                "gflops": counter.get_total_flops() / 1e9,
            }
        )
    return rows
