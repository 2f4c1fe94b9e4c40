"""Colour tables: the RGB colours of colour-coded mask files -> class indices.

Annotation tools often export masks as RGB pictures, one colour per class. A :class:`ColourTable`
lists the classes in order (index = position), each with its name and colour, plus colours that
mark ignored pixels; a mask pixel of any other colour is an error naming the colour, the file and
its pixel count, or ignored when ``unknown_colours="ignore"``. ``segzoo predict`` writes RGB masks
in the same colours again.

Built-in tables (:meth:`ColourTable.named`): ``camvid`` (11 classes; black, "Unlabelled", ignored)
and ``voc`` (21 classes in the PASCAL VOC colour map; the border colour (224, 224, 192) ignored).
A JSON file holds the same (``color`` or ``colour``; ``ignore`` and ``unknown_colors`` optional)::

    {"classes": [{"name": "background", "color": [0, 0, 0]},
                 {"name": "road", "color": [128, 64, 128]}],
     "ignore": [[255, 255, 255]],
     "unknown_colors": "error"}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .palettes import CAMVID_CLASSES, CAMVID_PALETTE, VOC_BORDER_COLOUR, VOC_CLASSES, palette

UNKNOWN_COLOURS = ("error", "ignore")
_LISTED = 5
Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ColourTable:
    """Classes of colour-coded masks: ``class_names[i]`` is drawn in ``colours[i]``.

    ``ignore_colours``: colours whose pixels get the dataset's ``ignore_index``.
    ``unknown_colours``: ``"error"`` (default) or ``"ignore"`` for any colour not listed.
    ``name``: the built-in table's name, or ``None``.
    """

    class_names: tuple[str, ...]
    colours: tuple[Colour, ...]
    ignore_colours: tuple[Colour, ...] = ()
    unknown_colours: str = "error"
    name: str | None = None

    def __post_init__(self) -> None:
        names = tuple(str(name) for name in self.class_names)
        colours = tuple(_colour(c) for c in self.colours)
        ignored = tuple(_colour(c) for c in self.ignore_colours)
        if not names or len(colours) != len(names):
            raise ValueError(f"a colour table needs one colour per class, got {len(names)} names and {len(colours)} colours")
        everything = colours + ignored
        repeated = sorted({c for c in everything if everything.count(c) > 1})
        if repeated:
            raise ValueError(f"colours {repeated[:_LISTED]} are listed twice in the colour table (each colour means one thing)")
        if self.unknown_colours not in UNKNOWN_COLOURS:
            raise ValueError(f"unknown_colours must be one of {UNKNOWN_COLOURS}, got {self.unknown_colours!r}")
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "colours", colours)
        object.__setattr__(self, "ignore_colours", ignored)

    @classmethod
    def named(cls, name: str, unknown_colours: str = "error") -> ColourTable:
        """A built-in table: ``"camvid"`` or ``"voc"`` (see the module)."""
        if name == "camvid":
            return cls(CAMVID_CLASSES, tuple(map(tuple, CAMVID_PALETTE[:11].tolist())), ((0, 0, 0),), unknown_colours, name)
        if name == "voc":
            return cls(VOC_CLASSES, tuple(map(tuple, palette(21).tolist())), (VOC_BORDER_COLOUR,), unknown_colours, name)
        raise ValueError(f"unknown colour table {name!r}; built-in tables: {list(BUILT_IN_COLOUR_TABLES)}")

    @classmethod
    def parse(cls, text: str, unknown_colours: str | None = None) -> ColourTable:
        """A built-in name or a JSON file in the module's format; ``unknown_colours`` overrides the file's."""
        if text in BUILT_IN_COLOUR_TABLES:
            return cls.named(text, unknown_colours or "error")
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"colour table {text!r} is neither a built-in table {list(BUILT_IN_COLOUR_TABLES)} nor an existing JSON file")
        try:
            spec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"colour table file {path} is not valid JSON: {error}") from None
        return cls.from_json(spec, str(path), unknown_colours)

    @classmethod
    def from_json(cls, spec: Any, source: str = "colour table", unknown_colours: str | None = None) -> ColourTable:
        """From the JSON object of the module's format (``source`` names it in errors)."""
        example = '{"classes": [{"name": "road", "color": [128, 64, 128]}, ...]}'
        if not isinstance(spec, dict) or not isinstance(spec.get("classes"), list):
            raise ValueError(f"{source} must be a JSON object with a list of classes, e.g. {example}")
        unknown = sorted(set(spec) - {"classes", "ignore", "unknown_colors", "unknown_colours"})
        if unknown:
            raise ValueError(f"{source} has unknown keys {unknown}; expected classes, ignore, unknown_colors")
        names, colours = [], []
        for entry in spec["classes"]:
            colour = entry.get("color", entry.get("colour")) if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or "name" not in entry or colour is None:
                raise ValueError(f"{source}: each class needs a name and a color, e.g. {example}; got {entry!r}")
            names.append(entry["name"])
            colours.append(colour)
        mode = unknown_colours or spec.get("unknown_colors", spec.get("unknown_colours", "error"))
        try:
            return cls(tuple(names), tuple(colours), tuple(spec.get("ignore", ())), mode)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def ignores(self) -> bool:
        """Whether some pixels may be ignored (the dataset then needs an ``ignore_index``)."""
        return bool(self.ignore_colours) or self.unknown_colours == "ignore"

    def decode(self, rgb: np.ndarray, ignore_index: int | None, source: str | os.PathLike) -> np.ndarray:
        """The class indices (int64 (H, W)) of an RGB mask (uint8 (H, W, 3)); see the module."""
        keys = _keys(rgb)
        table = [(_key(c), i) for i, c in enumerate(self.colours)] + [(_key(c), -1) for c in self.ignore_colours]
        table.sort()
        known = np.array([k for k, _ in table], dtype=np.int64)
        targets = np.array([t for _, t in table], dtype=np.int64)
        where = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        found = known[where] == keys
        if not found.all() and self.unknown_colours == "error":
            colours, counts = np.unique(keys[~found], return_counts=True)
            listed = ", ".join(f"{_unkey(k)} ({c} pixels)" for k, c in zip(colours[:_LISTED].tolist(), counts[:_LISTED].tolist()))
            more = f" and {len(colours) - _LISTED} more" if len(colours) > _LISTED else ""
            raise ValueError(
                f"colour mask {source} holds colours that are not in the colour table{self._named()}: {listed}{more} "
                "(add them as classes or to ignore, or ignore unknown colours: unknown_colors)"
            )
        labels = np.where(found, targets[where], -1)
        if (labels == -1).any():
            if ignore_index is None:
                raise ValueError("the colour table ignores some colours, but the dataset has no ignore_index")
            labels[labels == -1] = ignore_index
        return labels

    def encode(self, labels: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
        """RGB pixels (uint8 (H, W, 3)) for class indices: each class's colour; ``ignore_index``
        as the first ignore colour (black without one)."""
        labels = np.asarray(labels, dtype=np.int64)
        top = max(int(labels.max(initial=0)), self.num_classes - 1, ignore_index or 0)
        table = np.zeros((top + 1, 3), dtype=np.uint8)
        table[: self.num_classes] = self.colours
        bad = (labels < 0) | (labels >= self.num_classes)
        if ignore_index is not None:
            table[ignore_index] = self.ignore_colours[0] if self.ignore_colours else (0, 0, 0)
            bad &= labels != ignore_index
        if bad.any():
            raise ValueError(f"labels {sorted(set(labels[bad].tolist()))[:10]} are not classes of the colour table{self._named()}")
        return table[labels]

    def _named(self) -> str:
        return f" {self.name!r}" if self.name else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names), "colours": [list(c) for c in self.colours],
            "ignore_colours": [list(c) for c in self.ignore_colours], "unknown_colours": self.unknown_colours,
            "name": self.name,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ColourTable:
        """Rebuild from :meth:`to_dict` (checkpoints, ``config.json``)."""
        return cls(**values)


#: names :meth:`ColourTable.named` knows
BUILT_IN_COLOUR_TABLES = ("camvid", "voc")


def _colour(colour: Sequence[int]) -> Colour:
    if (
        not isinstance(colour, (tuple, list))
        or len(colour) != 3
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)
    ):
        raise ValueError(f"a colour must be [R, G, B] with ints in [0, 255], got {colour!r}")
    return (int(colour[0]), int(colour[1]), int(colour[2]))


def _key(colour: Colour) -> int:
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def _keys(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unkey(key: int) -> Colour:
    return (key >> 16, (key >> 8) & 255, key & 255)
