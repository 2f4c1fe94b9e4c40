"""Expected calibration error of per-pixel class probabilities (Guo et al. 2017, arXiv 1706.04599)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_device, check_int, check_optional_int
from .accumulator import Accumulator, check_range, check_tensors


class CalibrationError(Accumulator):
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
        self.num_bins = num_bins = check_int("num_bins", num_bins, 1)
        self.ignore_index = check_optional_int("ignore_index", ignore_index)
        device = check_device(device) if device is not None else None
        self.count = torch.zeros(num_bins, dtype=torch.int64, device=device)
        self.confidence_sum = torch.zeros(num_bins, dtype=torch.float64, device=device)
        self.correct_sum = torch.zeros(num_bins, dtype=torch.float64, device=device)

    def _state(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.count, self.confidence_sum, self.correct_sum

    def _settings(self) -> dict[str, int | None]:
        return {"num_bins": self.num_bins, "ignore_index": self.ignore_index}

    @torch.no_grad()
    def update(self, probabilities: Tensor, target: Tensor) -> None:
        """Count one batch.

        ``probabilities``: float (N, C, H, W) class probabilities in [0, 1] (a softmax output; that
        they sum to 1 is not checked). ``target``: integer labels (N, H, W) in ``[0, C)`` or ``ignore_index``.
        """
        check_tensors(probabilities=probabilities, target=target)
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
        check_range(target, num_classes, self.ignore_index, "target")
        confidence = confidence.double().flatten()
        bins = (confidence * self.num_bins).ceil().long().sub(1).clamp(0, self.num_bins - 1)
        correct = (predicted.flatten() == target).double()
        device = self.count.device
        self.count += torch.bincount(bins, minlength=self.num_bins).to(device)
        self.confidence_sum += torch.bincount(bins, weights=confidence, minlength=self.num_bins).to(device)
        self.correct_sum += torch.bincount(bins, weights=correct, minlength=self.num_bins).to(device)

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
