"""One collection of the papers' scores over a dataset: confusion-matrix scores, and optionally
the boundary F1 score and the expected calibration error, updated from logits in one call."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_bool
from .accumulator import Accumulator
from .boundary import BoundaryF1
from .calibration import CalibrationError
from .confusion import ConfusionMatrix, SegmentationScores


class SegmentationMetrics(Accumulator):
    """Accumulates every score of :class:`SegmentationScores` from (logits, masks) batches.

    Always the confusion matrix (global and class-average accuracy, mIoU, fwIoU, per class); with
    ``boundary``, the BF score (:class:`BoundaryF1`, per class too); with ``calibration``, the ECE of
    the softmax confidences (:class:`CalibrationError`). Pixels labelled ``ignore_index`` count
    nowhere. Like each part, the collection adds up over batches, :meth:`merge` and
    :meth:`all_reduce` (processes), and :meth:`reset` starts over.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = None,
        boundary: bool = False,
        calibration: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        check_bool("boundary", boundary)
        check_bool("calibration", calibration)
        self.confusion = ConfusionMatrix(num_classes, ignore_index, device=device)
        self.boundary = BoundaryF1(num_classes, ignore_index, device=device) if boundary else None
        self.calibration = CalibrationError(ignore_index=ignore_index, device=device) if calibration else None

    @property
    def num_classes(self) -> int:
        return self.confusion.num_classes

    @property
    def ignore_index(self) -> int | None:
        return self.confusion.ignore_index

    def _parts(self) -> list[Accumulator]:
        return [part for part in (self.confusion, self.boundary, self.calibration) if part is not None]

    def _state(self) -> tuple[Tensor, ...]:
        return tuple(tensor for part in self._parts() for tensor in part._state())

    def _settings(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "boundary": self.boundary is not None and self.boundary._settings(),
            "calibration": self.calibration is not None and self.calibration._settings(),
        }

    @torch.no_grad()
    def update(self, logits: Tensor, masks: Tensor) -> None:
        """Count one batch: ``logits`` float (N, num_classes, h, w) (probabilities work too, and
        for the confusion matrix and BF alone also labels (N, H, W)); ``masks`` integer (N, H, W).

        Logits of another size than the masks (a model run at a reduced ``eval_size``) are first
        upsampled to the masks' size by :func:`upsample_logits`, so that every label is counted at
        its own resolution; labels cannot be interpolated and must match the masks' size.
        """
        if isinstance(logits, Tensor) and isinstance(masks, Tensor) and logits.shape[-2:] != masks.shape[-2:]:
            if logits.dim() != 4 or not logits.is_floating_point():
                raise ValueError(
                    f"predicted labels {tuple(logits.shape)} cannot be compared with labels {tuple(masks.shape)} of "
                    "another size: pass float logits (N, C, h, w), which are upsampled to the labels' size"
                )
            logits = upsample_logits(logits, masks.shape[-2:])
        self.confusion.update(logits, masks)
        if self.boundary is not None:
            self.boundary.update(logits, masks)
        if self.calibration is not None:
            self.calibration.update(logits.float().softmax(1), masks)

    def compute(self) -> SegmentationScores:
        """The scores of everything counted so far (BF and ECE when enabled)."""
        scores = self.confusion.compute()
        if self.boundary is not None:
            boundaries = self.boundary.compute()
            scores = replace(scores, bf_score=boundaries.bf_score, per_class_bf=boundaries.per_class)
        if self.calibration is not None:
            scores = replace(scores, ece=self.calibration.compute())
        return scores


def upsample_logits(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``logits`` (N, C, h, w) at the label size ``size = (H, W)``: bilinear, ``align_corners=False``
    (half-pixel centres), computed in float32 (float64 stays float64); unchanged when already
    that size.

    This is the one place where segzoo brings a model's output to the ground truth's resolution:
    the evaluation loop and :class:`SegmentationMetrics` both use it, so scores, loss, BF and ECE
    always count each label at its own resolution, whatever size the model saw.
    """
    if logits.dim() != 4 or not logits.is_floating_point():
        raise ValueError(f"logits must be float (N, C, h, w), got {tuple(logits.shape)} {logits.dtype}")
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
