"""Label maps: the values stored in class-index mask files -> the class indices a model learns.

A :class:`LabelMap` is applied to every mask as it is read (``{0: 0, 255: 1}`` for 0/255 binary
masks; Cityscapes' labelId -> trainId; ADE20K's reduce-zero-label), and inverted when ``segzoo
predict`` writes masks back in the files' own values. A target of ``None`` (``"ignore"`` in JSON)
marks pixels every loss and metric skips: the dataset's ``ignore_index``. A value in a mask that
the map does not list is an error naming the value, the file and its pixel count.

The inverse of a many-to-one map (Cityscapes sends 15 labelIds to "ignored") is made canonical:
each class, and the ignored label, is written as the **smallest** file value that maps to it
(Cityscapes: trainId 0 -> labelId 7 "road", ignored -> 0 "unlabeled").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the largest value a 16-bit mask file holds
MAX_FILE_VALUE = 65535
_UNMAPPED = -2  # a lookup-table entry for a value the map does not list (never a class or PAD_LABEL)
_LISTED = 5

# Cityscapes labelIds 0..33 (cityscapesScripts' labels.py) -> the 19 trainIds; None: ignored
_CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


@dataclass(frozen=True)
class LabelMap:
    """Mask file values -> class indices (``None``: ignored), sorted by file value.

    ``pairs``: ``((file value, class index or None), ...)``; file values are ints in
    ``[0, 65535]`` (8- and 16-bit masks), each listed once; class indices are ints >= 0.
    ``name``: the built-in map's name, or ``None``. Build one with :meth:`from_mapping`,
    :meth:`named` or :meth:`parse`.
    """

    pairs: tuple[tuple[int, int | None], ...]
    name: str | None = None

    def __post_init__(self) -> None:
        pairs = []
        for pair in self.pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"a label map pair must be (file value, class index or None), got {pair!r}")
            value, target = pair
            if not _is_int(value) or not 0 <= value <= MAX_FILE_VALUE:
                raise ValueError(f"label map file values must be ints in [0, {MAX_FILE_VALUE}], got {value!r}")
            if target is not None and (not _is_int(target) or target < 0):
                raise ValueError(f"label map targets must be class indices (ints >= 0) or None (ignored), got {target!r} for {value}")
            pairs.append((int(value), None if target is None else int(target)))
        values = [value for value, _ in pairs]
        if len(set(values)) != len(values):
            raise ValueError(f"label map lists a file value twice: {sorted(v for v in set(values) if values.count(v) > 1)}")
        if not any(target is not None for _, target in pairs):
            raise ValueError("a label map must send at least one file value to a class")
        object.__setattr__(self, "pairs", tuple(sorted(pairs)))

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Any], name: str | None = None) -> LabelMap:
        """From ``{file value: class index}``; keys may be digit strings (as JSON writes them),
        targets ``None`` or ``"ignore"`` for ignored pixels."""
        if not isinstance(mapping, Mapping):
            raise TypeError(f"a label map must be a mapping of file value -> class index, got {type(mapping).__name__}")
        pairs = []
        for key, target in mapping.items():
            value = int(key) if isinstance(key, str) and key.strip().isdigit() else key
            pairs.append((value, None if target is None or target == "ignore" else target))
        return cls(tuple(pairs), name)

    @classmethod
    def named(cls, name: str) -> LabelMap:
        """A built-in map: ``"cityscapes"`` (labelId 0..33 -> the 19 trainIds, the rest ignored)
        or ``"ade20k-reduce-zero"`` (0 -> ignored, k -> k - 1 for k in 1..150)."""
        if name == "cityscapes":
            return cls(tuple((label_id, _CITYSCAPES_TRAIN_IDS.get(label_id)) for label_id in range(34)), name)
        if name == "ade20k-reduce-zero":
            return cls(((0, None), *((k, k - 1) for k in range(1, 151))), name)
        raise ValueError(f"unknown label map {name!r}; built-in maps: {list(BUILT_IN_LABEL_MAPS)}")

    @classmethod
    def parse(cls, text: str) -> LabelMap:
        """A built-in name, a JSON object (``'{"0": 0, "255": 1}'``) or a ``.json`` file holding one."""
        if text in BUILT_IN_LABEL_MAPS:
            return cls.named(text)
        source = "label map"
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise ValueError(
                    f"label map {text!r} is neither a built-in map {list(BUILT_IN_LABEL_MAPS)}, a JSON object such as "
                    '\'{"0": 0, "255": 1}\', nor an existing JSON file'
                )
            text, source = path.read_text(), f"label map file {path}"
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON: {error}") from None
        if not isinstance(mapping, dict):
            raise ValueError(f'{source} must be a JSON object of file value -> class index, e.g. {{"0": 0, "255": 1}}')
        return cls.from_mapping(mapping)

    @property
    def num_classes(self) -> int:
        """One more than the largest class index the map produces."""
        return 1 + max(target for _, target in self.pairs if target is not None)

    @property
    def ignores(self) -> bool:
        """Whether some file value is ignored (the dataset then needs an ``ignore_index``)."""
        return any(target is None for _, target in self.pairs)

    def decode(self, values: np.ndarray, ignore_index: int | None, source: str | os.PathLike) -> np.ndarray:
        """The class indices (int64, ``ignore_index`` where ignored) of a mask's file ``values``;
        a value the map does not list is a ``ValueError`` naming it, ``source`` and its pixel count."""
        values = np.asarray(values)
        top = int(values.max()) if values.size else 0
        table = np.full(max(top, self.pairs[-1][0]) + 1, _UNMAPPED, dtype=np.int64)
        for value, target in self.pairs:
            if target is None and ignore_index is None:
                raise ValueError(f"label map ignores file value {value}, but the dataset has no ignore_index")
            table[value] = ignore_index if target is None else target
        labels = table[values]
        unmapped = labels == _UNMAPPED
        if unmapped.any():
            found, counts = np.unique(values[unmapped], return_counts=True)
            listed = ", ".join(f"{v} ({c} pixels)" for v, c in zip(found[:_LISTED].tolist(), counts[:_LISTED].tolist()))
            more = f" and {len(found) - _LISTED} more" if len(found) > _LISTED else ""
            raise ValueError(f"mask {source} holds values the label map does not list: {listed}{more}; {self.describe()}")
        return labels

    def encode(self, labels: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
        """File values for class indices (and ``ignore_index``): the canonical inverse, the smallest
        file value mapping to each (see the module). A class no value maps to is a ``ValueError``."""
        inverse: dict[int | None, int] = {}
        for value, target in self.pairs:  # sorted by value: the first one met is the smallest
            inverse.setdefault(target, value)
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and labels.min() < 0:
            raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")
        table = np.full(int(labels.max(initial=0)) + 1, -1, dtype=np.int64)
        for target, value in inverse.items():
            key = ignore_index if target is None else target
            if key is not None and key < len(table):
                table[key] = value
        out = table[labels]
        if (out < 0).any():
            missing = sorted(set(labels[out < 0].tolist()))
            raise ValueError(f"classes {missing[:10]} have no file value in the label map; {self.describe()}")
        return out

    def describe(self) -> str:
        """The map in a few words, for messages."""
        what = f"label map {self.name!r}" if self.name else "the label map"
        shown = ", ".join(f"{v}->{'ignore' if t is None else t}" for v, t in self.pairs[:8])
        return f"{what} sends {shown}{', ...' if len(self.pairs) > 8 else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": [list(pair) for pair in self.pairs], "name": self.name}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LabelMap:
        """Rebuild from :meth:`to_dict` (checkpoints, ``config.json``)."""
        return cls(tuple(tuple(pair) for pair in values["pairs"]), values.get("name"))


#: names :meth:`LabelMap.named` knows
BUILT_IN_LABEL_MAPS = ("cityscapes", "ade20k-reduce-zero")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
