"""Training checkpoints: written atomically, read safely, enough to rebuild the model alone.

A checkpoint is a dict of tensors and plain Python values (so ``torch.load(weights_only=True)``
reads it): the model's registry name and config, its state dict, and optionally the optimizer,
LR scheduler and gradient-scaler states, the epoch, metrics and any extra plain values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from . import __version__
from ._atomic import atomic_write
from .base import SegmentationModel
from .registry import get_model, model_name
from .state_dict import load_exact

FORMAT = "segzoo-checkpoint/1"


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that a reader (or a crash) sees complete or not at all."""
    with atomic_write(path) as file:
        torch.save(obj, file)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, model: SegmentationModel, **state: Any) -> Path:
    """Write ``model`` (name, config, weights) plus ``state`` (e.g. ``optimizer=opt.state_dict()``,
    ``epoch=3``, ``metrics={...}``) atomically to ``path``."""
    payload = {
        "format": FORMAT,
        "segzoo_version": __version__,
        "model": {"name": model_name(model), "config": model.config},
        "state_dict": model.state_dict(),
        **state,
    }
    return save_atomic(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing pickled code
    (``weights_only=True``) and anything that is not a segzoo checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, pickled objects, not a torch file at all
        raise ValueError(f"{path} is not a readable segzoo checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a segzoo checkpoint (expected a dict with format={FORMAT!r}); "
            "for plain state dicts use model.load_state_dict or weights_backbone="
        )
    return checkpoint


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild the model saved in a segzoo checkpoint, weights included (``segzoo.load``)."""
    return model_from_checkpoint(load_checkpoint(path, map_location), str(path)).to(map_location)


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> SegmentationModel:
    """Rebuild the model of an already read checkpoint (see :func:`load_checkpoint`)."""
    model = get_model(checkpoint["model"]["name"], **checkpoint["model"]["config"])
    load_exact(model, checkpoint["state_dict"], source)
    return model
