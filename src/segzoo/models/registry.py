"""Every model by name: models register where they are defined (``@register_model("segnet")``),
so the registry cannot forget one; ``list_models()`` / ``get_model(name, **kwargs)`` find them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import SegmentationModel

ModelClass = TypeVar("ModelClass", bound=type)

_MODELS: dict[str, type[SegmentationModel]] = {}


def register_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: make the model class available as ``get_model(name)``."""

    def register(cls: ModelClass) -> ModelClass:
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered ({_MODELS[name].__name__})")
        _MODELS[name] = cls  # type: ignore[assignment]
        return cls

    return register


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_MODELS)


def model_class(name: str) -> type[SegmentationModel]:
    """The class registered as ``name``."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    return _MODELS[name]


def get_model(name: str, **kwargs) -> SegmentationModel:
    """Build the model registered as ``name`` with ``kwargs`` (e.g. ``num_classes=11``)."""
    return model_class(name)(**kwargs)


def model_name(model: SegmentationModel) -> str:
    """The registry name of ``model``'s class (the inverse of :func:`get_model`)."""
    for name, cls in _MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered segzoo model; registered: {list_models()}")
