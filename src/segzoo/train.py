"""Fine-tuning any segzoo model: one small trainer, no framework.

``Trainer(model, train_loader, val_loader, ...).fit()`` trains with AdamW or SGD, a poly / cosine /
constant LR schedule, optional mixed precision, gradient accumulation, a frozen encoder or a
smaller encoder LR, evaluates every epoch with :class:`~segzoo.metrics.ConfusionMatrix`, keeps
``last.pt`` and ``best.pt`` (by validation mIoU) in ``out_dir``, and resumes exactly from
``last.pt``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .base import SegmentationModel
from .checkpoint import load_checkpoint, save_checkpoint
from .metrics import ConfusionMatrix, SegmentationScores

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

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.accumulate_steps < 1:
            raise ValueError(f"epochs and accumulate_steps must be >= 1, got {self.epochs}, {self.accumulate_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


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
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.metadata = metadata or {}
        if self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        model.freeze_encoder(self.config.freeze_encoder)
        weight = class_weights.to(self.device) if class_weights is not None else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=_ignore(self.config.ignore_index))
        self.optimizer = self._build_optimizer()
        self.steps_per_epoch = math.ceil(len(train_loader) / self.config.accumulate_steps)  # type: ignore[arg-type]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _Schedule(self.config.schedule, self.steps_per_epoch * self.config.epochs))
        amp_fp16 = self.config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp_fp16)
        self.history = History()
        self.epoch = 0  # epochs finished

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

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=_amp_dtype(self.device)) if self.config.amp else nullcontext()

    def fit(self) -> list[dict[str, float]]:
        """Train the remaining epochs; returns the history (one dict per epoch)."""
        while self.epoch < self.config.epochs:
            started = time.perf_counter()
            record: dict[str, float] = {"epoch": self.epoch + 1, "train_loss": self._train_epoch()}
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
            logger.info("epoch %d/%d %s", self.epoch, self.config.epochs, _format(record))
            if self.out_dir is not None:
                self.save(self.out_dir / "last.pt")
                if improved:
                    self.save(self.out_dir / "best.pt")
        return self.history.epochs

    def _train_epoch(self) -> float:
        self.model.train()
        total, batches = 0.0, 0
        accumulate = self.config.accumulate_steps
        bar = _progress(self.train_loader, self.progress, f"epoch {self.epoch + 1}/{self.config.epochs}")
        self.optimizer.zero_grad(set_to_none=True)
        for index, (images, masks) in enumerate(bar):
            images, masks = images.to(self.device), masks.to(self.device)
            with self._autocast():
                loss = self.criterion(self.model(images), masks)
            self.scaler.scale(loss / accumulate).backward()
            last_of_group = (index + 1) % accumulate == 0 or index + 1 == len(self.train_loader)  # type: ignore[arg-type]
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
        return total / max(batches, 1)

    def evaluate(self, loader: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, SegmentationScores]:
        """Mean loss and scores of the model on ``loader`` (eval mode)."""
        return evaluate(self.model, loader, self.config.ignore_index, self.criterion, self.config.amp, self.progress)

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
        """Restore everything :meth:`save` wrote, so :meth:`fit` continues as if never stopped."""
        checkpoint = load_checkpoint(path, map_location=self.device)
        if checkpoint["model"]["config"] != self.model.config:
            raise ValueError(
                f"{path} holds a {checkpoint['model']['name']} with config {checkpoint['model']['config']}, "
                f"but this trainer's model has config {self.model.config}"
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch = checkpoint["epoch"]
        self.history = History(list(checkpoint["history"]), checkpoint["best_mean_iou"])
        torch.set_rng_state(checkpoint["rng_state"].cpu())


@torch.no_grad()
def evaluate(
    model: SegmentationModel,
    loader: Iterable[tuple[Tensor, Tensor]],
    ignore_index: int | None = None,
    criterion: nn.Module | None = None,
    amp: bool = False,
    progress: bool = False,
) -> tuple[float, SegmentationScores]:
    """Run ``model`` (eval mode, on its own device) over (images, masks) batches: the mean of
    ``criterion`` (cross-entropy by default) and the confusion-matrix scores."""
    model.eval()
    device = next(model.parameters()).device
    criterion = criterion or nn.CrossEntropyLoss(ignore_index=_ignore(ignore_index))
    matrix = ConfusionMatrix(model.num_classes, ignore_index, device=device)
    autocast = torch.autocast(device.type, dtype=_amp_dtype(device)) if amp else nullcontext()
    total, batches = 0.0, 0
    bar = _progress(loader, progress, "evaluate")
    for images, masks in bar:
        images, masks = images.to(device), masks.to(device)
        with autocast:
            logits = model(images)
        total += criterion(logits.float(), masks).item()
        batches += 1
        matrix.update(logits, masks)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / batches:.4f}", mIoU=f"{matrix.compute().mean_iou:.3f}")
    return total / max(batches, 1), matrix.compute()


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


def make_loader(dataset: Any, batch_size: int, shuffle: bool, num_workers: int = 0) -> DataLoader:
    """A DataLoader with the settings the trainer expects (drop the last partial training batch,
    so BatchNorm never sees a batch of one)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=shuffle)
