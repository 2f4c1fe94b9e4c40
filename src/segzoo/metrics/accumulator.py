"""What every metric accumulator shares: state tensors that add up over batches and processes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ..labels import PAD_LABEL


class Accumulator:
    """Base of the metric accumulators: subclasses keep their running state in the tensors
    :meth:`_state` returns (sums and counts, so that batches and processes simply add) and name
    the settings two accumulators must share to be merged in :meth:`_settings`."""

    def _state(self) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything counted so far."""
        for tensor in self._state():
            tensor.zero_()

    def merge(self, other: Accumulator) -> None:
        """Add another accumulator's counts (same type and settings), e.g. one per data shard."""
        if type(other) is not type(self) or other._settings() != self._settings():
            theirs = ", ".join(f"{k}={v}" for k, v in other._settings().items())
            mine = ", ".join(f"{k}={v}" for k, v in self._settings().items())
            raise ValueError(f"cannot merge a {type(other).__name__}({theirs}) into a {type(self).__name__}({mine})")
        for mine_t, theirs_t in zip(self._state(), other._state()):
            mine_t += theirs_t.to(mine_t.device)

    def all_reduce(self, group: Any = None) -> None:
        """Sum the state over the processes of a ``torch.distributed`` group (in place); a no-op in
        a single process."""
        sum_over_processes(self._state(), group)


def sum_over_processes(tensors: Iterable[Tensor], group: Any = None) -> None:
    """All-reduce (sum) tensors in place over a ``torch.distributed`` group; a no-op in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)


def check_tensors(**named: object) -> None:
    """``TypeError`` naming every argument that is not a tensor."""
    wrong = [f"{name} {type(value).__name__}" for name, value in named.items() if not isinstance(value, Tensor)]
    if wrong:
        raise TypeError(f"{' and '.join(named)} must be tensors (torch.Tensor), got {', '.join(wrong)}")


def counted_pixels(target: Tensor, ignore_index: int | None) -> Tensor:
    """Where int64 ``target`` labels count: neither ``ignore_index`` nor :data:`~segzoo.labels.PAD_LABEL`
    (the border a crop pads with, skipped by every metric whether or not there is an ignore label)."""
    counted = target != PAD_LABEL
    return counted & (target != ignore_index) if ignore_index is not None else counted


def check_range(labels: Tensor, num_classes: int, ignore_index: int | None, what: str) -> None:
    """``ValueError`` naming the labels outside ``[0, num_classes)``."""
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = sorted(labels[bad].unique().tolist())[:10]
        allowed = f"[0, {num_classes})" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"{what} holds labels {values} outside {allowed}")


def check_finite(scores: Tensor, what: str) -> None:
    """``ValueError`` if ``scores`` hold NaN or infinity: argmax would take a NaN for the largest
    score and count the pixel as a confident prediction, so such scores are refused, never counted."""
    finite = torch.isfinite(scores)
    if not finite.all():
        count = int((~finite).sum())
        raise ValueError(
            f"{what} holds {count} non-finite scores (NaN or infinity) of {scores.numel()}; expected finite "
            "logits or probabilities (a diverged model, non-finite weights or inputs?)"
        )


def label_pair(prediction: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Checked int64 label maps of one shape: ``prediction`` float scores (N, num_classes, H, W),
    reduced by argmax, or integer labels (N, H, W); ``target`` integer labels (N, H, W). Ranges are
    the caller's to check (ignore labels differ)."""
    check_tensors(prediction=prediction, target=target)
    if prediction.dim() == target.dim() + 1:
        if prediction.shape[1] != num_classes:
            raise ValueError(f"prediction has {prediction.shape[1]} channels, expected num_classes={num_classes}")
        if not prediction.is_floating_point():
            raise TypeError(f"(N, num_classes, H, W) predictions must be float scores, got {prediction.dtype}")
        check_finite(prediction, "prediction")
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
