"""Boundary F1 (BF) score of Csurka et al. (BMVC 2013), as the SegNet paper reports it (arXiv 1511.00561, Sec. 4).

Definitions, per image of size H x W:

- The boundary of class ``c`` is the set of pixels labelled ``c`` with at least one 4-neighbour
  *inside the image* labelled otherwise; the image border itself is not a boundary.
- Where the target is ``ignore_index`` the prediction is overwritten with ``ignore_index`` first,
  so void regions give identical boundaries in both maps and prediction errors under them cost
  nothing. The ignore label is never a scored class.
- Tolerance ``theta = tolerance * sqrt(H**2 + W**2)`` (the paper's 0.75% of the diagonal by
  default). A boundary pixel is matched when a boundary pixel of the same class in the other map
  lies at Euclidean distance ``<= theta`` (integer offsets ``dy**2 + dx**2 <= theta**2``); distance 0
  always matches, so ``theta < 1`` asks for exact positions.
- Each class present in the target is scored: precision ``P`` = matched predicted boundary pixels /
  predicted boundary pixels, recall ``R`` = matched target boundary pixels / target boundary pixels,
  ``F1 = 2PR / (P + R)``, 0 when ``P + R == 0``. If both boundaries are empty (the class fills the
  whole image in both) ``F1 = 1``; if exactly one is empty, ``F1 = 0``. Classes absent from the
  target are not scored even when predicted; they still cost through the boundaries of the true
  classes they eat into.
- Image BF = mean F1 over the scored classes; an image with none (all ignore) is skipped.
  Dataset BF = mean of the image BFs.

Matching dilates boundary maps with a disk of radius ``theta``. Each boundary pixel carries its class
as one bit of an integer word, so one bitwise-OR dilation handles up to 64 classes at once, and the
disk is taken as a union of rectangles, each dilated separably in O(log theta) shifted ORs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_device, check_float, check_int, check_optional_int
from .accumulator import Accumulator, check_range, label_pair


@dataclass(frozen=True)
class BoundaryScores:
    """Accumulated BF scores; ``per_class`` is float64 (num_classes,) with NaN for never-scored classes."""

    #: mean of the image BF scores (NaN when no image was scored)
    bf_score: float
    #: mean F1 of each class over the images where it was scored
    per_class: Tensor
    #: images scored (all-ignore images are not counted)
    images: int


@torch.no_grad()
def boundary_f1(
    prediction: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None, tolerance: float = 0.0075
) -> tuple[Tensor, Tensor]:
    """BF score of each image of a batch (see the module docstring for the definitions).

    ``prediction``: labels (N, H, W), or logits/probabilities (N, num_classes, H, W) reduced by argmax.
    ``target``: integer labels (N, H, W) in ``[0, num_classes)`` or ``ignore_index``.
    Returns float64 CPU tensors ``(image_bf, class_f1)`` of shapes (N,) and (N, num_classes): NaN
    marks skipped images and unscored classes.
    """
    num_classes, tolerance = _check_settings(num_classes, tolerance)
    ignore_index = check_optional_int("ignore_index", ignore_index)
    prediction, target = _label_maps(prediction, target, num_classes, ignore_index)
    n, h, w = target.shape
    rectangles = _disk_rectangles(tolerance * math.hypot(h, w))
    pred_edge, target_edge = _edges(prediction, ignore_index), _edges(target, ignore_index)
    pred_matched, target_matched = _matched(pred_edge, prediction, target_edge, target, num_classes, rectangles)
    counted = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    _, pred_total, pred_hit = _tally(prediction, pred_edge, pred_matched, counted, num_classes)
    target_pixels, target_total, target_hit = _tally(target, target_edge, target_matched, counted, num_classes)

    precision = pred_hit / pred_total.clamp(min=1)
    recall = target_hit / target_total.clamp(min=1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = torch.where((pred_total == 0) & (target_total == 0), 1.0, f1)  # one empty side leaves P or R 0, so F1 0
    f1 = torch.where(target_pixels > 0, f1, math.nan)
    return f1.nanmean(1), f1


class BoundaryF1(Accumulator):
    """Accumulates BF scores over batches (and processes, :meth:`all_reduce`) on any device.

    Keeps the sum and count of image BF scores and, per class, the sum and count of F1 over the
    images where the class was scored, so the dataset score is the mean of image scores however
    the images were batched.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        tolerance: float = 0.0075,
        device: torch.device | str | None = None,
    ) -> None:
        num_classes, tolerance = _check_settings(num_classes, tolerance)
        self.num_classes = num_classes
        self.ignore_index = check_optional_int("ignore_index", ignore_index)
        self.tolerance = tolerance
        device = check_device(device) if device is not None else None
        self.bf_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.images = torch.zeros((), dtype=torch.int64, device=device)
        self.class_sum = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.class_count = torch.zeros(num_classes, dtype=torch.int64, device=device)

    def _state(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.bf_sum, self.images, self.class_sum, self.class_count

    def _settings(self) -> dict[str, float | None]:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index, "tolerance": self.tolerance}

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """Score one batch; arguments as for :func:`boundary_f1`."""
        image_bf, class_f1 = boundary_f1(prediction, target, self.num_classes, self.ignore_index, self.tolerance)
        scored = ~image_bf.isnan()
        device = self.bf_sum.device
        self.bf_sum += image_bf[scored].sum().to(device)
        self.images += scored.sum().to(device)
        self.class_sum += class_f1.nan_to_num(0.0).sum(0).to(device)
        self.class_count += (~class_f1.isnan()).sum(0).to(device)

    def compute(self) -> BoundaryScores:
        class_sum, class_count = self.class_sum.cpu(), self.class_count.cpu()
        images = int(self.images)
        return BoundaryScores(
            bf_score=float(self.bf_sum) / images if images else math.nan,
            per_class=torch.where(class_count > 0, class_sum / class_count.clamp(min=1), math.nan),
            images=images,
        )


def _check_settings(num_classes: int, tolerance: float) -> tuple[int, float]:
    """``num_classes`` (an int >= 1) and ``tolerance`` (a fraction of the image diagonal >= 0), checked."""
    return check_int("num_classes", num_classes, 1), check_float("tolerance", tolerance, 0.0)


def _label_maps(prediction: Tensor, target: Tensor, num_classes: int, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Validated int64 (N, H, W) label maps, the prediction set to ``ignore_index`` wherever the target is."""
    if isinstance(target, Tensor) and target.dim() != 3:
        raise ValueError(f"target must be (N, H, W) labels, got shape {tuple(target.shape)}")
    prediction, target = label_pair(prediction, target, num_classes)
    if ignore_index is None:
        check_range(target, num_classes, None, "target")
        check_range(prediction, num_classes, None, "prediction")
        return prediction, target
    void = target == ignore_index
    check_range(target.masked_fill(void, 0), num_classes, ignore_index, "target")
    check_range(prediction.masked_fill(void, 0), num_classes, None, "prediction")
    return prediction.masked_fill(void, ignore_index), target


def _edges(labels: Tensor, ignore_index: int | None) -> Tensor:
    """Boundary pixels (N, H, W) bool: a 4-neighbour inside the image differs; ignore-labelled pixels excluded."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    vertical = labels[:, 1:] != labels[:, :-1]
    horizontal = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, 1:] |= vertical
    edge[:, :-1] |= vertical
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    if ignore_index is not None:
        edge &= labels != ignore_index
    return edge


def _tally(labels: Tensor, edge: Tensor, matched: Tensor, counted: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Counted pixels, boundary pixels and matched boundary pixels per image and class: float64 (N, C) each, on the CPU."""
    n = labels.shape[0]
    image = torch.arange(n, device=labels.device).view(n, 1, 1)
    state = edge.long() + matched.long()  # 0 inside a region, 1 unmatched boundary, 2 matched boundary
    # one histogram for all three counts; uncounted pixels go to an extra bin, dropped after (cheaper than mask indexing)
    cells = torch.where(counted, (image * num_classes + labels) * 3 + state, n * num_classes * 3)
    counts = torch.bincount(cells.flatten(), minlength=n * num_classes * 3 + 1)[:-1].view(n, num_classes, 3).cpu().double()
    return counts.sum(2), counts[..., 1:].sum(2), counts[..., 2]


def _disk_rectangles(theta: float) -> list[tuple[int, int]]:
    """Half-sizes ``(dy, dx)`` of the rectangles whose union is the set of integer offsets within ``theta``.

    Row ``dy`` of the disk spans ``|dx| <= floor(sqrt(theta**2 - dy**2))``; the spans shrink with
    ``|dy|``, so one rectangle per distinct span (as tall as the rows that reach it) covers the disk.
    """
    radius = math.floor(theta)
    spans = [math.isqrt(math.floor(theta * theta - dy * dy)) for dy in range(radius + 1)]
    return [(dy, spans[dy]) for dy in range(radius + 1) if dy == radius or spans[dy + 1] < spans[dy]]


def _or_window(x: Tensor, radius: int, dim: int) -> Tensor:
    """Bitwise OR of ``x`` over the window ``[i - radius, i + radius]`` along ``dim``, outside the image being 0."""
    if radius == 0:
        return x
    size, length = x.shape[dim], 2 * radius + 1
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [radius, radius]
    run = torch.nn.functional.pad(x, pad)
    width = 1
    while 2 * width <= length:  # run[i] covers [i, i + 2 * width) after this step: doubling, O(log radius) ORs
        run = run.narrow(dim, 0, run.shape[dim] - width) | run.narrow(dim, width, run.shape[dim] - width)
        width *= 2
    return run.narrow(dim, 0, size) | run.narrow(dim, length - width, size)


def _dilate(words: Tensor, rectangles: list[tuple[int, int]]) -> Tensor:
    """Bitwise OR of ``words`` (N, H, W) over the disk given as a union of rectangles."""
    rows = {dx: _or_window(words, dx, 2) for dx in {dx for _, dx in rectangles}}
    near = _or_window(rows[rectangles[0][1]], rectangles[0][0], 1)
    for dy, dx in rectangles[1:]:
        near = near | _or_window(rows[dx], dy, 1)
    return near


def _matched(
    pred_edge: Tensor,
    prediction: Tensor,
    target_edge: Tensor,
    target: Tensor,
    num_classes: int,
    rectangles: list[tuple[int, int]],
) -> tuple[Tensor, Tensor]:
    """Boundary pixels of each map with a boundary pixel of their own class in the other map within the disk."""
    # the narrowest word that holds the classes: fewer bytes for every OR of the dilation
    dtype = next(d for d in (torch.int8, torch.int16, torch.int32, torch.int64) if d.itemsize * 8 >= min(num_classes, 64))
    bits = dtype.itemsize * 8
    pred_matched, target_matched = torch.zeros_like(pred_edge), torch.zeros_like(target_edge)
    for start in range(0, num_classes, bits):
        words = []
        for edge, labels in ((pred_edge, prediction), (target_edge, target)):
            # edge pixels hold valid labels, so with a single word every one of them is in it
            in_word = edge & (labels >= start) & (labels < start + bits) if num_classes > bits else edge
            bit = (labels - start).clamp(0, bits - 1).to(dtype)
            near = _dilate(torch.where(in_word, torch.ones_like(bit) << bit, 0), rectangles)
            words.append((in_word, bit, near))
        (pred_in, pred_bit, pred_near), (target_in, target_bit, target_near) = words
        # the top bit makes a word negative; the arithmetic shift then fills with ones, and & 1 still reads the bit
        pred_matched |= pred_in & ((target_near >> pred_bit) & 1).bool()
        target_matched |= target_in & ((pred_near >> target_bit) & 1).bool()
    return pred_matched, target_matched
