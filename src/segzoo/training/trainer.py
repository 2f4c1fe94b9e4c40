"""Fine-tuning any segzoo model: one small trainer, no framework.

``Trainer(model, train_loader, val_loader, ...).fit()`` trains with AdamW or SGD, a poly / cosine /
constant LR schedule, optional mixed precision, gradient accumulation, a frozen encoder or a
smaller encoder LR, evaluates every epoch or every ``val_every``-th (:func:`~segzoo.training.evaluate`), keeps
``last.pt`` and ``best.pt`` (by validation mIoU) in ``out_dir``, and resumes exactly from
``last.pt``.

Under ``torchrun`` (or any initialised ``torch.distributed`` process group) the same trainer runs
data-parallel: DistributedDataParallel, rank 0 alone writes files and shows progress, and
validation scores are those of the whole validation set (see :mod:`segzoo.training.distributed`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .._checks import check_bool
from ..io.atomic import remove_stale_temporaries
from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..io.run_description import RunDescription
from ..io.state_dict import load_exact, strip_wrapper_prefixes
from ..losses import get_loss
from ..metrics import SegmentationScores
from ..models.base import SegmentationModel
from . import distributed
from .config import TrainConfig
from .evaluation import evaluate, interactive, progress_bar
from .history import HISTORY_FILE, History, write_history
from .memory_format import describe_channels_last, trains_channels_last
from .precision import autocast_dtype, describe_amp
from .tensorboard import TensorBoardLog

logger = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """Training stopped on a non-finite loss or non-finite weights; the last good checkpoints are kept."""


def _now() -> float:
    """The clock of ``time_limit_minutes`` (a function, so that tests can replace it)."""
    return time.monotonic()


class Trainer:
    """Fine-tunes ``model`` on ``train_loader`` batches of (images float (N,3,H,W), masks int64 (N,H,W)).

    The loss is ``config.loss`` (a :func:`segzoo.losses.get_loss` spec: ``"ce"``, ``"ce+dice"``, ...),
    for training and validation alike; ``class_weights`` go to it (e.g.
    :func:`segzoo.median_frequency_weights`).
    With ``out_dir``, ``last.pt`` is written after every epoch and ``best.pt`` whenever validation
    mIoU improves (before ``last.pt``, so that a kill in between leaves the pair consistent);
    :meth:`resume` continues a run from ``last.pt`` exactly where it stopped.
    ``run`` (class names, colours, mean/std, data settings; by default described from the
    training loader's dataset and the model) is stored in every checkpoint. With ``tensorboard`` (a
    folder; needs ``segzoo[tensorboard]``), every epoch is also logged there (:mod:`segzoo.training.tensorboard`).

    Launched by ``torchrun``, the trainer joins the process group (:func:`segzoo.training.distributed.setup`;
    ``device=None`` then means this process's own GPU, or the CPU) and trains the model wrapped in
    DistributedDataParallel; ``self.model`` stays the plain module, so checkpoints have the same
    keys as in a single process. Give it loaders from ``make_loader(..., distributed=True)``: every
    process must take the same number of training steps, and a validation loader sharded with
    :class:`~segzoo.training.distributed.ShardSampler` gives whole-set scores on every process. Only rank 0
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
        run: RunDescription | None = None,
        tensorboard: str | os.PathLike | None = None,
    ) -> None:
        check_bool("progress", progress)
        self.config = config or TrainConfig()
        if self.config.deterministic and getattr(model, "unpooling", None) == "native":
            raise ValueError(
                "deterministic training needs unpooling='compact': torch has no deterministic max_unpool2d kernel"
            )
        self.device = distributed.setup(device)
        self.model = model.to(self.device)
        #: the autocast dtype of ``config.amp`` on this device (None: float32; see segzoo.training.precision)
        self.amp_dtype = autocast_dtype(self.config.amp, self.device)
        #: whether ``config.channels_last`` means channels_last here (see segzoo.training.memory_format)
        self.channels_last = trains_channels_last(self.config.channels_last, self.device, self.amp_dtype)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.run = run or RunDescription.for_model(model, getattr(train_loader, "dataset", None))
        self._tensorboard = None if tensorboard is None else TensorBoardLog(tensorboard, self.run, getattr(val_loader, "dataset", None))
        if self.config.seed is not None:
            # per-process streams, so that processes draw different augmentations and dropout;
            # the weights are rank 0's everywhere anyway (DDP broadcasts them when it wraps)
            torch.manual_seed(self.config.seed + distributed.rank())
        model.freeze_encoder(self.config.freeze_encoder)
        self._network = self._wrap(model)  # after freezing: DDP expects gradients for what requires them now
        weight = class_weights.to(self.device) if class_weights is not None else None
        #: the loss of ``config.loss`` (see :mod:`segzoo.losses`)
        self.criterion = get_loss(
            self.config.loss, ignore_index=self.config.ignore_index, class_weights=weight, label_smoothing=self.config.label_smoothing
        ).to(self.device)
        self.optimizer = self._build_optimizer()
        batches = len(train_loader)  # type: ignore[arg-type]
        distributed.check_equal(batches, "the number of training batches (use make_loader(..., distributed=True))", self.device)
        if batches == 0:
            raise ValueError(
                f"the training loader yields no training batch ({_items(train_loader)}), so no step would be trained; "
                "lower the batch size or keep the last partial batch (make_loader does)"
            )
        # depends on the world size and batch size, so resume() recomputes the step from the epoch
        self.steps_per_epoch = math.ceil(batches / self.config.accumulate_steps)
        self.scheduler = self._build_scheduler(step=0)
        logger.info("mixed precision %s", describe_amp(self.config.amp, self.device))
        logger.info("channels_last %s", describe_channels_last(self.config.channels_last, self.device, self.amp_dtype))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.history = History()
        self.epoch = 0  # epochs finished
        #: whether the last fit() stopped early because the next epoch would not end within the time limit
        self.time_limit_reached = False

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
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    @property
    def _show_progress(self) -> bool:
        return self.progress and distributed.is_main()

    def fit(self) -> list[dict[str, float]]:
        """Train the remaining epochs; returns the history (one dict per epoch).

        A non-finite training loss, or a non-finite weight after an epoch, stops training with
        :class:`TrainingDiverged` before that epoch is validated or saved: ``last.pt`` and
        ``best.pt`` keep the last good epochs.

        With ``config.deterministic``, ``torch.use_deterministic_algorithms(True)`` and
        ``cudnn.benchmark = False`` hold during the call and the previous settings come back after.

        With ``config.time_limit_minutes``, an epoch starts only if it is expected to end within
        that many minutes of this call's start, the expected length being the longest epoch of
        this call (before the first: the longest recorded in the history, e.g. of a resumed run;
        with neither, the epoch runs). Otherwise fit stops at that epoch boundary with
        :attr:`time_limit_reached` set; ``last.pt`` then holds the finished epochs, and
        :meth:`resume` + :meth:`fit` continue exactly as if the run had never stopped.
        """
        self.time_limit_reached = False
        deadline = None if self.config.time_limit_minutes is None else _now() + 60 * self.config.time_limit_minutes
        durations: list[float] = []
        log = closing(self._tensorboard) if self._tensorboard is not None else nullcontext()
        with _deterministic_algorithms(self.config.deterministic), log:
            while self.epoch < self.config.epochs:
                if self.stopped_early:
                    break
                if deadline is not None and self._next_epoch_ends_too_late(deadline, durations):
                    self.time_limit_reached = True
                    break
                started = _now()
                self._fit_epoch()
                durations.append(_now() - started)
        distributed.barrier()  # when fit returns, rank 0's checkpoints are on disk for every process
        return self.history.epochs

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping (``config.patience``) has ended the run (see :meth:`History.stopped_early`)."""
        return self.history.stopped_early(self.config.patience)

    def _next_epoch_ends_too_late(self, deadline: float, durations: list[float]) -> bool:
        """Rank 0's estimate, shared by every process: would one more epoch end after ``deadline``?"""
        recorded = [r["seconds"] for r in self.history.epochs if "seconds" in r]
        estimate = max(durations) if durations else (max(recorded) if recorded else None)
        late = estimate is not None and _now() + estimate > deadline
        if late:
            logger.info("time limit: an epoch takes about %.0f s, %.0f s are left", estimate, deadline - _now())
        return bool(distributed.broadcast_object(late))

    def _fit_epoch(self) -> None:
        started = time.perf_counter()
        record: dict[str, float] = {"epoch": self.epoch + 1, "train_loss": self._train_epoch()}
        # every process then evaluates (and rank 0 saves) the same model: rank 0's
        distributed.broadcast_buffers(self.model)
        self._check_finite_weights()  # a diverged model is never validated, nor saved as best.pt
        scores = None
        if self.val_loader is not None and self._validates(self.epoch + 1):
            val_loss, scores = self.validate(self.val_loader)
            record.update(val_loss=val_loss, **scores.summary())
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record["seconds"] = time.perf_counter() - started
        self.epoch += 1
        self.history.epochs.append(record)
        improved = record.get("mean_iou", -math.inf) > self.history.best_mean_iou
        if improved:
            self.history.best_mean_iou = record["mean_iou"]
        if self.stopped_early:
            record["stopped_early"] = 1.0  # recorded in the history (and history.jsonl)
            logger.info("early stopping: validation mIoU has not improved for %d epochs", self.config.patience)
        if not distributed.is_main():
            return
        logger.info("epoch %d/%d %s", self.epoch, self.config.epochs, _format(record))
        if self._show_progress and not interactive():  # the bars' stand-in under a pipe: one line per epoch
            print(f"epoch {self.epoch}/{self.config.epochs} {_format(record)}", file=sys.stderr, flush=True)
        if self._tensorboard is not None:  # before last.pt: a run resumed from it purges this epoch's events
            rates = dict(zip(("decoder", "encoder"), (group["lr"] for group in self.optimizer.param_groups)))
            self._tensorboard.log_epoch(record, scores, rates, self.model)
        if self.out_dir is not None:
            # best.pt first: last.pt records the best score, so a kill between the two writes leaves
            # the last.pt of the epoch before, and the resumed run writes this best.pt again
            if improved:
                self.save(self.out_dir / "best.pt")
            self.save(self.out_dir / "last.pt")
            write_history(self.history.epochs, self.out_dir / HISTORY_FILE)
            # a killed best.pt write's temporary, which the next best.pt write would remove, if any came
            remove_stale_temporaries(self.out_dir / "best.pt")

    def _validates(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` is validated: every ``config.val_every``-th and the last."""
        return epoch % self.config.val_every == 0 or epoch == self.config.epochs

    def _train_epoch(self) -> float:
        self._network.train()
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)  # DistributedSampler: a new shuffle every epoch
        total, batches = 0.0, 0
        accumulate = self.config.accumulate_steps
        bar = progress_bar(self.train_loader, self._show_progress, f"epoch {self.epoch + 1}/{self.config.epochs}")
        self.optimizer.zero_grad(set_to_none=True)
        for index, (images, masks) in enumerate(bar):
            images, masks = images.to(self.device), masks.to(self.device)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last_of_group = (index + 1) % accumulate == 0 or index + 1 == len(self.train_loader)  # type: ignore[arg-type]
            # DDP would all-reduce the gradients of every backward; only the group's last one counts
            no_sync = isinstance(self._network, DistributedDataParallel) and not last_of_group
            with self._network.no_sync() if no_sync else nullcontext():  # type: ignore[operator]
                with self._autocast():
                    # = self.criterion(logits, masks); a batch with no counted pixel (all ignored or
                    # padded) is 0 / tiny = 0 with zero gradients, not 0 / 0 = NaN
                    loss = self.criterion.mean(*self.criterion.summed(self._network(images), masks))
                if not distributed.is_active() and not math.isfinite(value := loss.item()):
                    raise self._diverged(f"the training loss is {value} at step {index + 1}")
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
        if not math.isfinite(total):  # under DDP, every process sees the summed loss and stops alike
            raise self._diverged(f"the training loss is {total / max(batches, 1)}")
        return total / max(batches, 1)

    def _diverged(self, what: str) -> TrainingDiverged:
        kept = "nothing was saved" if self.out_dir is None else (
            f"{self.out_dir / 'last.pt'} keeps epoch {self.epoch}, best.pt the best before it" if self.epoch else "no checkpoint was written"
        )  # fmt: skip
        return TrainingDiverged(
            f"training diverged in epoch {self.epoch + 1}: {what}; this epoch is not saved ({kept}). "
            "Lower the learning rate (--lr), or look for NaN or infinite values in the data"
        )

    def _check_finite_weights(self) -> None:
        """:class:`TrainingDiverged` if any weight or buffer is NaN or infinite (never validated or saved)."""
        bad = [name for name, tensor in self.model.state_dict().items() if tensor.is_floating_point() and not tensor.isfinite().all()]
        if bad:
            raise self._diverged(f"non-finite weights after training ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})")

    def validate(self, loader: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, SegmentationScores]:
        """Mean loss and scores of the model on ``loader`` with this run's loss (see :func:`evaluate`)."""
        amp = self.amp_dtype if self.amp_dtype is not None else False
        return evaluate(self.model, loader, self.config.ignore_index, self.criterion, amp, self._show_progress)

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
            run=self.run.to_dict(),
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
        load_exact(self.model, strip_wrapper_prefixes(checkpoint["state_dict"]), str(path))
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


def _items(loader: Iterable) -> str:
    dataset, size = getattr(loader, "dataset", None), getattr(loader, "batch_size", None)
    try:
        return f"{len(dataset)} items, batch size {size}, drop_last={getattr(loader, 'drop_last', None)}"  # type: ignore[arg-type]
    except TypeError:
        return "no items"


def _format(record: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "epoch")
