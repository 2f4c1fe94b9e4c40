"""Hyper-parameters of a training run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .precision import normalize_amp

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
    # "off", "on" (= True: bf16 autocast on CPU, fp16 + gradient scaling on CUDA), "auto", "bf16",
    # "fp16": see segzoo.training.precision; bools are kept working and stored as "on" / "off"
    amp: bool | str = "off"
    accumulate_steps: int = 1
    ignore_index: int | None = None
    seed: int | None = 0
    # distributed runs only: BatchNorm statistics over all processes' batches (CUDA only: torch's
    # SyncBatchNorm has no CPU kernel); a single process has nothing to synchronise
    sync_batchnorm: bool = False
    # deterministic kernels during fit(): with a seed, reruns give bitwise identical weights
    deterministic: bool = False
    # channels_last memory format for the model and the training batches (faster convolutions on
    # CPUs with oneDNN and on tensor-core GPUs); checkpoints are unaffected
    channels_last: bool = False
    # minutes: fit() stops at an epoch boundary when the next epoch would not end in time
    time_limit_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1 or self.accumulate_steps < 1:
            raise ValueError(f"epochs and accumulate_steps must be >= 1, got {self.epochs}, {self.accumulate_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        self.amp = normalize_amp(self.amp)
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise ValueError(f"time_limit_minutes must be positive (or None), got {self.time_limit_minutes}")
        if self.deterministic and self.seed is None:
            raise ValueError("deterministic training needs a seed, got seed=None")
