"""Pictures of segmentations: colour maps, overlays, prediction grids and training plots.

Images are uint8 tensors (3, H, W), masks integer tensors (H, W) of class indices. Tensors may live
on any device; the results are CPU tensors, since they are meant to be saved or shown. Every file
is written atomically (temporary file in the same folder, then ``os.replace``), so an interrupted
run never leaves a half-written PNG behind. Pillow does the PNGs; matplotlib, needed only by
:func:`plot_confusion_matrix` and :func:`plot_curves`, is the optional extra ``segzoo[plots]`` and is
imported only when one of them is called.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from .data.palettes import CAMVID_PALETTE, palette  # noqa: F401  (re-exported: segzoo.viz.palette stays where it was)
from .io.atomic import atomic_write

PathLike = str | os.PathLike[str]
Colours = Tensor | Sequence[Sequence[int]]

# Pixels of white between the tiles of a prediction grid.
_GAP = 4
# Past this many classes the confusion-matrix cells are too small to carry numbers.
_MAX_ANNOTATED_CLASSES = 20

# Nine evenly spaced colours of matplotlib's "inferno" (black - purple - orange - pale yellow): dark
# means certain, bright uncertain, and the brightness rises monotonically, so it reads in greyscale too.
_INFERNO = torch.tensor(
    [(0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85), (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)],
    dtype=torch.float64,
)


def heatmap(values: Tensor, vmax: float = 1.0) -> Tensor:
    """Colour a float map (H, W) with the inferno colour map from 0 (black) to ``vmax`` (pale
    yellow), values outside clipped: uint8 (3, H, W). For uncertainty maps, e.g. entropy / log C."""
    if not isinstance(values, Tensor) or values.dim() != 2 or not values.is_floating_point():
        raise ValueError(f"expected a float tensor (H, W), got {getattr(values, 'dtype', type(values).__name__)} "
                         f"{tuple(getattr(values, 'shape', ()))}")
    if not vmax > 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    if not torch.isfinite(values).all():
        raise ValueError("values must be finite, got NaN or infinity")
    position = (values.detach().cpu().double() / vmax).clamp(0, 1) * (len(_INFERNO) - 1)
    low = position.floor().long().clamp(max=len(_INFERNO) - 2)
    weight = (position - low).unsqueeze(-1)
    rgb = _INFERNO[low] * (1 - weight) + _INFERNO[low + 1] * weight
    return rgb.round().to(torch.uint8).permute(2, 0, 1).contiguous()


def colorize(
    mask: Tensor,
    colours: Colours,
    ignore_index: int | None = None,
    ignore_colour: tuple[int, int, int] = (0, 0, 0),
) -> Tensor:
    """Paint an integer mask (H, W) with ``colours[label]``: uint8 (3, H, W).

    ``colours`` is (K, 3) in [0, 255], e.g. :func:`palette` or :data:`CAMVID_PALETTE`. Pixels equal to
    ``ignore_index`` get ``ignore_colour``; any other label outside [0, K) is a ValueError.
    """
    _check_mask(mask, "mask")
    table = _as_colours(colours)
    fill = _as_colours([ignore_colour])[0]
    labels = mask.detach().cpu().long()
    ignored = labels == ignore_index if ignore_index is not None else torch.zeros_like(labels, dtype=torch.bool)
    outside = ~ignored & ((labels < 0) | (labels >= len(table)))
    if outside.any():
        values = sorted(labels[outside].unique().tolist())[:10]
        allowed = f"[0, {len(table)})" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"mask holds labels {values} outside {allowed}; pass one colour per class")
    rgb = table[labels.masked_fill(ignored, 0)]
    rgb[ignored] = fill
    return rgb.permute(2, 0, 1).contiguous()


def overlay(
    image: Tensor, mask: Tensor, colours: Colours, alpha: float = 0.5, ignore_index: int | None = None
) -> Tensor:
    """``round(alpha * colour + (1 - alpha) * image)`` per pixel: uint8 (3, H, W).

    ``image`` is uint8 (3, H, W), ``mask`` integer (H, W); pixels equal to ``ignore_index`` keep the
    image unchanged.
    """
    _check_image(image, "image")
    _check_mask(mask, "mask")
    if image.shape[1:] != mask.shape:
        raise ValueError(
            f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ; expected (3, H, W) and (H, W)"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = image.detach().cpu()
    colour = colorize(mask, colours, ignore_index)
    # float64 so the rounding matches the formula computed with Python floats
    blended = (alpha * colour.double() + (1.0 - alpha) * image.double()).round().to(torch.uint8)
    if ignore_index is None:
        return blended
    return torch.where(mask.detach().cpu().long() == ignore_index, image, blended)


def save_png(path: PathLike, image: Tensor) -> Path:
    """Write a uint8 (3, H, W) image as an RGB PNG (atomically, creating folders); return the path."""
    _check_image(image, "image")
    rgb = Image.fromarray(image.detach().cpu().permute(1, 2, 0).contiguous().numpy())
    with atomic_write(path) as file:
        rgb.save(file, format="PNG")
    return Path(path)


def save_mask_png(path: PathLike, mask: Tensor, colours: Colours) -> Path:
    """Write an integer mask (H, W) as a palette PNG whose pixel values are the class indices.

    ``np.array(Image.open(path))`` gives the mask back exactly; viewers show ``colours[label]``.
    Labels must be in [0, 255]; those past the last colour (such as an ignore value of 255) are
    stored unchanged and shown black.
    """
    _check_mask(mask, "mask")
    labels = mask.detach().cpu()
    if labels.numel() and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"a palette PNG holds labels in [0, 255], the mask spans [{int(labels.min())}, {int(labels.max())}]"
        )
    # a PNG palette has at most 256 entries; black padding keeps every index in it valid
    table = torch.zeros(256, 3, dtype=torch.uint8)
    given = _as_colours(colours)[:256]
    table[: len(given)] = given
    indexed = Image.fromarray(labels.to(torch.uint8).numpy())
    indexed.putpalette(table.flatten().tolist())
    with atomic_write(path) as file:
        indexed.save(file, format="PNG")
    return Path(path)


def prediction_grid(
    images: Tensor,
    targets: Tensor,
    predictions: Tensor,
    colours: Colours,
    path: PathLike,
    ignore_index: int | None = None,
    max_rows: int = 8,
) -> Path:
    """Save :func:`draw_prediction_grid`'s picture as a PNG at ``path``; return the path."""
    return save_png(path, draw_prediction_grid(images, targets, predictions, colours, ignore_index, max_rows))


def draw_prediction_grid(
    images: Tensor,
    targets: Tensor,
    predictions: Tensor,
    colours: Colours,
    ignore_index: int | None = None,
    max_rows: int = 8,
) -> Tensor:
    """One row per sample, image | ground truth | prediction, white gaps between tiles: uint8
    (3, rows * H + (rows - 1) * 4, 3 * W + 8).

    ``images`` uint8 (N, 3, H, W), ``targets`` and ``predictions`` integer (N, H, W); at most
    ``max_rows`` samples are drawn. ``ignore_index`` applies to the targets only: a prediction is
    always a class.
    """
    if not all(isinstance(t, Tensor) for t in (images, targets, predictions)):
        raise TypeError("images, targets and predictions must be torch.Tensors")
    if (
        images.dim() != 4
        or images.shape[1] != 3
        or targets.shape != predictions.shape
        or targets.shape != (images.shape[0], *images.shape[2:])
    ):
        raise ValueError(
            f"images {tuple(images.shape)}, targets {tuple(targets.shape)} and predictions "
            f"{tuple(predictions.shape)} do not agree; expected (N, 3, H, W), (N, H, W) and (N, H, W)"
        )
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("prediction_grid needs at least one sample, got N=0")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    table = _as_colours(colours)
    rows = min(images.shape[0], max_rows)
    height, width = images.shape[2:]
    grid = torch.full((3, rows * height + (rows - 1) * _GAP, 3 * width + 2 * _GAP), 255, dtype=torch.uint8)
    for row in range(rows):
        tiles = (
            images[row].detach().cpu(),
            colorize(targets[row], table, ignore_index),
            colorize(predictions[row], table),
        )
        top = row * (height + _GAP)
        for column, tile in enumerate(tiles):
            left = column * (width + _GAP)
            grid[:, top : top + height, left : left + width] = tile
    return grid


def plot_confusion_matrix(
    matrix: Tensor, path: PathLike, class_names: Sequence[str] | None = None, normalize: bool = True
) -> Path:
    """Save a heat-map of a (C, C) confusion matrix (rows: ground truth, columns: prediction).

    With ``normalize`` each row is divided by its total (per-class recall on the diagonal); rows
    without pixels show 0. Cells carry their values when C <= 20. Needs ``segzoo[plots]``.
    """
    if not isinstance(matrix, Tensor):
        raise TypeError(f"matrix must be a torch.Tensor, got {type(matrix).__name__}")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"matrix must be square (C, C) with C >= 1, got shape {tuple(matrix.shape)}")
    size = matrix.shape[0]
    names = [str(i) for i in range(size)] if class_names is None else list(class_names)
    if len(names) != size:
        raise ValueError(f"got {len(names)} class_names for a {size}x{size} matrix")
    values = matrix.detach().cpu().double()
    if normalize:
        totals = values.sum(1, keepdim=True)
        values = torch.where(totals > 0, values / totals, torch.zeros(()))
    values = values.numpy()

    figure_cls, canvas_cls = _matplotlib()
    side = min(3.0 + 0.35 * size, 30.0)
    figure = figure_cls(figsize=(side + 1.0, side))
    canvas_cls(figure)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    font = 8 if size <= 40 else 5
    axes.set_xticks(range(size), names, rotation=90, fontsize=font)
    axes.set_yticks(range(size), names, fontsize=font)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    axes.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if size <= _MAX_ANNOTATED_CLASSES:
        threshold = (1.0 if normalize else values.max()) / 2  # white text on the darker half of the scale
        integral = not normalize and not matrix.is_floating_point()
        for row in range(size):
            for column in range(size):
                value = values[row, column]
                text = f"{value:.0f}" if integral else f"{value:.2f}"
                colour = "white" if value > threshold else "black"
                axes.text(column, row, text, ha="center", va="center", fontsize=7, color=colour)
    figure.tight_layout()
    return _save_figure(figure, path)


def plot_curves(history: Sequence[Mapping[str, float]], path: PathLike, keys: Sequence[str] | None = None) -> Path:
    """Save one subplot per metric of a training history (one dict per epoch).

    x is the entry's ``"epoch"`` if present, else its 1-based position. ``keys`` defaults to every
    numeric key except ``"epoch"``, in order of first appearance; epochs lacking a key are skipped
    in that subplot. Needs ``segzoo[plots]``.
    """
    if not isinstance(history, Sequence) or not history or not all(isinstance(e, Mapping) for e in history):
        raise ValueError("history must be a non-empty list of {metric: value} dicts, one per epoch")
    numeric = list(dict.fromkeys(k for entry in history for k, v in entry.items() if k != "epoch" and _is_number(v)))
    if keys is None:
        keys = numeric
    missing = [k for k in keys if k not in numeric]
    if missing or not keys:
        raise ValueError(f"cannot plot keys {missing or list(keys)}; the history has numeric keys {numeric}")
    epochs = [entry.get("epoch", i + 1) for i, entry in enumerate(history)]

    figure_cls, canvas_cls = _matplotlib()
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure = figure_cls(figsize=(4.0 * columns, 3.0 * rows))
    canvas_cls(figure)
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, key in zip(grid.flat, keys):
        points = [(x, entry[key]) for x, entry in zip(epochs, history) if _is_number(entry.get(key))]
        xs, ys = zip(*points)
        axes.plot(xs, ys, marker="o" if len(points) <= 30 else None, markersize=3)
        axes.set_title(key)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    for axes in grid.flat[len(keys) :]:
        axes.set_visible(False)
    figure.tight_layout()
    return _save_figure(figure, path)


def _matplotlib() -> tuple[Any, Any]:
    """``Figure`` and ``FigureCanvasAgg``: the Agg canvas directly, so no global backend is switched."""
    try:
        # the package itself first: a None in sys.modules (how an optional dependency is blocked)
        # must win over submodules that are already imported
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError('plotting needs matplotlib; install it with: pip install "segzoo[plots]"') from err
    return Figure, FigureCanvasAgg


def _save_figure(figure: Any, path: PathLike) -> Path:
    with atomic_write(path) as file:
        figure.savefig(file, format="png", dpi=100)
    return Path(path)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_mask(mask: object, name: str) -> None:
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dim() != 2:
        raise ValueError(f"{name} must be (H, W), got shape {tuple(mask.shape)}")
    if mask.is_floating_point() or mask.is_complex() or mask.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got {mask.dtype}")


def _check_image(image: object, name: str) -> None:
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"{name} must be (3, H, W), got shape {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {image.dtype}")


def _as_colours(colours: Colours) -> Tensor:
    try:
        table = colours.detach().cpu() if isinstance(colours, Tensor) else torch.as_tensor(colours)
    except (TypeError, ValueError, RuntimeError) as err:  # None, strings, ragged rows
        raise TypeError(f"colours must be a (K, 3) tensor or nested sequence of ints, got {colours!r:.80}") from err
    if table.is_floating_point() or table.dtype == torch.bool:
        raise TypeError(f"colours must be integers in [0, 255], got {table.dtype}")
    if table.dim() != 2 or table.shape[1] != 3 or len(table) == 0:
        raise ValueError(f"colours must be (K, 3) with K >= 1, got shape {tuple(table.shape)}")
    if table.min() < 0 or table.max() > 255:
        raise ValueError(f"colours must be in [0, 255], got values in [{int(table.min())}, {int(table.max())}]")
    return table.to(torch.uint8)
