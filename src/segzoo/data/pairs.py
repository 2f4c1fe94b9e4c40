"""A dataset of (image file, mask file) pairs, every file checked once when it is built.

The layouts (:class:`~segzoo.data.SegmentationFolder`, CamVid, Cityscapes, ADE20K) differ only in
how they find their pairs; :class:`PairedDataset` reads and checks them. Images are fully decoded
(a truncated JPEG passes a header check but not a decode; ~4 ms per CamVid image), masks are
decoded through their encoding (:mod:`segzoo.data.masks`) to check their kind, size and labels,
so a bad file stops the program before training starts rather than crashing a DataLoader worker
an hour in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..io.images import check_mode, oriented_size, rgb_array
from .colour_tables import ColourTable
from .labelmaps import LabelMap
from .masks import MaskEncoding, mask_kind, read_mask
from .palettes import palette as voc_palette

#: ``(image, mask) -> (image, mask)``, applied to every item.
PairTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: the ignore label of a dataset whose label map or colour table ignores pixels, when none is given
DEFAULT_IGNORE_INDEX = 255
_LISTED = 5  # offending files named per message: enough to spot a pattern, short enough to read
# PIL reports damaged files through several exception types, depending on the format and stage
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class PairedDataset(Dataset[tuple[Tensor, Tensor]]):
    """``(image, mask)`` pairs of files, read as :mod:`segzoo.io.images` and :mod:`segzoo.data.masks` say.

    ``ds[i]`` is ``(image, mask)``: uint8 RGB (3, H, W) and int64 (H, W) class indices
    (``ignore_index`` allowed), or whatever ``transforms`` makes of them. ``label_map`` or
    ``colour_table`` (not both) say how masks store their classes; ``num_classes`` may then be left
    out (a colour table's class count, a label map's largest class + 1), and an ``ignore_index`` is
    needed when they ignore pixels (255 unless given). ``class_names`` and ``palette`` (one RGB
    colour per class; default: the colour table's, else the PASCAL VOC colour map) travel into
    checkpoints and predicted masks, and so do ``label_map`` and ``colour_table``.
    """

    layout: str | None = None  # the layouts set their name; None: a dataset given in Python

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        num_classes: int | None = None,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        transforms: PairTransform | None = None,
        palette: Tensor | Sequence[Sequence[int]] | None = None,
        label_map: LabelMap | None = None,
        colour_table: ColourTable | None = None,
    ) -> None:
        num_classes, ignore_index, names = check_arguments(num_classes, ignore_index, class_names, transforms, label_map, colour_table)
        if palette is None and colour_table is not None:
            palette = colour_table.colours
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names: tuple[str, ...] = names
        #: class colours, uint8 (num_classes, 3)
        self.palette = voc_palette(num_classes) if palette is None else _colours(palette, num_classes)
        self.label_map = label_map
        self.colour_table = colour_table
        self.transforms = transforms
        #: ``(image_path, mask_path)`` pairs
        self.samples: list[tuple[Path, Path]] = [(Path(image), Path(mask)) for image, mask in samples]
        _check_samples(self.samples, num_classes, ignore_index, self.encoding)

    @property
    def encoding(self) -> MaskEncoding:
        """How the mask files store classes: the label map, the colour table, or ``None``."""
        return self.label_map if self.label_map is not None else self.colour_table

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, mask_path = self.samples[index]
        with Image.open(image_path) as image_file:
            image = image_to_tensor(image_file)
        with Image.open(mask_path) as mask_file:
            mask = torch.from_numpy(read_mask(mask_file, self.encoding, self.ignore_index, mask_path))
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


def check_arguments(
    num_classes: int | None,
    ignore_index: int | None,
    class_names: Sequence[str] | None,
    transforms: PairTransform | None,
    label_map: LabelMap | None,
    colour_table: ColourTable | None,
) -> tuple[int, int | None, tuple[str, ...]]:
    """A :class:`PairedDataset`'s arguments checked (before any file is read): the class count,
    the ignore label and the class names (see :func:`resolve_classes`)."""
    num_classes, ignore_index = resolve_classes(num_classes, ignore_index, label_map, colour_table)
    if class_names is None and colour_table is not None:
        class_names = colour_table.class_names
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries, expected num_classes={num_classes}")
    if transforms is not None and not callable(transforms):
        raise TypeError(f"transforms must be a callable (image, mask) -> (image, mask), got {type(transforms).__name__}")
    return num_classes, ignore_index, names


def resolve_classes(
    num_classes: int | None,
    ignore_index: int | None,
    label_map: LabelMap | None = None,
    colour_table: ColourTable | None = None,
) -> tuple[int, int | None]:
    """The class count and ignore label of a dataset whose masks are read through ``label_map``
    or ``colour_table`` (see :class:`PairedDataset`); checked before any file is read."""
    if label_map is not None and not isinstance(label_map, LabelMap):
        raise TypeError(f"label_map must be a LabelMap or None, got {type(label_map).__name__}")
    if colour_table is not None and not isinstance(colour_table, ColourTable):
        raise TypeError(f"colour_table must be a ColourTable or None, got {type(colour_table).__name__}")
    if label_map is not None and colour_table is not None:
        raise ValueError("give a label map (class-index masks) or a colour table (RGB colour masks), not both")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    encoding = label_map if label_map is not None else colour_table
    if num_classes is None:
        if encoding is None:
            raise ValueError(
                "the dataset needs num_classes (--num-classes) unless a label map (--label-map) or colour table (--palette) gives it"
            )
        num_classes = encoding.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if colour_table is not None and num_classes != colour_table.num_classes:
        raise ValueError(f"the colour table has {colour_table.num_classes} classes, not num_classes={num_classes}")
    if label_map is not None and num_classes < label_map.num_classes:
        raise ValueError(f"the label map produces class {label_map.num_classes - 1}, more than num_classes={num_classes} allows")
    if encoding is not None and encoding.ignores:
        if ignore_index is None:
            ignore_index = DEFAULT_IGNORE_INDEX
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} is one of the {num_classes} classes; ignored pixels need another label")
    return num_classes, ignore_index


def image_to_tensor(image: Image.Image) -> Tensor:
    """A PIL image as a uint8 RGB tensor (3, H, W) of the pixels a viewer shows: EXIF orientation
    applied, grey replicated, alpha dropped, 16-bit images scaled to 8 bits, floating-point ones
    refused (see :mod:`segzoo.io.images`)."""
    return torch.from_numpy(np.array(rgb_array(image))).permute(2, 0, 1).contiguous()


def mask_to_tensor(mask: Image.Image, encoding: MaskEncoding = None, ignore_index: int | None = None) -> Tensor:
    """A PIL mask as an int64 tensor (H, W) of class indices, turned by its EXIF orientation like
    its image (see :func:`segzoo.data.masks.read_mask`; for mode ``"P"`` the palette index is the class)."""
    return torch.from_numpy(read_mask(mask, encoding, ignore_index))


def _colours(colours: Tensor | Sequence[Sequence[int]], num_classes: int) -> Tensor:
    table = torch.as_tensor(colours)
    if table.shape != (num_classes, 3) or table.is_floating_point() or bool(((table < 0) | (table > 255)).any()):
        raise ValueError(f"palette must hold one (R, G, B) triple of ints in [0, 255] per class ({num_classes}), got {colours!r}")
    return table.to(torch.uint8)


def _check_samples(samples: list[tuple[Path, Path]], num_classes: int, ignore_index: int | None, encoding: MaskEncoding) -> None:
    problems, kinds = [], {}
    for image_path, mask_path in samples:
        problem = _check_pair(image_path, mask_path, num_classes, ignore_index, encoding, kinds)
        if problem is not None:
            problems.append(problem)
    if problems:
        listed = " | ".join(problems[:_LISTED])  # one line: the command line prints errors as one line
        more = f" | ... and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
        raise ValueError(f"{len(problems)} of {len(samples)} image/mask pairs are unusable: {listed}{more}")


def _check_pair(
    image_path: Path, mask_path: Path, num_classes: int, ignore_index: int | None, encoding: MaskEncoding, kinds: dict[str, Path]
) -> str | None:
    """What is wrong with one pair, or ``None``; ``kinds`` holds the kind of the first mask read and its path."""
    try:
        with Image.open(image_path) as image:
            image_size = oriented_size(image)
            image.load()
            check_mode(image)
    except _READ_ERRORS as err:
        return f"cannot read image {image_path}: {err}"
    try:
        mask = Image.open(mask_path)
        mask.load()
    except _READ_ERRORS as err:
        return f"cannot read mask {mask_path}: {err}"
    with mask:
        try:  # these errors name the file themselves
            kind = mask_kind(mask.mode, mask_path)
            first_kind, first_path = next(iter(kinds.items()), (kind, mask_path))
            if kind != first_kind:
                return f"mask {mask_path} is {kind} but {first_path} is {first_kind}: one dataset's masks must share one mode"
            kinds.setdefault(kind, mask_path)
            mask_size = oriented_size(mask)
            read_mask(mask, encoding, ignore_index, mask_path, num_classes)
        except ValueError as err:
            return str(err)
    if mask_size != image_size:
        return (
            f"image {image_path} is {image_size[0]}x{image_size[1]} but its mask {mask_path} is "
            f"{mask_size[0]}x{mask_size[1]} (width x height)"
        )
    return None
