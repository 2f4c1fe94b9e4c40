"""A whole training run from untransformed datasets, as ``segzoo train`` and ``segzoo demo`` do it:
transforms and class weights from the data settings, loaders, the trainer, and the pictures of
the best checkpoint. Returns what it produced; prints nothing."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import viz
from ..data import DataConfig, InMemoryDataset, SyntheticShapes, eval_transforms, train_transforms
from ..data.config import CLASS_WEIGHTING_POWERS
from ..io.atomic import check_writable_folder
from ..io.checkpoint import load
from ..io.run_description import RunDescription
from ..metrics import SegmentationScores, median_frequency_weights
from ..models.registry import get_model
from . import distributed
from .config import TrainConfig
from .evaluation import evaluate_dataset
from .loaders import make_loader
from .tensorboard import require_tensorboard
from .trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a training run left behind. A run stopped by its time limit (``time_limit_reached``)
    has no final ``scores`` (``None``) and no pictures of them: resume it to finish."""

    out_dir: Path
    history: list[dict[str, float]]
    scores: SegmentationScores | None
    run: RunDescription
    files: dict[str, Path] = field(default_factory=dict)
    time_limit_reached: bool = False

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.run.class_names


def train(
    model: Any,
    train_set: Any,
    val_set: Any,
    out_dir: str | os.PathLike,
    config: TrainConfig,
    data: DataConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    recipe: Mapping[str, Any] | None = None,
    tensorboard: str | os.PathLike | None = None,
) -> RunResult:
    """Fine-tune ``model`` on untransformed datasets (items: uint8 image, int64 mask), writing
    ``last.pt``, ``best.pt``, ``predictions.png`` and, with matplotlib, ``curves.png`` and
    ``confusion_matrix.png``; the best checkpoint's validation scores are returned.

    ``data`` (:class:`~segzoo.data.DataConfig`) sets the batch size, the augmentation, the
    evaluation size and the class weighting; it is saved in the checkpoints with the rest of the
    run description (class names and colours come from ``train_set``), with ``recipe`` (the
    resolved recipe of a command-line run, plain values) when given. With ``data.cache`` both
    splits are decoded once and served from memory (:class:`~segzoo.data.InMemoryDataset`).
    A run stopped by ``config.time_limit_minutes`` skips the final evaluation (see :class:`RunResult`).
    ``tensorboard``: a folder to log every epoch to as well (needs ``segzoo[tensorboard]``; see
    :mod:`segzoo.training.tensorboard`), checked before any data is read.

    Launched by ``torchrun``, every process runs this same call inside
    :func:`~segzoo.training.distributed.process_group`: it trains data-parallel with
    ``data.batch_size`` images per process, and rank 0 alone writes the files; every process
    returns the same scores.

    ``out_dir`` must be writable, and a folder that holds ``last.pt`` or ``best.pt`` of an earlier
    run is refused unless ``resume`` (continue that run from its ``last.pt``) or ``overwrite``
    (remove them and start afresh) says what to do with it; see :func:`prepare_out_dir`.
    """
    data = data or DataConfig()
    if tensorboard is not None:
        require_tensorboard()
    out_dir = prepare_out_dir(out_dir, resume, overwrite)
    if tensorboard is not None:
        check_writable_folder(tensorboard, "TensorBoard folder")
    ignore_index = train_set.ignore_index
    config = dataclasses.replace(config, ignore_index=ignore_index)  # the caller's config stays as it was
    if data.cache:
        train_set = InMemoryDataset(train_set, name="training split")
        val_set = InMemoryDataset(val_set, name="validation split")
    weights = None
    if data.class_weights is not None:
        power = CLASS_WEIGHTING_POWERS[data.class_weights]
        weights = median_frequency_weights(train_set, train_set.num_classes, ignore_index, power=power)
    if data.crop_size is not None:
        train_set.transforms = train_transforms(data.crop_size, model.mean, model.std, scale=data.train_scale)
    else:
        # the loss needs labels at the logits' size: whole images and labels resized together
        train_set.transforms = eval_transforms(model.mean, model.std, data.eval_size, resize_mask=True)
    val_set.transforms = eval_transforms(model.mean, model.std, data.eval_size)
    run = RunDescription.for_model(model, train_set, data)
    if recipe is not None:
        run = dataclasses.replace(run, recipe=dict(recipe))
    process_device = distributed.setup(device)  # before the loaders: they shard once a process group exists
    if overwrite and distributed.is_main():
        for name in CHECKPOINTS:  # so that a stale best.pt never stands for this run
            (out_dir / name).unlink(missing_ok=True)
    sharded, seed = distributed.is_active(), config.seed or 0
    trainer = Trainer(
        model,
        make_loader(train_set, data.batch_size, shuffle=True, num_workers=num_workers, distributed=sharded, seed=seed),
        make_loader(val_set, data.batch_size, shuffle=False, num_workers=num_workers, distributed=sharded),
        config,
        class_weights=weights,
        device=process_device,
        out_dir=out_dir,
        progress=progress,
        run=run,
        tensorboard=tensorboard,
    )
    if resume:
        trainer.resume(out_dir / "last.pt")
    history = trainer.fit()
    scores, files = None, {}
    if trainer.time_limit_reached:  # unfinished: no final evaluation, only the curves so far
        curves = write_curves(history, out_dir) if distributed.is_main() else None
        return RunResult(out_dir, history, None, run, {"curves": curves} if curves else {}, time_limit_reached=True)
    if distributed.is_main():
        best = load(out_dir / "best.pt", map_location=trainer.device) if (out_dir / "best.pt").exists() else trainer.model
        scores, files = evaluate_dataset(best, val_set, run, out_dir, data.batch_size, device=trainer.device)
        curves = write_curves(history, out_dir)
        if curves is not None:
            files["curves"] = curves
    scores = distributed.broadcast_object(scores)
    return RunResult(out_dir, history, scores, run, files)


#: the checkpoints a run writes into its folder
CHECKPOINTS = ("last.pt", "best.pt")


def prepare_out_dir(out_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False, resumable: bool = True) -> Path:
    """Check, before any work, that a run may write into ``out_dir``; returns it as a ``Path``.

    ``ValueError`` when it is a file or not writable, when both ``resume`` and ``overwrite`` are
    given, when ``resume`` finds no ``last.pt``, and when it holds an earlier run's ``last.pt`` or
    ``best.pt`` without either: training would silently replace them, whatever model or classes
    they hold. Nothing is created or removed here (:func:`train` removes them with ``overwrite``).
    ``resumable=False`` (the demo) leaves ``--resume`` out of the advice.
    """
    out = check_writable_folder(out_dir, "output folder (--out)")
    if resume and overwrite:
        raise ValueError("--resume (resume=True) continues the run in the output folder and --overwrite (overwrite=True) replaces it: give one")
    if resume:
        if not (out / "last.pt").is_file():
            raise ValueError(f"cannot resume: {out / 'last.pt'} does not exist; drop --resume (resume=False) to start a new run")
        return out
    existing = [name for name in CHECKPOINTS if (out / name).exists()]
    if existing and not overwrite:
        advice = "pass --resume (resume=True) to continue that run, or --overwrite" if resumable else "pass --overwrite"
        raise ValueError(
            f"{out} already holds {' and '.join(existing)} of an earlier run; {advice} (overwrite=True) to replace it "
            "on purpose, or choose another --out"
        )
    return out


def write_curves(history: list[dict[str, float]], out_dir: str | os.PathLike) -> Path | None:
    """``curves.png`` of losses and scores per epoch, or ``None`` without matplotlib."""
    try:
        return viz.plot_curves(history, Path(out_dir) / "curves.png", keys=_curve_keys(history))
    except ImportError:
        logger.info("matplotlib not installed: skipping curves.png")
        return None


def _curve_keys(history: list[dict[str, float]]) -> list[str]:
    wanted = ("train_loss", "val_loss", "mean_iou", "global_accuracy", "class_accuracy")
    return [key for key in wanted if any(key in record for record in history)]


def demo(
    out_dir: str | os.PathLike = "segzoo-demo",
    epochs: int = 4,
    num_images: int = 512,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Train SegNet-Basic from scratch on the embedded synthetic shapes (no download, CPU-sized).

    The shapes carry per-class fill textures (``SyntheticShapes(class_textures=True)``): with the
    outline alone, two CPU minutes of SegNet-Basic reach only about 0.37 validation mIoU.
    Batches of 4 (512 SGD steps in 4 epochs) reach in 140-162 s the mIoU that 8 epochs of batches
    of 16 reached in 300 s (0.84, 2-core AVX2 EPYC, float32). An ``out_dir`` holding an earlier
    run's checkpoints is refused unless ``overwrite``.
    """
    prepare_out_dir(out_dir, overwrite=overwrite, resumable=False)
    torch.manual_seed(seed)
    model = get_model("segnet_basic", num_classes=SyntheticShapes.num_classes)
    train_set = SyntheticShapes(num_images, size, seed=seed, class_textures=True)
    val_set = SyntheticShapes(128, size, seed=seed + 1, class_textures=True)
    # like segzoo train: bf16 autocast where the CPU/GPU computes it natively, channels_last where it trains faster
    config = TrainConfig(
        epochs=epochs, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=5e-4, seed=seed, amp="auto", channels_last="auto"
    )
    return train(model, train_set, val_set, out_dir, config, DataConfig(batch_size=4), progress=progress, overwrite=overwrite)
