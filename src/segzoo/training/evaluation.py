"""Scoring a model: over a loader (the one evaluation loop, used by the trainer too), over a
dataset with pictures of its predictions, and a saved checkpoint on a dataset split."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from .. import viz
from .._checks import check_device
from ..data import ColourTable, LabelMap, denormalize, eval_transforms
from ..inference.pipeline import InferenceOptions, log_probabilities
from ..io.atomic import check_writable_folder
from ..io.checkpoint import load_run
from ..io.run_description import RunDescription
from ..losses import CrossEntropyLoss, SegmentationLoss
from ..metrics import SegmentationMetrics, SegmentationScores, upsample_logits
from ..models.base import SegmentationModel
from . import distributed
from .distributed import ShardSampler
from .loaders import make_loader
from .precision import autocast_dtype

logger = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    model: SegmentationModel,
    loader: Iterable[tuple[Tensor, Tensor]],
    ignore_index: int | None = None,
    criterion: SegmentationLoss | nn.CrossEntropyLoss | None = None,
    amp: bool | str | torch.dtype = False,
    progress: bool = False,
    detailed: bool = False,
    options: InferenceOptions | None = None,
) -> tuple[float, SegmentationScores]:
    """Run ``model`` (eval mode, on its own device) over (images, masks) batches: the mean of
    ``criterion`` (a :mod:`segzoo.losses` loss, or a ``torch.nn.CrossEntropyLoss``, which is read
    as segzoo's; cross-entropy by default) and the confusion-matrix scores; with ``detailed``,
    also the boundary F1 score (per class too) and the expected calibration error.

    Every score is counted against each label at its own resolution, as the papers do: when the
    model sees images resized to a smaller ``eval_size`` (:func:`~segzoo.data.eval_transforms`
    keeps the masks as they are), its logits are upsampled bilinearly (``align_corners=False``) to
    the label's size (:func:`~segzoo.metrics.upsample_logits`) before the confusion matrix, loss,
    BF and ECE see them. Batches may list images and masks of different sizes
    (:func:`~segzoo.training.loaders.collate_pairs`, which evaluation loaders from
    :func:`make_loader` use): each item is then run and scored on its own.

    Cross-entropy and focal loss are averaged over all counted pixels (weighted by the criterion's
    class weights), as if the whole loader were one batch, so they do not depend on how the data is
    batched or sharded; Dice and Lovasz, set losses, average their batch values weighted by each
    batch's counted pixels (see :mod:`segzoo.losses`). When ``loader`` samples with a
    :class:`~segzoo.training.distributed.ShardSampler`, each process evaluates its shard and the
    loss and confusion matrix are summed over processes: every process returns the scores of the
    whole dataset.

    ``amp``: a mode of :mod:`segzoo.training.precision` (``True`` is ``"on"``) or an autocast dtype.
    ``options`` (:class:`~segzoo.inference.InferenceOptions`): test-time augmentation, tiles or
    Monte Carlo dropout in place of the plain forward pass; their class log-probabilities stand in
    for the logits (the loss is then the negative log-likelihood of the combined prediction).
    """
    criterion = _segzoo_loss(criterion, ignore_index)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        raise ValueError(
            "evaluation needs every item exactly once, but DistributedSampler pads or drops items; "
            "shard with segzoo.training.distributed.ShardSampler (make_loader(..., shuffle=False, distributed=True))"
        )
    model.eval()
    device = next(model.parameters()).device
    metrics = SegmentationMetrics(model.num_classes, ignore_index, boundary=detailed, calibration=detailed, device=device)
    dtype = amp if isinstance(amp, torch.dtype) else autocast_dtype(amp, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    terms = len(criterion.terms())
    total = torch.zeros(terms, dtype=torch.float64, device=device)
    weight = torch.zeros(terms, dtype=torch.float64, device=device)
    bar = progress_bar(loader, progress, "evaluate")
    forward = model if options is None or options.plain else partial(log_probabilities, model, options=options)
    for images, masks in bar:
        for logits, labels in _logits_at_label_size(forward, images, masks, autocast, device):
            batch_total, batch_weight = criterion.summed(logits, labels)
            total += batch_total.double()
            weight += batch_weight
            metrics.update(logits, labels)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{_mean_loss(criterion, total, weight):.4f}", mIoU=f"{metrics.confusion.compute().mean_iou:.3f}")
    if isinstance(sampler, ShardSampler):
        metrics.all_reduce()
        summed = distributed.all_reduce_sum([*total.tolist(), *weight.tolist()], device)
        total, weight = (torch.tensor(part, dtype=torch.float64) for part in (summed[:terms], summed[terms:]))
    scores = metrics.compute()
    return _mean_loss(criterion, total, weight), scores


def _segzoo_loss(criterion: Any, ignore_index: int | None) -> SegmentationLoss:
    """``criterion`` as a segzoo loss: cross-entropy skipping ``ignore_index`` when None, a
    ``torch.nn.CrossEntropyLoss`` as segzoo's with its settings (ignore_index -100 being its "none")."""
    if criterion is None:
        return CrossEntropyLoss(ignore_index)
    if isinstance(criterion, SegmentationLoss):
        return criterion
    if isinstance(criterion, nn.CrossEntropyLoss):
        ignore = None if criterion.ignore_index == -100 else criterion.ignore_index
        return CrossEntropyLoss(ignore, criterion.weight, criterion.label_smoothing)
    raise TypeError(f"criterion must be a segzoo loss (segzoo.losses) or an nn.CrossEntropyLoss, got {type(criterion).__name__}")


def _mean_loss(criterion: SegmentationLoss, total: Tensor, weight: Tensor) -> float:
    """The loss of everything summed so far; NaN while a term has counted nothing."""
    return float(criterion.mean(total, weight)) if bool((weight > 0).all()) else math.nan


def _logits_at_label_size(
    model: Callable[[Tensor], Tensor],
    images: Tensor | list[Tensor],
    masks: Tensor | list[Tensor],
    autocast: Any,
    device: torch.device,
) -> Iterator[tuple[Tensor, Tensor]]:
    """The model's float logits for a batch, each upsampled to its label's size
    (:func:`~segzoo.metrics.upsample_logits`), with those labels: one pair for a stacked batch,
    one per item where :func:`~segzoo.training.loaders.collate_pairs` left a list (mixed sizes)."""
    if isinstance(images, Tensor):
        with autocast:
            outputs = model(images.to(device))
        if isinstance(masks, Tensor):
            yield upsample_logits(outputs.float(), masks.shape[-2:]), masks.to(device)
            return
        per_item = [outputs[i : i + 1] for i in range(len(outputs))]
    else:
        per_item = []
        for image in images:
            with autocast:
                per_item.append(model(image.to(device)[None]))
    for logits, target in zip(per_item, masks, strict=True):
        yield upsample_logits(logits.float(), target.shape[-2:]), target.to(device)[None]


def progress_bar(iterable: Iterable, enabled: bool, description: str) -> Iterable:
    """``iterable`` itself, or with ``enabled`` and a display that redraws (:func:`interactive`) a
    :class:`ProgressBar` over it. Under a pipe or in a log file a bar would be thousands of
    carriage-return updates; the trainer prints one line per epoch there instead."""
    return ProgressBar(iterable, description) if enabled and interactive() else iterable


def interactive() -> bool:
    """Whether progress bars can redraw in place: stderr is a terminal, or a notebook kernel runs us."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class ProgressBar:
    """A tqdm bar (a widget in notebooks, text in a terminal) that iterates ``iterable`` exactly
    once, when it is iterated itself, and shows ``set_postfix`` values.

    ``tqdm.auto.tqdm(loader)`` starts an iteration of the loader in its constructor and throws it
    away: for a DataLoader that draws a seed from the global RNG (so the shuffle, augmentations and
    dropout, hence the trained weights, depended on whether the bar was shown) and starts and stops
    its worker processes. This bar is given only the length.
    """

    def __init__(self, iterable: Iterable, description: str) -> None:
        from tqdm.auto import tqdm

        self.iterable = iterable
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
        self.bar = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True)

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable:
                yield item
                self.bar.update()
        finally:
            self.bar.close()

    def set_postfix(self, **values: Any) -> None:
        self.bar.set_postfix(**values)


@torch.no_grad()
def evaluate_dataset(
    model: SegmentationModel,
    dataset: Any,
    run: RunDescription,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    options: InferenceOptions | None = None,
) -> tuple[SegmentationScores, dict[str, Path]]:
    """Scores of ``model`` on a transformed ``dataset`` (BF and ECE included); with ``out_dir``, also
    a prediction grid of its first images (``predictions.png``, in ``run``'s colours) and, with
    matplotlib, ``confusion_matrix.png``. ``options``: test-time augmentation, tiles or MC dropout
    (see :func:`evaluate`)."""
    model.to(device or next(model.parameters()).device)
    _, scores = evaluate(model, make_loader(dataset, batch_size, shuffle=False), run.ignore_index, detailed=True, options=options)
    files: dict[str, Path] = {}
    if out_dir is not None:
        pictures, masks, predictions = drawn_samples(model, dataset, run)
        files["predictions"] = viz.prediction_grid(
            pictures, masks, predictions, run.palette, Path(out_dir) / "predictions.png", ignore_index=run.ignore_index
        )
        try:
            files["confusion_matrix"] = viz.plot_confusion_matrix(
                scores.confusion, Path(out_dir) / "confusion_matrix.png", class_names=list(run.class_names)
            )
        except ImportError:
            logger.info("matplotlib not installed: skipping confusion_matrix.png")
    return scores, files


def drawn_samples(model: SegmentationModel, dataset: Any, run: RunDescription, count: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``count`` leading items of the first item's label size, for the prediction grid: uint8
    pictures, labels and predictions, all at the label resolution (logits upsampled as when scored)."""
    device = next(model.parameters()).device
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    items = [item for item in items if item[1].shape == items[0][1].shape]
    pictures, predictions = [], []
    for image, mask in items:
        logits = upsample_logits(model(image.to(device)[None]).float(), mask.shape)
        predictions.append(logits.argmax(1)[0].cpu())
        picture = image[None] if image.shape[-2:] == mask.shape else F.interpolate(image[None], size=tuple(mask.shape), mode="bilinear")
        pictures.append(denormalize(picture, run.mean, run.std)[0])
    return torch.stack(pictures), torch.stack([mask for _, mask in items]), torch.stack(predictions)


def _optimized(
    model: SegmentationModel, fast: str, dataset: Any, run: RunDescription, device: str | None,
    calibration: str | os.PathLike | None, options: InferenceOptions | None, eager: bool,
) -> nn.Module:
    """``model`` on ``device``, optimized to ``fast``; int8 calibrated on ``calibration``'s images or
    a few from across the split."""
    from ..inference.calibration import calibration_batches, calibration_files, spread
    from ..inference.optimize import fast_compiled, fast_dtype, optimize, refuse_mc_dropout

    refuse_mc_dropout(options.mc_samples if options is not None else None)
    model.to(device or "cpu")
    dtype, batches = fast_dtype(fast, device or "cpu"), None
    if dtype == "int8":
        if calibration is not None:
            batches = calibration_batches(calibration_files(calibration), model, run.data.eval_size)
        else:
            on = next(model.parameters()).device
            batches = [image[None].to(on) for image, _ in spread(dataset)]
    return optimize(model, dtype, calibration=batches, compiled=fast_compiled(fast, model, device or "cpu", eager))


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike,
    layout: str,
    split: str = "val",
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | None = None,
    options: InferenceOptions | None = None,
    fast: str | None = None,
    calibration: str | os.PathLike | None = None,
    label_map: LabelMap | None = None,
    colour_table: ColourTable | None = None,
    eager: bool = False,
) -> tuple[SegmentationScores, RunDescription, dict[str, Path]]:
    """Score a checkpoint on a dataset split (resized as it was trained, if it was); returns the
    scores, the checkpoint's run description and the pictures written to ``out_dir``. ``options``:
    test-time augmentation, tiles or MC dropout (see :func:`evaluate`). ``fast`` (``"auto"``,
    ``"fp32"``, ``"bf16"``, ``"int8"``) scores :func:`segzoo.optimize`'s compiled model instead; int8 calibrates
    on images spread over the ``calibration`` folder, by default over the split;
    ``eager`` runs the fused model without compiling it (``optimize(..., compiled=False)``).
    Folder-layout masks are read with ``label_map`` / ``colour_table`` when given, else as the run
    that trained the checkpoint read them (its stored label map or colour table)."""
    from ..data import layout_classes, open_split

    if out_dir is not None:
        check_writable_folder(out_dir, "output folder (--out)")
    if device is not None:
        device = check_device(device, "device (--device)")
    model, run = load_run(checkpoint)
    encoding = {"label_map": label_map, "colour_table": colour_table}
    if layout == "folder" and label_map is None and colour_table is None:
        encoding = {"label_map": run.label_map, "colour_table": run.colour_table}
    try:
        layout_classes(layout, model.num_classes, run.ignore_index, **encoding)
    except ValueError as error:
        raise ValueError(
            f"{checkpoint} ({model.num_classes} classes, ignore label {run.ignore_index}) cannot be scored on the {layout} layout: {error}"
        ) from None
    dataset = open_split(root, layout, split, model.num_classes, run.ignore_index, **encoding)
    if run.ignore_index is None and dataset.ignore_index is not None:
        run = replace(run, ignore_index=dataset.ignore_index)
    dataset.transforms = eval_transforms(run.mean, run.std, run.data.eval_size)
    if fast is not None:
        model = _optimized(model, fast, dataset, run, device, calibration, options, eager)
    scores, files = evaluate_dataset(model, dataset, run, out_dir, batch_size, device=device, options=options)
    return scores, run, files
