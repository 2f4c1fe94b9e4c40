"""Hyper-parameters of a training run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._checks import check_bool, check_choice, check_float, check_int, check_optional_int
from ..losses import format_loss_spec, get_loss, parse_loss_spec
from .memory_format import ChannelsLast, check_channels_last
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
    # the loss, a segzoo.losses.get_loss spec: "ce", "dice", "focal", "lovasz" or a weighted sum
    # such as "ce+dice" or "0.5*ce+lovasz"; stored in its short form
    loss: str = "ce"
    # cross-entropy's label smoothing, in [0, 1) (needs a ce term)
    label_smoothing: float = 0.0
    ignore_index: int | None = None
    seed: int | None = 0
    # distributed runs only: BatchNorm statistics over all processes' batches (CUDA only: torch's
    # SyncBatchNorm has no CPU kernel); a single process has nothing to synchronise
    sync_batchnorm: bool = False
    # deterministic kernels during fit(): with a seed, reruns give bitwise identical weights
    deterministic: bool = False
    # channels_last memory format for the model and the training batches: True, False or "auto"
    # (where it trains faster: GPUs, autocast, float32 on AVX-512 CPUs; see
    # segzoo.training.memory_format); checkpoints are unaffected
    channels_last: ChannelsLast = False
    # minutes: fit() stops at an epoch boundary when the next epoch would not end in time
    time_limit_minutes: float | None = None
    # early stopping: stop once validation mIoU has not improved for this many epochs
    patience: int | None = None
    # validate after every val_every-th epoch and after the last one (mmsegmentation's val_interval):
    # the others only train, so best.pt and early stopping see the validated epochs
    val_every: int = 1

    def __post_init__(self) -> None:
        """Check every field's type and range (``TypeError`` / ``ValueError`` naming it)."""
        self.epochs = check_int("epochs", self.epochs, 1)
        self.accumulate_steps = check_int("accumulate_steps", self.accumulate_steps, 1)
        self.lr = check_float("lr", self.lr, 0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", self.weight_decay, 0.0)
        self.momentum = check_float("momentum", self.momentum, 0.0)
        self.encoder_lr_scale = check_float("encoder_lr_scale", self.encoder_lr_scale, 0.0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("freeze_encoder", "sync_batchnorm", "deterministic"):
            check_bool(name, getattr(self, name))
        check_channels_last(self.channels_last)
        self.ignore_index = check_optional_int("ignore_index", self.ignore_index)
        self.seed = check_optional_int("seed", self.seed)
        self.amp = normalize_amp(self.amp)
        self.loss = format_loss_spec(parse_loss_spec(self.loss))
        self.label_smoothing = check_float("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        get_loss(self.loss, label_smoothing=self.label_smoothing)  # a smoothing without a ce term is refused now
        self.val_every = check_int("val_every", self.val_every, 1)
        if self.patience is not None:
            self.patience = check_int("patience", self.patience, 1)
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise ValueError(f"time_limit_minutes must be positive (or None), got {self.time_limit_minutes}")
        if self.deterministic and self.seed is None:
            raise ValueError("deterministic training needs a seed, got seed=None")
