"""Every model by name: ``list_models()`` / ``get_model(name, **kwargs)``."""

from __future__ import annotations

from .base import SegmentationModel
from .fcn import FCN8s, FCN16s, FCN32s
from .segnet import SegNet, SegNetBasic

_MODELS: dict[str, type[SegmentationModel]] = {
    "segnet": SegNet,
    "segnet_basic": SegNetBasic,
    "fcn32s": FCN32s,
    "fcn16s": FCN16s,
    "fcn8s": FCN8s,
}


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs) -> SegmentationModel:
    """Build the model registered as ``name`` with ``kwargs`` (e.g. ``num_classes=11``)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    return _MODELS[name](**kwargs)


def model_name(model: SegmentationModel) -> str:
    """The registry name of ``model``'s class (the inverse of :func:`get_model`)."""
    for name, cls in _MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered segzoo model; registered: {list_models()}")
