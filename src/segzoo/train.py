"""Fine-tuning any segzoo model: one small trainer, no framework.

``Trainer(model, train_loader, val_loader, ...).fit()`` trains with AdamW or SGD, a poly / cosine /
constant LR schedule, optional mixed precision, gradient accumulation, a frozen encoder or a
smaller encoder LR, evaluates every epoch with :class:`~segzoo.metrics.ConfusionMatrix`, keeps
``last.pt`` and ``best.pt`` (by validation mIoU) in ``out_dir``, and resumes exactly from
``last.pt``.

Under ``torchrun`` (or any initialised ``torch.distributed`` process group) the same trainer runs
data-parallel: DistributedDataParallel, rank 0 alone writes files and shows progress, and
validation scores are those of the whole validation set (see :mod:`segzoo.distributed`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed
from .base import SegmentationModel
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import ShardSampler
from .boundary import BoundaryF1
from .metrics import CalibrationError, ConfusionMatrix, SegmentationScores

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("poly", "cosine", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of a fine-tuning run (all plain values, saved in every checkpoint)."""

    epochs: int = 10
    lr: float = 1e-3
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    encoder_lr_scale: float = 1.0  # encoder LR = lr * encoder_lr_scale (differential fine-tuning)
    freeze_encoder: bool = False
    amp: bool = False  # bf16 autocast on CPU, fp16 + gradient scaling on CUDA
    accumulate_steps: int = 1
    ignore_index: int | None = None
    seed: int | None = 0
    # distributed runs only: BatchNorm statistics over all processes' batches (CUDA only: torch's
    # SyncBatchNorm has no CPU kernel); a single process has nothing to synchronise
    sync_batchnorm: bool = False
    # deterministic kernels during fit(): with a seed, reruns give bitwise identical weights
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.accumulate_steps < 1:
            raise ValueError(f"epochs and accumulate_steps must be >= 1, got {self.epochs}, {self.accumulate_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.deterministic and self.seed is None:
            raise ValueError("deterministic training needs a seed, got seed=None")


@dataclass
class History:
    """One dict per finished epoch: losses, validation scores, LR and seconds."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_mean_iou: float = -math.inf


class Trainer:
    """Fine-tunes ``model`` on ``train_loader`` batches of (images float (N,3,H,W), masks int64 (N,H,W)).

    ``class_weights`` go to the cross-entropy loss (e.g. :func:`segzoo.median_frequency_weights`).
    With ``out_dir``, ``last.pt`` is written after every epoch and ``best.pt`` whenever validation
    mIoU improves; :meth:`resume` continues a run from ``last.pt`` exactly where it stopped.
    ``metadata`` (plain values, e.g. class names and normalisation) is stored in every checkpoint.

    Launched by ``torchrun``, the trainer joins the process group (:func:`segzoo.distributed.setup`;
    ``device=None`` then means this process's own GPU, or the CPU) and trains the model wrapped in
    DistributedDataParallel; ``self.model`` stays the plain module, so checkpoints have the same
    keys as in a single process. Give it loaders from ``make_loader(..., distributed=True)``: every
    process must take the same number of training steps, and a validation loader sharded with
    :class:`~segzoo.distributed.ShardSampler` gives whole-set scores on every process. Only rank 0
    writes checkpoints, logs and shows progress bars. A checkpoint resumes under any world size.
    """

    def __init__(
        self,
        model: SegmentationModel,
        train_loader: Iterable[tuple[Tensor, Tensor]],
        val_loader: Iterable[tuple[Tensor, Tensor]] | None = None,
        config: TrainConfig | None = None,
        class_weights: Tensor | None = None,
        device: str | torch.device | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        if self.config.deterministic and getattr(model, "unpooling", None) == "native":
            raise ValueError(
                "deterministic training needs unpooling='compact': torch has no deterministic max_unpool2d kernel"
            )
        self.device = distributed.setup(device)
        self.model = model.to(self.device)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.metadata = metadata or {}
        if self.config.seed is not None:
            # per-process streams, so that processes draw different augmentations and dropout;
            # the weights are rank 0's everywhere anyway (DDP broadcasts them when it wraps)
            torch.manual_seed(self.config.seed + distributed.rank())
        model.freeze_encoder(self.config.freeze_encoder)
        self._network = self._wrap(model)  # after freezing: DDP expects gradients for what requires them now
        weight = class_weights.to(self.device) if class_weights is not None else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=_ignore(self.config.ignore_index))
        self.optimizer = self._build_optimizer()
        batches = len(train_loader)  # type: ignore[arg-type]
        distributed.check_equal(batches, "the number of training batches (use make_loader(..., distributed=True))", self.device)
        # depends on the world size and batch size, so resume() recomputes the step from the epoch
        self.steps_per_epoch = math.ceil(batches / self.config.accumulate_steps)
        self.scheduler = self._build_scheduler(step=0)
        amp_fp16 = self.config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_fp16)
        self.history = History()
        self.epoch = 0  # epochs finished

    def _wrap(self, model: SegmentationModel) -> nn.Module:
        """The module training runs through: DDP around ``model`` under a process group."""
        if not distributed.is_active():
            return model
        if self.config.sync_batchnorm:
            if self.device.type != "cuda":
                raise ValueError(
                    f"sync_batchnorm needs CUDA devices (torch {torch.__version__}'s SyncBatchNorm has no CPU kernel), "
                    f"got device {self.device}; drop sync_batchnorm / --sync-bn"
                )
            # replaces the BatchNorm modules inside ``model`` in place, reusing their parameters
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        encoder_ids = {id(p) for p in self.model.encoder.parameters()}
        encoder = [p for p in self.model.encoder.parameters() if p.requires_grad]
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in encoder_ids]
        groups = [{"params": rest, "lr": self.config.lr}]
        if encoder:
            groups.append({"params": encoder, "lr": self.config.lr * self.config.encoder_lr_scale})
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.config.lr, momentum=self.config.momentum, weight_decay=self.config.weight_decay)
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _build_scheduler(self, step: int) -> torch.optim.lr_scheduler.LambdaLR:
        """The LR schedule positioned after ``step`` optimizer steps."""
        schedule = _Schedule(self.config.schedule, self.steps_per_epoch * self.config.epochs)
        # LambdaLR takes one step on construction, from last_epoch to last_epoch + 1
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule, last_epoch=step - 1)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=_amp_dtype(self.device)) if self.config.amp else nullcontext()

    @property
    def _show_progress(self) -> bool:
        return self.progress and distributed.is_main()

    def fit(self) -> list[dict[str, float]]:
        """Train the remaining epochs; returns the history (one dict per epoch).

        With ``config.deterministic``, ``torch.use_deterministic_algorithms(True)`` and
        ``cudnn.benchmark = False`` hold during the call and the previous settings come back after.
        """
        with _deterministic_algorithms(self.config.deterministic):
            while self.epoch < self.config.epochs:
                self._fit_epoch()
        distributed.barrier()  # when fit returns, rank 0's checkpoints are on disk for every process
        return self.history.epochs

    def _fit_epoch(self) -> None:
        started = time.perf_counter()
        record: dict[str, float] = {"epoch": self.epoch + 1, "train_loss": self._train_epoch()}
        # every process then evaluates (and rank 0 saves) the same model: rank 0's
        distributed.broadcast_buffers(self.model)
        if self.val_loader is not None:
            val_loss, scores = self.evaluate(self.val_loader)
            record.update(val_loss=val_loss, **scores.summary())
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["seconds"] = time.perf_counter() - started
        self.epoch += 1
        self.history.epochs.append(record)
        improved = record.get("mean_iou", -math.inf) > self.history.best_mean_iou
        if improved:
            self.history.best_mean_iou = record["mean_iou"]
        if not distributed.is_main():
            return
        logger.info("epoch %d/%d %s", self.epoch, self.config.epochs, _format(record))
        if self.out_dir is not None:
            self.save(self.out_dir / "last.pt")
            if improved:
                self.save(self.out_dir / "best.pt")

    def _train_epoch(self) -> float:
        self._network.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # DistributedSampler: a new shuffle every epoch
        total, batches = 0.0, 0
        accumulate = self.config.accumulate_steps
        bar = _progress(self.train_loader, self._show_progress, f"epoch {self.epoch + 1}/{self.config.epochs}")
        self.optimizer.zero_grad(set_to_none=True)
        for index, (images, masks) in enumerate(bar):
            images, masks = images.to(self.device), masks.to(self.device)
            last_of_group = (index + 1) % accumulate == 0 or index + 1 == len(self.train_loader)  # type: ignore[arg-type]
            # DDP would all-reduce the gradients of every backward; only the group's last one counts
            no_sync = isinstance(self._network, DistributedDataParallel) and not last_of_group
            with self._network.no_sync() if no_sync else nullcontext():  # type: ignore[operator]
                with self._autocast():
                    loss_sum, weight = _summed_loss(self.criterion, self._network(images), masks)
                    loss = loss_sum / weight  # = self.criterion(logits, masks), also on CUDA in deterministic mode
                self.scaler.scale(loss / accumulate).backward()
            if last_of_group:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
            total += loss.item()
            batches += 1
            if hasattr(bar, "set_postfix"):
                last = self.history.epochs[-1].get("mean_iou") if self.history.epochs else None
                bar.set_postfix(loss=f"{total / batches:.4f}", **({"val_mIoU": f"{last:.3f}"} if last is not None else {}))
        total, batches = distributed.all_reduce_sum([total, batches], self.device)
        return total / max(batches, 1)

    def evaluate(self, loader: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, SegmentationScores]:
        """Mean loss and scores of the model on ``loader`` (eval mode; see :func:`evaluate`)."""
        return evaluate(self.model, loader, self.config.ignore_index, self.criterion, self.config.amp, self._show_progress)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a resumable checkpoint (model, optimizer, schedule, scaler, history, RNG state)."""
        return save_checkpoint(
            path,
            self.model,
            epoch=self.epoch,
            train_config=asdict(self.config),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            history=self.history.epochs,
            best_mean_iou=self.history.best_mean_iou,
            metrics=self.history.epochs[-1] if self.history.epochs else {},
            rng_state=torch.get_rng_state(),
            metadata=self.metadata,
        )

    def resume(self, path: str | os.PathLike) -> None:
        """Restore everything :meth:`save` wrote, so :meth:`fit` continues as if never stopped.

        The checkpoint may come from a run with another number of processes (or batch size): the
        LR schedule continues from the epoch reached, at this run's steps per epoch.
        """
        distributed.barrier()  # no process reads before rank 0 has finished writing
        checkpoint = load_checkpoint(path, map_location=self.device)
        if checkpoint["model"]["config"] != self.model.config:
            raise ValueError(
                f"{path} holds a {checkpoint['model']['name']} with config {checkpoint['model']['config']}, "
                f"but this trainer's model has config {self.model.config}"
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch = checkpoint["epoch"]
        # the saved scheduler counted steps at the saving run's steps per epoch, which depend on its
        # world size: rebuilding from the epoch is the same step when nothing changed, right otherwise
        self.scheduler = self._build_scheduler(step=self.epoch * self.steps_per_epoch)
        self.history = History(list(checkpoint["history"]), checkpoint["best_mean_iou"])
        torch.set_rng_state(checkpoint["rng_state"].cpu())  # rank 0's stream
        if distributed.rank() > 0:
            # a distinct stream per process again, reproducible from the checkpoint
            torch.manual_seed(int(torch.randint(2**62, ())) + distributed.rank())


@torch.no_grad()
def evaluate(
    model: SegmentationModel,
    loader: Iterable[tuple[Tensor, Tensor]],
    ignore_index: int | None = None,
    criterion: nn.CrossEntropyLoss | None = None,
    amp: bool = False,
    progress: bool = False,
    detailed: bool = False,
) -> tuple[float, SegmentationScores]:
    """Run ``model`` (eval mode, on its own device) over (images, masks) batches: the mean of
    ``criterion`` (cross-entropy by default) and the confusion-matrix scores; with ``detailed``,
    also the boundary F1 score (per class too) and the expected calibration error.

    The loss is averaged over all counted pixels (weighted by the criterion's class weights), as
    if the whole loader were one batch, so it does not depend on how the data is batched or
    sharded. When ``loader`` samples with a :class:`~segzoo.distributed.ShardSampler`, each process
    evaluates its shard and the loss and confusion matrix are summed over processes: every process
    returns the scores of the whole dataset.
    """
    if criterion is not None and not isinstance(criterion, nn.CrossEntropyLoss):
        raise TypeError(f"criterion must be an nn.CrossEntropyLoss (its sum is averaged per pixel), got {type(criterion).__name__}")
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        raise ValueError(
            "evaluation needs every item exactly once, but DistributedSampler pads or drops items; "
            "shard with segzoo.distributed.ShardSampler (make_loader(..., shuffle=False, distributed=True))"
        )
    model.eval()
    device = next(model.parameters()).device
    criterion = criterion or nn.CrossEntropyLoss(ignore_index=_ignore(ignore_index))
    matrix = ConfusionMatrix(model.num_classes, ignore_index, device=device)
    boundary = BoundaryF1(model.num_classes, ignore_index, device=device) if detailed else None
    calibration = CalibrationError(ignore_index=ignore_index, device=device) if detailed else None
    autocast = torch.autocast(device.type, dtype=_amp_dtype(device)) if amp else nullcontext()
    total = torch.zeros((), dtype=torch.float64, device=device)
    weight = torch.zeros((), dtype=torch.float64, device=device)
    bar = _progress(loader, progress, "evaluate")
    for images, masks in bar:
        images, masks = images.to(device), masks.to(device)
        with autocast:
            logits = model(images)
        batch_total, batch_weight = _summed_loss(criterion, logits.float(), masks)
        total += batch_total.double()
        weight += batch_weight
        matrix.update(logits, masks)
        if boundary is not None and calibration is not None:
            boundary.update(logits, masks)
            calibration.update(logits.float().softmax(1), masks)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{float(total / weight):.4f}", mIoU=f"{matrix.compute().mean_iou:.3f}")
    if isinstance(sampler, ShardSampler):
        for accumulator in (matrix, boundary, calibration):
            if accumulator is not None:
                accumulator.all_reduce()
        total, weight = distributed.all_reduce_sum([float(total), float(weight)], device)
    scores = matrix.compute()
    if boundary is not None and calibration is not None:
        boundaries = boundary.compute()
        scores = replace(scores, bf_score=boundaries.bf_score, per_class_bf=boundaries.per_class, ece=calibration.compute())
    return float(total / weight) if weight > 0 else math.nan, scores


def _summed_loss(criterion: nn.CrossEntropyLoss, logits: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """The criterion's loss summed over pixels, and the weight its mean divides that sum by, so
    that batches and processes combine exactly. Per-pixel losses and then a sum, because CUDA's
    reducing cross-entropy kernel adds with atomics and raises in deterministic mode."""
    per_pixel = F.cross_entropy(
        logits, masks, criterion.weight, ignore_index=criterion.ignore_index, reduction="none", label_smoothing=criterion.label_smoothing
    )
    counted = masks[masks != criterion.ignore_index]
    weight = criterion.weight[counted].sum() if criterion.weight is not None else counted.numel()
    return per_pixel.sum(), torch.as_tensor(weight, dtype=per_pixel.dtype, device=per_pixel.device)


@contextmanager
def _deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Deterministic kernels and no cuDNN autotuning (which may pick other kernels on each run)
    inside the block; the process-wide flags are restored afterwards, even on error."""
    if not enabled:
        yield
        return
    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = benchmark


def _amp_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


class _Schedule:
    """LR multiplier per optimizer step; a class (not a lambda) so LambdaLR can save its state."""

    def __init__(self, kind: str, total_steps: int) -> None:
        self.kind, self.total_steps = kind, max(total_steps, 1)

    def __call__(self, step: int) -> float:
        progress = min(step / self.total_steps, 1.0)
        if self.kind == "poly":  # FCN / DeepLab "poly" policy, power 0.9
            return (1 - progress) ** 0.9
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0


def _ignore(ignore_index: int | None) -> int:
    return -100 if ignore_index is None else ignore_index  # -100: CrossEntropyLoss's "none"


def _progress(iterable: Iterable, enabled: bool, description: str) -> Iterable:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm  # renders as a widget in notebooks, as text in a terminal

    return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)


def _format(record: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "epoch")


def make_loader(
    dataset: Any, batch_size: int, shuffle: bool, num_workers: int = 0, distributed: bool = False, seed: int = 0
) -> DataLoader:
    """A DataLoader with the settings the trainer expects: ``shuffle=True`` for training (drops
    the last partial batch, so BatchNorm never sees a batch of one), ``False`` for evaluation.

    With ``distributed``, this process gets its share of ``dataset`` under the default process
    group and ``batch_size`` is per process. Training: a ``DistributedSampler`` shuffled from
    ``seed`` and the epoch, dropping the remainder so that every process takes the same number of
    steps. Evaluation: a :class:`~segzoo.distributed.ShardSampler`, every item exactly once.

    Shuffling otherwise, and workers' seeds always, come from the global torch RNG, which the
    trainer seeds and checkpoints; torch seeds ``random``, ``numpy`` and torch in each worker.
    """
    if not distributed:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=shuffle)
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True) if shuffle else ShardSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=shuffle)
