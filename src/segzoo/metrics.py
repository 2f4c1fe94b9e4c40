"""Segmentation scores from a confusion matrix, as the SegNet and FCN papers report them.

Global accuracy (pixels right / pixels counted), class-average accuracy (mean over classes of
per-class recall), mean IoU and frequency-weighted IoU, plus the per-class numbers. A class absent
from both labels and predictions has no IoU (NaN) and is left out of the means rather than counted
as 0 or 1; a class absent from the labels likewise has no accuracy.

Also the expected calibration error of per-pixel class probabilities (:class:`CalibrationError`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one confusion matrix; per-class tensors are float64 with NaN where undefined."""

    global_accuracy: float
    class_accuracy: float
    mean_iou: float
    fw_iou: float
    per_class_accuracy: Tensor
    per_class_iou: Tensor
    #: the int64 confusion matrix the scores come from (rows: ground truth), on the CPU
    confusion: Tensor
    #: boundary F1 (:mod:`segzoo.boundary`) and its per-class means, when they were computed
    bf_score: float | None = None
    per_class_bf: Tensor | None = None
    #: expected calibration error of the softmax confidences, when it was computed
    ece: float | None = None

    def summary(self) -> dict[str, float]:
        """The headline numbers in the papers' order (SegNet's G, C, mIoU, BF; then FCN's fwIoU),
        then ECE; BF and ECE only when computed."""
        numbers = {
            "global_accuracy": self.global_accuracy,
            "class_accuracy": self.class_accuracy,
            "mean_iou": self.mean_iou,
            "bf_score": self.bf_score,
            "fw_iou": self.fw_iou,
            "ece": self.ece,
        }
        return {name: value for name, value in numbers.items() if value is not None}


class ConfusionMatrix:
    """Accumulates a ``(num_classes, num_classes)`` int64 confusion matrix on any device.

    Rows are ground-truth classes, columns predicted classes. Pixels whose label is
    ``ignore_index`` are not counted. Matrices from several batches, or several processes
    (:meth:`all_reduce`), add up.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, prediction: Tensor, target: Tensor) -> None:
        """Count one batch.

        ``prediction``: logits or probabilities (N, num_classes, H, W), or labels (N, H, W).
        ``target``: integer labels (N, H, W) in ``[0, num_classes)`` or ``ignore_index``.
        """
        prediction, target = label_pair(prediction, target, self.num_classes)
        counted = target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        target, prediction = target[counted], prediction[counted]
        _check_range(target, self.num_classes, self.ignore_index, "target")
        _check_range(prediction, self.num_classes, None, "prediction")
        cells = torch.bincount(target * self.num_classes + prediction, minlength=self.num_classes**2)
        self.matrix += cells.reshape(self.num_classes, self.num_classes).to(self.matrix.device)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another accumulator's counts (same ``num_classes``)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.matrix += other.matrix.to(self.matrix.device)

    def all_reduce(self, group=None) -> None:
        """Sum the matrix over the processes of a ``torch.distributed`` group (in place)."""
        sum_over_processes((self.matrix,), group)

    def compute(self) -> SegmentationScores:
        return scores_from_confusion(self.matrix)


def sum_over_processes(tensors: Iterable[Tensor], group=None) -> None:
    """All-reduce (sum) accumulator state in place over a ``torch.distributed`` group; a no-op in
    a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)


def scores_from_confusion(matrix: Tensor) -> SegmentationScores:
    """Scores of a confusion matrix (rows: ground truth, columns: prediction)."""
    counts = matrix.detach().to("cpu", torch.int64)
    m = counts.double()
    hits = m.diagonal()
    labelled = m.sum(1)
    predicted = m.sum(0)
    union = labelled + predicted - hits
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    per_class_accuracy = torch.where(labelled > 0, hits / labelled.clamp(min=1), nan)
    per_class_iou = torch.where(union > 0, hits / union.clamp(min=1), nan)
    total = labelled.sum()
    if total == 0:
        return SegmentationScores(float("nan"), float("nan"), float("nan"), float("nan"), per_class_accuracy, per_class_iou, counts)
    present = labelled > 0  # fwIoU weighs by label frequency, so only labelled classes contribute
    return SegmentationScores(
        global_accuracy=float(hits.sum() / total),
        class_accuracy=float(per_class_accuracy.nanmean()),
        mean_iou=float(per_class_iou.nanmean()),
        fw_iou=float((labelled[present] / total * per_class_iou[present]).sum()),
        per_class_accuracy=per_class_accuracy,
        per_class_iou=per_class_iou,
        confusion=counts,
    )


class CalibrationError:
    """Expected calibration error (ECE) of per-pixel predictions (Guo et al. 2017, arXiv 1706.04599).

    A counted pixel's confidence is its largest class probability, and it is correct when that class
    (the argmax, the first one on ties) is its label; pixels labelled ``ignore_index`` are skipped.
    Confidences fall into ``num_bins`` equal-width bins over (0, 1]: bin ``b`` holds ``(b/B, (b+1)/B]``,
    i.e. index ``ceil(B * confidence) - 1`` computed in float64, and a confidence of exactly 0 goes in
    bin 0. Per bin the pixel count (int64) and the sums of confidence and of correctness (float64) add
    up over batches and processes, and ``ECE = sum_b n_b / N * |acc_b - conf_b|``, which is
    ``sum_b |correct_b - confidence_b| / N`` with the sums, so empty bins need no special case.
    """

    def __init__(self, num_bins: int = 15, ignore_index: int | None = None, device: torch.device | str | None = None) -> None:
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        self.num_bins = num_bins
        self.ignore_index = ignore_index
        self.count = torch.zeros(num_bins, dtype=torch.int64, device=device)
        self.confidence_sum = torch.zeros(num_bins, dtype=torch.float64, device=device)
        self.correct_sum = torch.zeros(num_bins, dtype=torch.float64, device=device)

    def _state(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.count, self.confidence_sum, self.correct_sum

    def reset(self) -> None:
        for t in self._state():
            t.zero_()

    @torch.no_grad()
    def update(self, probabilities: Tensor, target: Tensor) -> None:
        """Count one batch.

        ``probabilities``: float (N, C, H, W) class probabilities in [0, 1] (a softmax output; that
        they sum to 1 is not checked). ``target``: integer labels (N, H, W) in ``[0, C)`` or ``ignore_index``.
        """
        _check_tensors(probabilities=probabilities, target=target)
        if probabilities.dim() != 4 or probabilities.shape[1] == 0:
            raise ValueError(f"probabilities must be (N, C, H, W) with C >= 1, got shape {tuple(probabilities.shape)}")
        if not probabilities.is_floating_point() or target.is_floating_point():
            raise TypeError(
                f"expected float probabilities and integer labels, got probabilities {probabilities.dtype}, target {target.dtype}"
            )
        n, num_classes, h, w = probabilities.shape
        if target.shape != (n, h, w):
            raise ValueError(
                f"target {tuple(target.shape)} does not match probabilities {tuple(probabilities.shape)}; "
                f"expected ({n}, {h}, {w})"
            )
        if not ((probabilities >= 0) & (probabilities <= 1)).all():
            raise ValueError("probabilities must lie in [0, 1] (apply softmax to logits first)")
        confidence, predicted = probabilities.max(1)
        target = target.long()  # before comparing with ignore_index, which would wrap in a narrower dtype
        if self.ignore_index is not None:
            counted = target != self.ignore_index
            confidence, predicted, target = confidence[counted], predicted[counted], target[counted]
        target = target.flatten()
        _check_range(target, num_classes, self.ignore_index, "target")
        confidence = confidence.double().flatten()
        bins = (confidence * self.num_bins).ceil().long().sub(1).clamp(0, self.num_bins - 1)
        correct = (predicted.flatten() == target).double()
        device = self.count.device
        self.count += torch.bincount(bins, minlength=self.num_bins).to(device)
        self.confidence_sum += torch.bincount(bins, weights=confidence, minlength=self.num_bins).to(device)
        self.correct_sum += torch.bincount(bins, weights=correct, minlength=self.num_bins).to(device)

    def merge(self, other: CalibrationError) -> None:
        """Add another accumulator's bins (same ``num_bins``)."""
        if other.num_bins != self.num_bins:
            raise ValueError(f"cannot merge {other.num_bins} bins into {self.num_bins}")
        for mine, theirs in zip(self._state(), other._state()):
            mine += theirs.to(mine.device)

    def all_reduce(self, group=None) -> None:
        """Sum the bins over the processes of a ``torch.distributed`` group (in place)."""
        sum_over_processes(self._state(), group)

    def bins(self) -> tuple[Tensor, Tensor, Tensor]:
        """Reliability-diagram data per bin, on the CPU: pixel count (int64), mean confidence and
        accuracy (float64, NaN for empty bins)."""
        count, confidence_sum, correct_sum = (t.cpu() for t in self._state())
        filled = count.clamp(min=1)
        mean_confidence = torch.where(count > 0, confidence_sum / filled, math.nan)
        return count, mean_confidence, torch.where(count > 0, correct_sum / filled, math.nan)

    def compute(self) -> float:
        """The ECE; NaN when no pixel was counted."""
        total = int(self.count.sum())
        if total == 0:
            return math.nan
        return float((self.correct_sum - self.confidence_sum).abs().sum()) / total


def expected_calibration_error(
    probabilities: Tensor, target: Tensor, num_bins: int = 15, ignore_index: int | None = None
) -> float:
    """ECE of one batch: ``probabilities`` (N, C, H, W), ``target`` (N, H, W); see :class:`CalibrationError`."""
    ece = CalibrationError(num_bins, ignore_index, device=probabilities.device)
    ece.update(probabilities, target)
    return ece.compute()


def label_pair(prediction: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Checked int64 label maps of one shape: ``prediction`` float scores (N, num_classes, H, W),
    reduced by argmax, or integer labels (N, H, W); ``target`` integer labels (N, H, W). Ranges are
    the caller's to check (ignore labels differ)."""
    _check_tensors(prediction=prediction, target=target)
    if prediction.dim() == target.dim() + 1:
        if prediction.shape[1] != num_classes:
            raise ValueError(f"prediction has {prediction.shape[1]} channels, expected num_classes={num_classes}")
        if not prediction.is_floating_point():
            raise TypeError(f"(N, num_classes, H, W) predictions must be float scores, got {prediction.dtype}")
        prediction = prediction.argmax(1)
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} do not match; expected "
            "(N, num_classes, H, W) or (N, H, W) predictions for (N, H, W) targets"
        )
    if prediction.is_floating_point() or target.is_floating_point():
        raise TypeError(f"labels must be integer tensors, got prediction {prediction.dtype}, target {target.dtype}")
    # int64: in a narrower dtype an ignore label wraps around (uint8 255 == -1)
    return prediction.long(), target.long()


def _check_tensors(**named: object) -> None:
    wrong = [f"{name} {type(value).__name__}" for name, value in named.items() if not isinstance(value, Tensor)]
    if wrong:
        raise TypeError(f"{' and '.join(named)} must be tensors (torch.Tensor), got {', '.join(wrong)}")


def _check_range(labels: Tensor, num_classes: int, ignore_index: int | None, what: str) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = sorted(labels[bad].unique().tolist())[:10]
        allowed = f"[0, {num_classes})" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"{what} holds labels {values} outside {allowed}")
