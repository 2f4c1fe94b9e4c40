"""Training checkpoints: written atomically, read safely, enough to rebuild the model alone.

A checkpoint is a dict of tensors and plain Python values (so ``torch.load(weights_only=True)``
reads it): the model's registry name and config, its state dict, and optionally the run
description (``run``, see :mod:`segzoo.io.run_description`), the optimizer, LR scheduler and
gradient-scaler states, the epoch, metrics and any extra plain values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..models.base import SegmentationModel
from ..models.registry import get_model, model_name
from .atomic import atomic_write
from .pretrained import is_pretrained, read_pretrained
from .run_description import RunDescription
from .state_dict import load_exact, strip_wrapper_prefixes
from .torchfile import read_torch_file

logger = logging.getLogger(__name__)

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
    """Read a checkpoint written by :func:`save_checkpoint` (or a pretrained folder / its
    ``.safetensors`` file, see :mod:`segzoo.io.pretrained`), refusing pickled code
    (``weights_only=True``), damaged files (see :func:`read_torch_file`) and anything that is not
    a segzoo checkpoint."""
    if is_pretrained(path):
        return read_pretrained(path, map_location)
    return _check_format(read_torch_file(path, map_location), str(path))


#: constructor options that say how to initialise weights, not what the architecture is: a
#: checkpoint's weights come from its state dict, so these are dropped when a model is rebuilt
#: (``weights_backbone="DEFAULT"`` in a config would otherwise download ImageNet weights)
BUILD_ONLY_OPTIONS = ("weights_backbone", "progress")


def _check_format(checkpoint: Any, source: str) -> dict[str, Any]:
    """``checkpoint`` if it is a segzoo checkpoint whose ``model`` entry (``name``, ``config``) and
    ``state_dict`` have the right types; a one-line ``ValueError`` naming ``source`` otherwise."""
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(
            f"{source} is not a segzoo checkpoint (expected a dict with format={FORMAT!r}); "
            "for plain state dicts use model.load_state_dict or weights_backbone="
        )
    described = checkpoint.get("model")
    if not isinstance(described, Mapping):
        raise ValueError(f"{source} is a damaged segzoo checkpoint: its 'model' entry must be a dict of name and config, got {described!r:.80}")
    name, config = described.get("name"), described.get("config")
    if not isinstance(name, str):
        raise ValueError(f"{source} is a damaged segzoo checkpoint: model name must be a registered name (str), got {name!r:.80}")
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        raise ValueError(f"{source} is a damaged segzoo checkpoint: model config must be a dict of keyword arguments, got {config!r:.80}")
    if not isinstance(checkpoint.get("state_dict"), Mapping):
        raise ValueError(f"{source} is a damaged segzoo checkpoint: 'state_dict' must be a dict of tensors, got {checkpoint.get('state_dict')!r:.80}")
    return checkpoint


def architecture(config: Mapping[str, Any]) -> dict[str, Any]:
    """A saved model config without the options that only initialise weights (:data:`BUILD_ONLY_OPTIONS`)."""
    return {key: value for key, value in config.items() if key not in BUILD_ONLY_OPTIONS}


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild the model saved in a segzoo checkpoint, weights included (``segzoo.load``)."""
    return model_from_checkpoint(load_checkpoint(path, map_location), str(path)).to(map_location)


def load_run(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[SegmentationModel, RunDescription]:
    """The model saved in a segzoo checkpoint, weights included, and its run description (class
    names, colours, mean/std, ignore label, data settings), read once; what evaluation, prediction
    and export start from."""
    checkpoint = load_checkpoint(path, map_location)
    model = model_from_checkpoint(checkpoint, str(path)).to(map_location)
    return model, run_description(checkpoint, model, str(path))


def run_description(checkpoint: Mapping[str, Any], model: SegmentationModel, source: str = "checkpoint") -> RunDescription:
    """The run description of an already read checkpoint: the one saved with it, converted from a
    segzoo 0.1.0 ``metadata`` dict, or, for a checkpoint saved without one, the model's defaults
    (class indices as names, the VOC colour map)."""
    if "run" in checkpoint:
        description = RunDescription.from_dict(checkpoint["run"], f"{source}'s run description")
        if description.num_classes != model.num_classes:
            raise ValueError(f"{source} describes {description.num_classes} classes, its model has {model.num_classes}")
        return description
    if "metadata" in checkpoint:
        return RunDescription.from_metadata(checkpoint["metadata"], model)
    return RunDescription.for_model(model)


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> SegmentationModel:
    """Rebuild the model of an already read checkpoint (see :func:`load_checkpoint`), from the
    checkpoint alone: its weights come from its state dict, never from the network (options that
    would load others, such as ``weights_backbone``, are dropped from its config). A state dict
    taken from a DDP-wrapped or compiled model loads without its wrappers' key prefixes."""
    checkpoint = _check_format(checkpoint, source)
    model = _build(checkpoint["model"]["name"], architecture(checkpoint["model"]["config"]), source)
    load_exact(model, strip_wrapper_prefixes(checkpoint["state_dict"]), source)
    return model


def _build(name: str, config: Mapping[str, Any], source: str) -> SegmentationModel:
    try:
        return get_model(name, **config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source} holds a model that cannot be built: {error}") from error


def load_weights(
    model: SegmentationModel,
    path_or_checkpoint: str | os.PathLike | Mapping[str, Any],
    reinit_head: bool = False,
    map_location: str | torch.device = "cpu",
) -> SegmentationModel:
    """Load a checkpoint's weights into ``model`` (in place, all or nothing) to fine-tune it.

    ``path_or_checkpoint`` is a file or a dict from :func:`load_checkpoint`. The checkpoint must
    hold the same architecture with a config that gives the same weight layout (options such as
    ``dropout`` or ``ceil_mode`` may differ); ``num_classes`` may differ only
    with ``reinit_head=True``: the head tensors (those whose shapes depend on ``num_classes``, see
    :func:`head_keys`) then keep ``model``'s own values and every other tensor is loaded. With
    ``reinit_head=True`` the head is kept even when the class counts agree (a new label set of the
    same size). A state dict taken from a DataParallel / DDP-wrapped or torch.compile'd model
    (every key prefixed ``module.`` / ``_orig_mod.``) is read without the prefixes. Returns ``model``.
    """
    if isinstance(path_or_checkpoint, Mapping):
        source = "the given checkpoint"
        checkpoint = _check_format(dict(path_or_checkpoint), source)
    else:
        checkpoint, source = load_checkpoint(path_or_checkpoint, map_location), str(path_or_checkpoint)
    name, config = checkpoint["model"]["name"], architecture(checkpoint["model"]["config"])
    ours, own_config = model_name(model), model.config
    if name != ours:
        raise ValueError(f"{source} holds a {name} checkpoint, but the model is a {ours}")
    with torch.device("meta"):  # its config must build (no memory, no time) before it is compared
        _build(name, config, source)
    differ = [
        f"{key}: checkpoint {config.get(key, '<absent>')!r}, model {own_config.get(key, '<absent>')!r}"
        for key in sorted(config.keys() | own_config.keys())
        if key != "num_classes" and config.get(key) != own_config.get(key)
    ]
    # options that leave the weights' layout alone (dropout, pooling mode, ...) may differ: a plain
    # SegNet checkpoint is a fine start for a Bayesian SegNet
    if differ and not _same_layout(name, {**config, "num_classes": model.num_classes}, model):
        raise ValueError(f"{source} holds a {name} with another config than the model's: " + "; ".join(differ))
    if differ:
        logger.info("%s: config differs only in options that keep the weights' layout: %s", source, "; ".join(differ))
    state = strip_wrapper_prefixes(checkpoint["state_dict"])  # taken from a DDP-wrapped or compiled model
    if config["num_classes"] != model.num_classes and not reinit_head:
        raise ValueError(
            f"{source} has {config['num_classes']} classes, the model has {model.num_classes}; pass "
            "reinit_head=True to load the checkpoint's other weights and start the head fresh"
        )
    if reinit_head:
        head = head_keys(name, own_config)
        own = model.state_dict()
        state = {**{key: value for key, value in state.items() if key not in head}, **{key: own[key] for key in head}}
        logger.info("%s: loaded every tensor but the head; the model's own (fresh) head kept: %s", source, ", ".join(head))
    load_exact(model, state, source)
    return model


def _same_layout(name: str, config: Mapping[str, Any], model: SegmentationModel) -> bool:
    """Whether ``name`` built with ``config`` has exactly ``model``'s state-dict keys and shapes."""
    try:
        with torch.device("meta"):
            theirs = get_model(name, **config).state_dict()
    except (TypeError, ValueError):  # options this version does not know
        return False
    ours = model.state_dict()
    return theirs.keys() == ours.keys() and all(theirs[k].shape == ours[k].shape for k in ours)


def head_keys(name: str, config: Mapping[str, Any]) -> list[str]:
    """State-dict keys of the registered model ``name`` whose shapes depend on ``num_classes``
    (e.g. SegNet's classifier, FCN's score and upscore layers).

    Found by building the architecture twice on the meta device (no memory, no computation) with
    two class counts and comparing shapes, so every registered model works without a list.
    """
    num_classes = config["num_classes"]
    with torch.device("meta"):
        one = get_model(name, **{**config, "num_classes": num_classes}).state_dict()
        other = get_model(name, **{**config, "num_classes": num_classes + 1}).state_dict()
    return [key for key, value in one.items() if value.shape != other[key].shape]
