"""Segmentation scores from a confusion matrix, as the SegNet and FCN papers report them.

Global accuracy (pixels right / pixels counted), class-average accuracy (mean over classes of
per-class recall), mean IoU and frequency-weighted IoU, plus the per-class numbers. A class absent
from both labels and predictions has no IoU (NaN) and is left out of the means rather than counted
as 0 or 1; a class absent from the labels likewise has no accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_device, check_int, check_optional_int
from .accumulator import Accumulator, check_range, label_pair


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
    #: boundary F1 (:mod:`segzoo.metrics.boundary`) and its per-class means, when they were computed
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

    def table(self, class_names: Sequence[str] | None = None) -> str:
        """The headline numbers (:meth:`summary`), then per-class IoU, accuracy (and BF), as
        markdown, all in percent; classes are named by ``class_names`` (default: their indices)."""
        summary = self.summary()
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.per_class_iou))]
        if len(names) != len(self.per_class_iou):
            raise ValueError(f"class_names has {len(names)} entries for {len(self.per_class_iou)} classes")
        lines = ["| " + " | ".join(_HEADINGS[name] for name in summary) + " |", "|" + "---:|" * len(summary)]
        lines.append("| " + " | ".join(_percent(v) for v in summary.values()) + " |")
        columns = [self.per_class_iou.tolist(), self.per_class_accuracy.tolist()]
        if self.per_class_bf is not None:
            columns.append(self.per_class_bf.tolist())
        lines += ["", "| class | IoU | accuracy |" + (" BF |" if len(columns) == 3 else ""), "|---|" + "---:|" * len(columns)]
        for name, *values in zip(names, *columns):
            lines.append(f"| {name} | " + " | ".join(_percent(v) for v in values) + " |")
        return "\n".join(lines)


_HEADINGS = {
    "global_accuracy": "global acc",
    "class_accuracy": "class avg acc",
    "mean_iou": "mIoU",
    "bf_score": "BF",
    "fw_iou": "fwIoU",
    "ece": "ECE",
}


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


class ConfusionMatrix(Accumulator):
    """Accumulates a ``(num_classes, num_classes)`` int64 confusion matrix on any device.

    Rows are ground-truth classes, columns predicted classes. Pixels whose label is
    ``ignore_index`` are not counted. Matrices from several batches, or several processes
    (:meth:`all_reduce`), add up.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, device: torch.device | str | None = None) -> None:
        num_classes = check_int("num_classes", num_classes, 1)
        self.num_classes = num_classes
        self.ignore_index = check_optional_int("ignore_index", ignore_index)
        device = check_device(device) if device is not None else None
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, prediction: Tensor, target: Tensor) -> None:
        """Count one batch.

        ``prediction``: logits or probabilities (N, num_classes, H, W), or labels (N, H, W).
        ``target``: integer labels (N, H, W) in ``[0, num_classes)`` or ``ignore_index``.
        """
        prediction, target = label_pair(prediction, target, self.num_classes)
        counted = target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        target, prediction = target[counted], prediction[counted]
        check_range(target, self.num_classes, self.ignore_index, "target")
        check_range(prediction, self.num_classes, None, "prediction")
        cells = torch.bincount(target * self.num_classes + prediction, minlength=self.num_classes**2)
        self.matrix += cells.reshape(self.num_classes, self.num_classes).to(self.matrix.device)

    def _state(self) -> tuple[Tensor]:
        return (self.matrix,)

    def _settings(self) -> dict[str, int | None]:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index}

    def compute(self) -> SegmentationScores:
        return scores_from_confusion(self.matrix)


def scores_from_confusion(matrix: Tensor) -> SegmentationScores:
    """Scores of a confusion matrix (rows: ground truth, columns: prediction)."""
    counts = matrix.detach().to("cpu", torch.int64, copy=True)  # a snapshot, not a view of a live accumulator
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
