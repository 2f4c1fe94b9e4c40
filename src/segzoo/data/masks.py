"""Reading mask files into class indices, whatever way they store them.

* **Class-index masks** (the pixel value is the class): 8-bit grayscale (PIL mode ``L``), palette
  PNGs (``P``: the palette *index* is the class, as in Pascal VOC; the palette colours are not
  looked at), 16-bit grayscale (``I;16``; ``I`` when every value fits in 16 bits) and 1-bit
  (``1``, read as 0 and 255, as a viewer shows it). A :class:`~segzoo.data.labelmaps.LabelMap`,
  when given, turns the stored values into classes (``{0: 0, 255: 1}`` for 0/255 masks).
* **Colour masks** (mode ``RGB``, one colour per class) need a
  :class:`~segzoo.data.colour_tables.ColourTable`.

Masks are turned by their EXIF orientation like their images. Every other mode (``RGBA``,
``LA``, ``F``, ...) is refused, naming the file, and so is a class-index mask given a colour table
(or a colour mask without one). All masks of one dataset must share one kind (checked when it is
built: :func:`mask_kind`).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..io.images import oriented
from .colour_tables import ColourTable
from .labelmaps import MAX_FILE_VALUE, LabelMap

#: how masks store their labels: ``None`` (class indices as they are), a label map or a colour table
MaskEncoding = LabelMap | ColourTable | None

#: mask modes and the kind each is; a dataset's masks must all be of one kind
MASK_KINDS = {
    "L": "8-bit grayscale (L)",
    "P": "palette (P)",
    "1": "1-bit (1)",
    "I;16": "16-bit grayscale",
    "I;16L": "16-bit grayscale",
    "I;16B": "16-bit grayscale",
    "I;16N": "16-bit grayscale",
    "I": "16-bit grayscale",
    "RGB": "RGB colour",
}
_LISTED = 5


def mask_kind(mode: str, source: str | os.PathLike) -> str:
    """The kind of mask mode ``mode`` is (see :data:`MASK_KINDS`), or a ``ValueError`` naming ``source``."""
    if mode not in MASK_KINDS:
        raise ValueError(
            f"mask {source} has mode {mode!r}; masks must be class-index images (8-bit L, palette P, 16-bit I;16, "
            "1-bit) or RGB colour masks with a colour table (--palette)"
        )
    return MASK_KINDS[mode]


def read_mask(
    mask: Image.Image,
    encoding: MaskEncoding = None,
    ignore_index: int | None = None,
    source: str | os.PathLike = "mask",
    num_classes: int | None = None,
) -> np.ndarray:
    """The class indices (int64 (H, W)) of an opened mask file, oriented as shown.

    ``encoding``: see :data:`MaskEncoding`; ignored pixels get ``ignore_index``. With
    ``num_classes``, labels outside ``[0, num_classes)`` other than ``ignore_index`` are a
    ``ValueError`` naming them, ``source`` and their pixel counts (datasets check once, when built).
    """
    kind = mask_kind(mask.mode, source)
    if kind == MASK_KINDS["RGB"]:
        if not isinstance(encoding, ColourTable):
            raise ValueError(
                f"mask {source} is an RGB colour mask; give a colour table (--palette NAME_OR_JSON, colour_table=) "
                "to map its colours to classes, or save class-index masks (mode L or P, pixel value = class index)"
            )
        labels = encoding.decode(np.asarray(oriented(mask).convert("RGB")), ignore_index, source)
    else:
        if isinstance(encoding, ColourTable):
            raise ValueError(
                f"mask {source} is a class-index image ({kind}), not an RGB colour mask, but a colour table was given: "
                "drop the colour table (--palette) for class-index masks"
            )
        values = _index_values(oriented(mask), source)
        labels = encoding.decode(values, ignore_index, source) if isinstance(encoding, LabelMap) else values.astype(np.int64)
    if num_classes is not None:
        check_labels(labels, num_classes, ignore_index, source)
    return labels


def check_labels(labels: np.ndarray, num_classes: int, ignore_index: int | None, source: str | os.PathLike) -> None:
    """``ValueError`` naming the values outside ``[0, num_classes)`` (other than ``ignore_index``),
    ``source`` and their pixel counts."""
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bad.any():
        values, counts = np.unique(labels[bad], return_counts=True)
        listed = ", ".join(f"{v} ({c} pixels)" for v, c in zip(values[:_LISTED].tolist(), counts[:_LISTED].tolist()))
        more = f" and {len(values) - _LISTED} more" if len(values) > _LISTED else ""
        allowed = f"[0, {num_classes})" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"mask {source} holds values outside {allowed}: {listed}{more}")


def _index_values(mask: Image.Image, source: str | os.PathLike) -> np.ndarray:
    if mask.mode == "1":
        return np.asarray(mask.convert("L"))
    values = np.asarray(mask)
    if mask.mode == "I" and values.size and (values.min() < 0 or values.max() > MAX_FILE_VALUE):
        raise ValueError(f"mask {source} (32-bit mode I) holds values {int(values.min())}..{int(values.max())} outside 0..{MAX_FILE_VALUE}")
    return values
