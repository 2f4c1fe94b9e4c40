"""Segmentation losses: cross-entropy, soft Dice, focal, Lovasz-softmax, and weighted sums of them.

Every loss takes float logits ``(N, C, H, W)`` and integer labels ``(N, H, W)`` and returns a scalar.
Pixels labelled ``ignore_index`` and pixels labelled :data:`~segzoo.labels.PAD_LABEL` (the border
a random crop adds) are skipped by every loss, whether or not ``ignore_index`` is set; any other
label outside ``[0, C)`` is a ``ValueError``. A batch without a counted pixel gives a loss of 0 with
zero gradients, never NaN.

Losses are also known by name: :func:`get_loss` builds one from a spec such as ``"ce"``,
``"ce+dice"`` or ``"0.5*ce+1*lovasz"`` (:data:`LOSSES` lists the names).

Each loss is a quotient: :meth:`SegmentationLoss.summed` returns, per term, a sum and the weight
its mean divides it by, so that the trainer and :func:`~segzoo.training.evaluate` can add batches
(and processes) and divide once. For cross-entropy and focal the sum runs over pixels and the
weight is the pixel count (or the summed class weights of the counted pixels): a validation loss
is then the mean over the whole set, however it is batched. Dice and Lovasz are set losses,
computed over a batch's counted pixels; their sum is the batch value times the batch's counted
pixels, so a validation loss averages batch values weighted by their pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_float, check_optional_int
from .labels import PAD_LABEL

__all__ = [
    "LOSSES",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "LovaszSoftmaxLoss",
    "SegmentationLoss",
    "WeightedSum",
    "format_loss_spec",
    "get_loss",
    "parse_loss_spec",
]


class SegmentationLoss(nn.Module):
    """Base of segzoo's losses: ``loss(logits, target)`` is ``mean(*summed(logits, target))``.

    ``weight``: optional class weights (C,), non-negative; how each loss uses them is in its
    docstring. ``ignore_index``: a label to skip (``PAD_LABEL`` is skipped anyway).
    """

    def __init__(self, ignore_index: int | None = None, weight: Tensor | None = None) -> None:
        super().__init__()
        self.ignore_index = check_optional_int("ignore_index", ignore_index)
        self.register_buffer("weight", _class_weights(weight), persistent=False)

    def terms(self) -> tuple[tuple[float, SegmentationLoss], ...]:
        """``(coefficient, loss)`` pairs whose weighted sum this loss is (a single loss: itself, 1)."""
        return ((1.0, self),)

    def summed(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per term, the summed loss and the weight its mean divides by: two (K,) tensors for K terms."""
        pairs = [term._checked_sum(logits, target) for _, term in self.terms()]
        return torch.stack([total for total, _ in pairs]), torch.stack([weight for _, weight in pairs])

    def mean(self, sums: Tensor, weights: Tensor) -> Tensor:
        """``sum_k coefficient_k * sums_k / weights_k``, a term with weight 0 (nothing counted) giving 0."""
        coefficients = torch.tensor([c for c, _ in self.terms()], dtype=sums.dtype, device=sums.device)
        return (coefficients * sums / weights.clamp(min=torch.finfo(weights.dtype).tiny)).sum()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.mean(*self.summed(logits, target))

    def _checked_sum(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        target = _check_inputs(logits, target, self.ignore_index)
        if self.weight is not None and len(self.weight) != logits.shape[1]:
            raise ValueError(f"{len(self.weight)} class weights given for logits of {logits.shape[1]} classes; expected one per class")
        return self._sum(logits, target)

    def _sum(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _counted(self, target: Tensor) -> Tensor:
        """Pixels that count: neither ``PAD_LABEL`` nor ``ignore_index``."""
        counted = target != PAD_LABEL
        return counted & (target != self.ignore_index) if self.ignore_index is not None else counted

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}" + (", weighted" if self.weight is not None else "")


class CrossEntropyLoss(SegmentationLoss):
    """Cross-entropy of the softmax, as ``torch.nn.CrossEntropyLoss`` (its mean: class-weighted
    pixels ``sum_i w_{y_i} l_i / sum_i w_{y_i}``), with ``label_smoothing`` in [0, 1) and the ignore
    and pad labels skipped."""

    def __init__(self, ignore_index: int | None = None, weight: Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__(ignore_index, weight)
        self.label_smoothing = check_float("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)

    def _sum(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        # one label to skip: the pad label itself, or the pad pixels relabelled as ignore_index
        skip = PAD_LABEL if self.ignore_index is None else self.ignore_index
        if self.ignore_index is not None:
            target = target.masked_fill(target == PAD_LABEL, skip)
        # per-pixel losses and then a sum: CUDA's reducing kernel adds with atomics and raises in deterministic mode
        per_pixel = F.cross_entropy(
            logits, target, self.weight, ignore_index=skip, reduction="none", label_smoothing=self.label_smoothing
        )
        counted = target[target != skip]
        weight = self.weight[counted].sum() if self.weight is not None else counted.numel()
        return per_pixel.sum(), torch.as_tensor(weight, dtype=per_pixel.dtype, device=per_pixel.device)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", label_smoothing={self.label_smoothing}" if self.label_smoothing else "")


class FocalLoss(SegmentationLoss):
    """Multi-class softmax focal loss (Lin et al. 2017, arXiv 1708.02002): per pixel
    ``-w_y (1 - p_y)^gamma log p_y``, averaged like weighted cross-entropy (over
    ``sum_i w_{y_i}``; the class weights play the paper's alpha). ``gamma=0`` is cross-entropy."""

    def __init__(self, ignore_index: int | None = None, weight: Tensor | None = None, gamma: float = 2.0) -> None:
        super().__init__(ignore_index, weight)
        self.gamma = check_float("gamma", gamma, 0.0)

    def _sum(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        counted = self._counted(target)
        log_p = F.log_softmax(_at_least_float32(logits), 1).gather(1, target.masked_fill(~counted, 0)[:, None])[:, 0]
        # clamped at the smallest normal float: where p_y rounds to 1, (1 - p_y)^(gamma - 1) would be
        # infinite in the gradient for gamma < 1 and turn 0 * inf into NaN
        per_pixel = -((1 - log_p.exp()).clamp(min=torch.finfo(log_p.dtype).tiny) ** self.gamma) * log_p
        pixel_weight = counted.to(log_p.dtype)
        if self.weight is not None:
            pixel_weight = pixel_weight * self.weight[target.masked_fill(~counted, 0)]
            per_pixel = per_pixel * pixel_weight
        # where, not a product with 0: an empty batch's mean divides by the tiny weight, and that huge
        # gradient times a skipped pixel's derivative can overflow, and inf * 0 is NaN
        return torch.where(counted, per_pixel, 0).sum(), pixel_weight.sum()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma={self.gamma}"


class DiceLoss(SegmentationLoss):
    """Soft Dice loss of the softmax over a batch (Milletari et al. 2016, arXiv 1606.04797, multi-class):
    per class ``1 - 2 sum_i p_ic y_ic / (sum_i p_ic + sum_i y_ic)`` over the batch's counted pixels,
    averaged over the classes present in the batch's counted labels (weighted by the class weights).

    A class absent from the labels has no Dice and is left out of the mean (as mIoU leaves out
    classes it cannot score); its predicted probability still costs through the classes present,
    whose intersection it lowers. With no counted pixel the loss is 0."""

    def _sum(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        counted = self._counted(target)
        probabilities, onehot = _probabilities_and_onehot(logits, target, counted)
        intersection = (probabilities * onehot).sum((0, 2, 3))
        labelled = onehot.sum((0, 2, 3))
        # present classes have cardinality >= labelled >= 1: clamping at 1 changes nothing for them
        dice = 2 * intersection / (probabilities.sum((0, 2, 3)) + labelled).clamp(min=1)
        return _class_mean(1 - dice, labelled > 0, self.weight, counted)


class LovaszSoftmaxLoss(SegmentationLoss):
    """Lovasz-softmax loss (Berman et al. 2018, arXiv 1705.08790): per class, the Lovasz extension of
    the Jaccard loss evaluated at the pixel errors ``m_i = |y_ic - p_ic|`` over the batch's counted
    pixels, averaged over the classes present in them (weighted by the class weights).

    With the errors sorted decreasingly, ``m_(1) >= m_(2) >= ...``, the extension is
    ``sum_k m_(k) (J(k) - J(k - 1))``, where ``J(k) = k / (G + F_k)`` is the Jaccard loss of
    predicting the first ``k`` pixels wrongly: ``G`` pixels carry the class and ``F_k`` of the first
    ``k`` do not (the union grows by those). Absent classes and an empty batch: as :class:`DiceLoss`."""

    def _sum(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        counted = self._counted(target)
        probabilities, onehot = _probabilities_and_onehot(logits, target, counted)
        probabilities = probabilities.permute(0, 2, 3, 1)[counted]  # (P, C)
        onehot = onehot.permute(0, 2, 3, 1)[counted]
        errors, order = (onehot - probabilities).abs().sort(dim=0, descending=True, stable=True)
        labelled = onehot.gather(0, order).long()  # the sorted pixels' membership of each class
        members = labelled.sum(0)
        prefix = torch.arange(1, len(labelled) + 1, device=labelled.device)[:, None]
        # counts exact in int64, the ratio in float64: float32 counts stop being exact past 2**24 pixels
        jaccard = prefix.double() / (members + (1 - labelled).cumsum(0)).double()
        steps = torch.diff(jaccard, dim=0, prepend=torch.zeros_like(jaccard[:1])).to(errors.dtype)
        # a product and a sum, not a dot product: autocast would run that in bf16
        return _class_mean((errors * steps).sum(0), members > 0, self.weight, counted)


class WeightedSum(SegmentationLoss):
    """``sum_k coefficient_k * loss_k``; each term keeps its own sum and weight (see :meth:`summed`)."""

    def __init__(self, terms: Sequence[tuple[float, SegmentationLoss]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a weighted sum needs at least one (coefficient, loss) term")
        for coefficient, loss in terms:
            check_float("coefficient", coefficient, 0.0, low_open=True)
            if not isinstance(loss, SegmentationLoss):
                raise TypeError(f"terms must hold segzoo losses (SegmentationLoss), got {type(loss).__name__}")
        self.coefficients = tuple(float(c) for c, _ in terms)
        self.losses = nn.ModuleList(loss for _, loss in terms)

    def terms(self) -> tuple[tuple[float, SegmentationLoss], ...]:
        return tuple(zip(self.coefficients, self.losses))

    def extra_repr(self) -> str:
        return f"coefficients={self.coefficients}"


#: the loss names of :func:`get_loss` specs
LOSSES: dict[str, type[SegmentationLoss]] = {
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "lovasz": LovaszSoftmaxLoss,
}

_TERM = re.compile(r"\s*(?:([^*+]+?)\s*\*\s*)?([A-Za-z_]\w*)\s*")


def parse_loss_spec(spec: str) -> tuple[tuple[float, str], ...]:
    """``"0.5*ce+dice"`` -> ``((0.5, "ce"), (1.0, "dice"))``: terms ``NAME`` or ``COEFFICIENT*NAME``
    joined by ``+``, names from :data:`LOSSES`, coefficients positive, each name at most once."""
    if not isinstance(spec, str):
        raise TypeError(f"a loss spec must be a str such as 'ce' or 'ce+dice', got {spec!r} ({type(spec).__name__})")
    expected = (
        f"expected NAME or COEFFICIENT*NAME terms joined by '+', such as 'ce+dice' or '0.5*ce+1*lovasz', "
        f"with names {', '.join(LOSSES)}"
    )
    terms = []
    for text in spec.split("+"):
        match = _TERM.fullmatch(text)
        if match is None:
            raise ValueError(f"cannot read the loss spec {spec!r} at {text.strip()!r}: {expected}")
        coefficient_text, name = match.groups()
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} in the loss spec {spec!r}; expected one of {', '.join(LOSSES)}")
        try:
            coefficient = float(coefficient_text) if coefficient_text is not None else 1.0
        except ValueError:
            raise ValueError(f"the coefficient {coefficient_text!r} of {name} in {spec!r} is not a number; {expected}") from None
        if not (math.isfinite(coefficient) and coefficient > 0):
            raise ValueError(f"the coefficient of {name} in the loss spec {spec!r} must be a positive number, got {coefficient_text}")
        if name in (n for _, n in terms):
            raise ValueError(f"{name} appears twice in the loss spec {spec!r}; give it once, with its total coefficient")
        terms.append((coefficient, name))
    return tuple(terms)


def format_loss_spec(terms: Sequence[tuple[float, str]]) -> str:
    """The spec of ``terms`` written the short way (``(1.0, "ce"), (0.5, "dice")`` -> ``"ce+0.5*dice"``)."""
    return "+".join(name if c == 1 else f"{c!r}".removesuffix(".0") + f"*{name}" for c, name in terms)


def get_loss(
    spec: str = "ce",
    *,
    ignore_index: int | None = None,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> SegmentationLoss:
    """The loss a spec names (:func:`parse_loss_spec`): a single loss for one name with coefficient 1,
    else a :class:`WeightedSum`. ``class_weights`` go to every term (each docstring says how it uses
    them); ``label_smoothing`` is cross-entropy's, so a spec without ``ce`` refuses a non-zero one."""
    terms = parse_loss_spec(spec)
    label_smoothing = check_float("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
    if label_smoothing and "ce" not in (name for _, name in terms):
        raise ValueError(f"label_smoothing={label_smoothing} smooths cross-entropy, but the loss spec {spec!r} has no ce term")
    losses = []
    for coefficient, name in terms:
        options = {"label_smoothing": label_smoothing} if name == "ce" else {}
        losses.append((coefficient, LOSSES[name](ignore_index=ignore_index, weight=class_weights, **options)))
    return losses[0][1] if len(losses) == 1 and losses[0][0] == 1 else WeightedSum(losses)


def _class_weights(weight: Tensor | None) -> Tensor | None:
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or not weight.is_floating_point() or weight.dim() != 1:
        raise TypeError(f"class weights must be a 1-D float tensor (one per class), got {weight!r}")
    if not (torch.isfinite(weight) & (weight >= 0)).all():
        raise ValueError(f"class weights must be finite and non-negative, got {weight.tolist()}")
    return weight


def _check_inputs(logits: Tensor, target: Tensor, ignore_index: int | None) -> Tensor:
    """``target`` as int64 after checking both: float (N, C, H, W) logits, integer (N, H, W) labels
    in ``[0, C)``, ``ignore_index`` or ``PAD_LABEL``."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"logits and target must be tensors, got {type(logits).__name__} and {type(target).__name__}")
    if not logits.is_floating_point() or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"expected float logits and integer labels, got logits {logits.dtype} and target {target.dtype}")
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"expected logits (N, C, H, W) and target (N, H, W) of the same N, H, W; got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    target = target.long()  # compared as int64: in uint8 an ignore label of -1 would wrap to 255
    skipped = target == PAD_LABEL
    if ignore_index is not None:
        skipped |= target == ignore_index
    bad = ((target < 0) | (target >= logits.shape[1])) & ~skipped
    if bad.any():
        values = sorted(target[bad].unique().tolist())[:10]
        allowed = f"[0, {logits.shape[1]})" + (f", ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"target holds labels {values} outside {allowed} and the pad label {PAD_LABEL}")
    return target


def _probabilities_and_onehot(logits: Tensor, target: Tensor, counted: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax probabilities and one-hot labels (N, C, H, W) in float32 or wider, zero where not counted."""
    probabilities = _at_least_float32(logits).softmax(1) * counted[:, None]
    onehot = F.one_hot(target.masked_fill(~counted, 0), logits.shape[1]).permute(0, 3, 1, 2) * counted[:, None]
    return probabilities, onehot.to(probabilities.dtype)


def _at_least_float32(logits: Tensor) -> Tensor:
    """float16 / bfloat16 logits (autocast) in float32; float32 and float64 as they are."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _class_mean(losses: Tensor, present: Tensor, weight: Tensor | None, counted: Tensor) -> tuple[Tensor, Tensor]:
    """(batch value x counted pixels, counted pixels) of the weighted mean of per-class ``losses``
    over the ``present`` classes (0 when none is present or all their weights are 0)."""
    class_weight = present.to(losses.dtype) * (weight if weight is not None else 1)
    value = (losses * class_weight).sum() / class_weight.sum().clamp(min=torch.finfo(losses.dtype).tiny)
    pixels = counted.sum().to(losses.dtype)
    return value * pixels, pixels
