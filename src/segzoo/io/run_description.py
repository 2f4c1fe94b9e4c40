"""The typed description of a training run that travels in every checkpoint beside its weights.

A :class:`RunDescription` holds what prediction needs (class names, colours, input mean/std, the
ignore label, how the mask files stored classes, so that predicted masks are written the same way)
and how the data was fed (:class:`~segzoo.data.DataConfig`: crop, scale, eval
size, class weighting; the dataset layout). It is saved as plain values, so checkpoints stay
readable with ``torch.load(weights_only=True)``, and rebuilt (and checked) by :meth:`from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from ..data.colour_tables import ColourTable
from ..data.config import DataConfig
from ..data.labelmaps import LabelMap
from ..data.palettes import CAMVID_PALETTE, palette


@dataclass(frozen=True)
class RunDescription:
    """What a trained model's outputs mean and how its inputs were prepared.

    ``colours`` has one RGB triple per class (``len(colours) == len(class_names)``); ``mean`` and
    ``std`` normalise ``x / 255`` per channel; ``layout`` names the dataset reader
    (``"camvid"``, ``"folder"``, ... or ``None`` for a dataset given in Python). ``recipe``: the
    resolved recipe of a ``segzoo train`` run (``name``, ``description``, every option's
    ``options`` value and the ``overrides`` given as flags; see :mod:`segzoo.recipes`), or ``None``.
    ``label_map`` / ``colour_table``: how the training masks stored classes (file values or RGB
    colours; ``None``: class indices as they are), inverted by ``segzoo predict`` to write masks
    the same way. Checkpoints written before these fields existed load with ``None``.
    """

    class_names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ignore_index: int | None = None
    layout: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    recipe: dict[str, Any] | None = None
    label_map: LabelMap | None = None
    colour_table: ColourTable | None = None

    def __post_init__(self) -> None:
        names = tuple(str(name) for name in self.class_names)
        colours = tuple(tuple(int(c) for c in colour) for colour in self.colours)
        if not names:
            raise ValueError("class_names must name at least one class")
        if len(colours) != len(names) or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colours):
            raise ValueError(f"colours must hold one (R, G, B) triple in [0, 255] per class ({len(names)}), got {self.colours!r}")
        if len(self.mean) != len(self.std) or not all(s > 0 for s in self.std):
            raise ValueError(f"mean and std must have one value per channel and std > 0, got {self.mean!r}, {self.std!r}")
        if self.ignore_index is not None and (isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int)):
            raise TypeError(f"ignore_index must be an int or None, got {self.ignore_index!r}")
        if not isinstance(self.data, DataConfig):
            raise TypeError(f"data must be a DataConfig, got {type(self.data).__name__}")
        if self.recipe is not None and not isinstance(self.recipe, Mapping):
            raise TypeError(f"recipe must be a mapping or None, got {type(self.recipe).__name__}")
        if self.label_map is not None and not isinstance(self.label_map, LabelMap):
            raise TypeError(f"label_map must be a LabelMap or None, got {type(self.label_map).__name__}")
        if self.colour_table is not None and not isinstance(self.colour_table, ColourTable):
            raise TypeError(f"colour_table must be a ColourTable or None, got {type(self.colour_table).__name__}")
        if self.label_map is not None and self.colour_table is not None:
            raise ValueError("a run's masks store classes through a label map or a colour table, not both")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "colours", colours)
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def palette(self) -> Tensor:
        """The class colours as a uint8 tensor (num_classes, 3), for :mod:`segzoo.viz`."""
        return torch.tensor(self.colours, dtype=torch.uint8)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, numbers, strings), as stored in checkpoints."""
        values = asdict(self)
        values["label_map"] = self.label_map.to_dict() if self.label_map is not None else None
        values["colour_table"] = self.colour_table.to_dict() if self.colour_table is not None else None
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "the run description") -> RunDescription:
        """Rebuild a description saved by :meth:`to_dict`; unknown or missing fields are a ``ValueError``."""
        known = {f.name for f in fields(cls)}
        if not isinstance(values, Mapping):
            raise ValueError(f"{source} must be a mapping of {sorted(known)}, got {type(values).__name__}")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source} has unknown fields {unknown}; known: {sorted(known)}")
        values = dict(values)
        try:
            values["data"] = DataConfig.from_dict(values.get("data", {}))
            if values.get("label_map") is not None:
                values["label_map"] = LabelMap.from_dict(values["label_map"])
            if values.get("colour_table") is not None:
                values["colour_table"] = ColourTable.from_dict(values["colour_table"])
            return cls(**values)
        except (TypeError, KeyError) as error:
            raise ValueError(f"{source} is not a valid run description: {error}") from error

    @classmethod
    def for_model(
        cls, model: Any, dataset: Any = None, data: DataConfig | None = None, layout: str | None = None
    ) -> RunDescription:
        """The description of ``model`` trained on ``dataset``: the dataset's class names, colours
        (its ``palette``), ignore label, layout, label map and colour table where it has them,
        otherwise class indices as names and the PASCAL VOC colour map; the model's mean/std."""
        num_classes = model.num_classes
        names = getattr(dataset, "class_names", None) or [str(i) for i in range(num_classes)]
        colours = getattr(dataset, "palette", None)
        colours = palette(num_classes) if colours is None else torch.as_tensor(colours)[:num_classes]
        return cls(
            class_names=tuple(names),
            colours=tuple(map(tuple, colours.tolist())),
            mean=tuple(model.mean),
            std=tuple(model.std),
            ignore_index=getattr(dataset, "ignore_index", None),
            layout=layout if layout is not None else getattr(dataset, "layout", None),
            data=data or DataConfig(),
            label_map=getattr(dataset, "label_map", None),
            colour_table=getattr(dataset, "colour_table", None),
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], model: Any) -> RunDescription:
        """The description of a segzoo 0.1.0 checkpoint, whose free-form ``metadata`` dict held
        class names, ignore label, mean/std, eval size and a palette name."""
        num_classes = model.num_classes
        names: Sequence[str] = metadata.get("class_names") or [str(i) for i in range(num_classes)]
        colours = CAMVID_PALETTE[:num_classes] if metadata.get("palette") == "camvid" else palette(num_classes)
        eval_size = metadata.get("eval_size")
        return cls(
            class_names=tuple(names),
            colours=tuple(map(tuple, colours.tolist())),
            mean=tuple(metadata.get("mean") or model.mean),
            std=tuple(metadata.get("std") or model.std),
            ignore_index=metadata.get("ignore_index"),
            data=DataConfig(eval_size=tuple(eval_size) if eval_size else None),
        )
