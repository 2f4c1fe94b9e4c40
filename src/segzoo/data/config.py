"""How a run feeds its data to the model: augmentation, evaluation size and class weighting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: class weightings by name, with the power their median-frequency weights are raised to
CLASS_WEIGHTING_POWERS = {"median": 1.0, "sqrt-median": 0.5}
CLASS_WEIGHTINGS = tuple(CLASS_WEIGHTING_POWERS)


@dataclass(frozen=True)
class DataConfig:
    """Data settings of a training run (saved in its checkpoints, in the run description).

    ``batch_size``: images per step (per process under torchrun).
    ``crop_size``: random scale (``train_scale``) + crop + flip augmentation to (h, w); without it
    training images are only normalised (and resized to ``eval_size``). ``eval_size``: the (h, w)
    images are resized to for the model in evaluation and prediction; scores are always computed
    against the labels at their own resolution. ``class_weights="median"``: median-frequency
    balancing of the loss, computed on the training masks; ``"sqrt-median"``: the square roots of
    those weights (a milder balancing). ``cache``: decode every image and label
    once and keep both splits in memory (:class:`~segzoo.data.cache.InMemoryDataset`; refused
    when they would not fit).
    """

    batch_size: int = 8
    crop_size: tuple[int, int] | None = None
    train_scale: tuple[float, float] = (0.5, 2.0)
    eval_size: tuple[int, int] | None = None
    class_weights: str | None = None
    cache: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        for name in ("crop_size", "eval_size"):
            size = getattr(self, name)
            if size is None:
                continue
            if (
                not isinstance(size, (tuple, list))
                or len(size) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
            ):
                raise ValueError(f"{name} must be (height, width) with positive ints, got {size!r}")
            object.__setattr__(self, name, tuple(size))
        scale = self.train_scale
        if not isinstance(scale, (tuple, list)) or len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"train_scale must be (low, high) with 0 < low <= high, got {scale!r}")
        object.__setattr__(self, "train_scale", (float(scale[0]), float(scale[1])))
        if not isinstance(self.cache, bool):
            raise TypeError(f"cache must be a bool, got {self.cache!r}")
        if self.class_weights is not None and self.class_weights not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weights must be None or one of {CLASS_WEIGHTINGS}, got {self.class_weights!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
        """Rebuild from :meth:`to_dict`'s plain values; unknown fields are a ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown data settings {unknown}; known: {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)
