"""Every model by name: ``list_models()`` / ``get_model(name, **kwargs)``."""

from __future__ import annotations

from torch import nn

from .fcn import FCN8s, FCN16s, FCN32s
from .segnet import SegNet, SegNetBasic

_MODELS: dict[str, type[nn.Module]] = {
    "segnet": SegNet,
    "segnet_basic": SegNetBasic,
    "fcn32s": FCN32s,
    "fcn16s": FCN16s,
    "fcn8s": FCN8s,
}


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs`` (e.g. ``num_classes=11``)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    return _MODELS[name](**kwargs)
