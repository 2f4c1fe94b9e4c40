"""End-to-end jobs behind the ``segzoo`` command, usable from Python too: demo, train, evaluate,
predict, and the model table. Each returns what it produced; none prints."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from . import distributed, viz
from .base import SegmentationModel
from .checkpoint import load, load_checkpoint, model_from_checkpoint
from .data import CamVid, SegmentationFolder, SyntheticShapes, denormalize, eval_transforms, train_transforms
from .losses import median_frequency_weights
from .metrics import SegmentationScores
from .registry import get_model, list_models
from .train import TrainConfig, Trainer, make_loader
from .train import evaluate as evaluate_loader
from .uncertainty import mc_predict, normalised

logger = logging.getLogger(__name__)

LAYOUTS = ("camvid", "folder")


@dataclass
class RunResult:
    """What a training run left behind."""

    out_dir: Path
    history: list[dict[str, float]]
    scores: SegmentationScores
    class_names: tuple[str, ...]
    files: dict[str, Path] = field(default_factory=dict)


def datasets(
    root: str | os.PathLike,
    layout: str,
    train_split: str = "train",
    val_split: str = "val",
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> tuple[SegmentationFolder, SegmentationFolder]:
    """Untransformed train/val datasets: ``camvid`` (``root/{split}``, ``root/{split}annot``) or
    ``folder`` (``root/{split}/images``, ``root/{split}/masks``; needs ``num_classes``)."""
    if layout == "camvid":
        return CamVid(root, train_split), CamVid(root, val_split)
    if layout == "folder":
        if num_classes is None:
            raise ValueError("the folder layout needs num_classes (--num-classes)")
        root = Path(root)
        return tuple(  # type: ignore[return-value]
            SegmentationFolder(root / split / "images", root / split / "masks", num_classes, ignore_index)
            for split in (train_split, val_split)
        )
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def train(
    model: SegmentationModel,
    train_set: Any,
    val_set: Any,
    out_dir: str | os.PathLike,
    config: TrainConfig,
    batch_size: int = 8,
    crop_size: tuple[int, int] | None = None,
    train_scale: tuple[float, float] = (0.5, 2.0),
    eval_size: tuple[int, int] | None = None,
    class_weights: str | None = None,
    resume: bool = False,
    num_workers: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune ``model`` on untransformed datasets (items: uint8 image, int64 mask), writing
    ``last.pt``, ``best.pt``, ``predictions.png`` and, with matplotlib, ``curves.png`` and
    ``confusion_matrix.png``; the best checkpoint's validation scores are returned.

    ``crop_size`` enables random scale (``train_scale``) + crop + flip augmentation; without it
    images are only normalised (and resized to ``eval_size`` when given). ``class_weights="median"``
    applies median-frequency balancing computed on the training masks.

    Launched by ``torchrun``, every process runs this same call: it joins the process group,
    trains data-parallel with ``batch_size`` images per process, and rank 0 alone writes the
    files; every process returns the same scores.
    """
    if class_weights not in (None, "median"):
        raise ValueError(f"class_weights must be None or 'median', got {class_weights!r}")
    out_dir = Path(out_dir)
    ignore_index = train_set.ignore_index
    config = dataclasses.replace(config, ignore_index=ignore_index)  # the caller's config stays as it was
    weights = median_frequency_weights(train_set, train_set.num_classes, ignore_index) if class_weights == "median" else None
    if crop_size is not None:
        train_set.transforms = train_transforms(crop_size, model.mean, model.std, ignore_index, scale=train_scale)
    else:
        train_set.transforms = eval_transforms(model.mean, model.std, eval_size)
    val_set.transforms = eval_transforms(model.mean, model.std, eval_size)
    metadata = {
        "class_names": list(train_set.class_names),
        "ignore_index": ignore_index,
        "mean": list(model.mean),
        "std": list(model.std),
        "eval_size": list(eval_size) if eval_size else None,
        "palette": "camvid" if isinstance(train_set, CamVid) else "voc",
    }
    process_device = distributed.setup(device)  # before the loaders: they shard once a process group exists
    sharded, seed = distributed.is_active(), config.seed or 0
    trainer = Trainer(
        model,
        make_loader(train_set, batch_size, shuffle=True, num_workers=num_workers, distributed=sharded, seed=seed),
        make_loader(val_set, batch_size, shuffle=False, num_workers=num_workers, distributed=sharded),
        config,
        class_weights=weights,
        device=process_device,
        out_dir=out_dir,
        progress=progress,
        metadata=metadata,
    )
    if resume:
        trainer.resume(out_dir / "last.pt")
    history = trainer.fit()
    scores, files = None, {}
    if distributed.is_main():
        best = load(out_dir / "best.pt", map_location=trainer.device) if (out_dir / "best.pt").exists() else trainer.model
        scores, files = evaluate(best, val_set, metadata, out_dir, batch_size, device=trainer.device)
        curves = write_curves(history, out_dir)
        if curves is not None:
            files["curves"] = curves
    scores = distributed.broadcast_object(scores)
    return RunResult(out_dir, history, scores, tuple(train_set.class_names), files)


@torch.no_grad()
def evaluate(
    model: SegmentationModel,
    dataset: Any,
    metadata: dict[str, Any],
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> tuple[SegmentationScores, dict[str, Path]]:
    """Scores of ``model`` on a transformed ``dataset`` (BF and ECE included); with ``out_dir``, also a prediction grid of
    its first images (``predictions.png``) and, with matplotlib, ``confusion_matrix.png``."""
    model.to(device or next(model.parameters()).device)
    _, scores = evaluate_loader(model, make_loader(dataset, batch_size, shuffle=False), metadata.get("ignore_index"), detailed=True)
    files: dict[str, Path] = {}
    if out_dir is not None:
        images, masks = (torch.stack(column) for column in zip(*(dataset[i] for i in range(min(8, len(dataset))))))
        predictions = model(images.to(next(model.parameters()).device)).argmax(1).cpu()
        colours = colours_for(metadata, model.num_classes)
        pictures = denormalize(images, metadata["mean"], metadata["std"])
        files["predictions"] = viz.prediction_grid(
            pictures, masks, predictions, colours, Path(out_dir) / "predictions.png", ignore_index=metadata.get("ignore_index")
        )
        try:
            files["confusion_matrix"] = viz.plot_confusion_matrix(
                scores.confusion, Path(out_dir) / "confusion_matrix.png", class_names=metadata.get("class_names")
            )
        except ImportError:
            logger.info("matplotlib not installed: skipping confusion_matrix.png")
    return scores, files


def colours_for(metadata: dict[str, Any], num_classes: int) -> Tensor:
    """The palette a checkpoint's metadata asks for (CamVid's own colours, else VOC's)."""
    return viz.CAMVID_PALETTE[:num_classes] if metadata.get("palette") == "camvid" else viz.palette(num_classes)


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
    epochs: int = 8,
    num_images: int = 512,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    progress: bool = True,
) -> RunResult:
    """Train SegNet-Basic from scratch on the embedded synthetic shapes (no download, CPU-sized).

    The shapes carry per-class fill textures (``SyntheticShapes(class_textures=True)``): with the
    outline alone, two CPU minutes of SegNet-Basic reach only about 0.37 validation mIoU.
    """
    torch.manual_seed(seed)
    model = get_model("segnet_basic", num_classes=SyntheticShapes.num_classes)
    train_set = SyntheticShapes(num_images, size, seed=seed, class_textures=True)
    val_set = SyntheticShapes(128, size, seed=seed + 1, class_textures=True)
    config = TrainConfig(epochs=epochs, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=5e-4, seed=seed)
    return train(model, train_set, val_set, out_dir, config, batch_size=16, progress=progress)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike,
    layout: str,
    split: str = "val",
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> tuple[SegmentationScores, tuple[str, ...], dict[str, Path]]:
    """Score a checkpoint on a dataset split (resized as it was trained, if it was)."""
    saved = load_checkpoint(checkpoint)
    metadata, model = saved.get("metadata", {}), model_from_checkpoint(saved, str(checkpoint))
    if layout == "camvid":
        dataset: Any = CamVid(root, split)
    else:
        dataset = SegmentationFolder(Path(root) / split / "images", Path(root) / split / "masks", model.num_classes, metadata.get("ignore_index"))
    metadata = {"mean": model.mean, "std": model.std, "ignore_index": dataset.ignore_index, "class_names": list(dataset.class_names), **metadata}
    eval_size = metadata.get("eval_size")
    dataset.transforms = eval_transforms(metadata["mean"], metadata["std"], tuple(eval_size) if eval_size else None)
    scores, files = evaluate(model, dataset, metadata, out_dir, batch_size, device=device)
    return scores, tuple(dataset.class_names), files


def predict_files(
    checkpoint: str | os.PathLike,
    images: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    device: str | None = None,
    mc_samples: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """For each image write ``<stem>_mask.png`` (palette PNG whose pixels are class indices) and
    ``<stem>_overlay.png``; images are resized to the training size, if any, and the outputs back.

    With ``mc_samples`` (a model built with dropout, e.g. Bayesian SegNet), the mask is the mean of
    that many Monte Carlo dropout passes (seeded), and heat maps of the predictive entropy and the
    mutual information, each divided by log C, are written beside it (``<stem>_entropy.png``,
    ``<stem>_mutual_information.png``; black: certain, pale yellow: log C).
    """
    from PIL import Image

    from .data.folder import image_to_tensor

    saved = load_checkpoint(checkpoint)
    metadata = saved.get("metadata", {})
    model = model_from_checkpoint(saved, str(checkpoint)).to(device or "cpu").eval()
    colours = colours_for(metadata, model.num_classes)
    eval_size = metadata.get("eval_size")
    written = []
    for path in map(Path, images):
        try:
            with Image.open(path) as file:
                image = image_to_tensor(file)
        except (OSError, SyntaxError) as error:
            raise ValueError(f"cannot read image {path}: {error}") from error
        resized = image
        if eval_size:
            resized = F.interpolate(image[None].float(), size=tuple(eval_size), mode="bilinear", antialias=True)
            resized = resized.round().clamp(0, 255).to(torch.uint8)[0]
        maps: dict[str, Tensor] = {}
        if mc_samples:
            result = mc_predict(model, resized, mc_samples, seed=seed)
            labels = result.labels
            maps = {"entropy": result.entropy, "mutual_information": result.mutual_information}
        else:
            labels = model.predict(resized)
        if eval_size:
            labels = F.interpolate(labels[None].float(), size=image.shape[-2:], mode="nearest").long()[0]
            maps = {k: F.interpolate(v[None], size=image.shape[-2:], mode="bilinear")[0] for k, v in maps.items()}
        labels = labels[0].cpu()
        written.append(viz.save_mask_png(Path(out_dir) / f"{path.stem}_mask.png", labels, colours))
        written.append(viz.save_png(Path(out_dir) / f"{path.stem}_overlay.png", viz.overlay(image, labels, colours)))
        for name, values in maps.items():
            heat = viz.heatmap(normalised(values[0].float().cpu(), model.num_classes))
            written.append(viz.save_png(Path(out_dir) / f"{path.stem}_{name}.png", heat))
    return written


def model_table(size: tuple[int, int] = (360, 480), num_classes: int = 11) -> list[dict[str, Any]]:
    """Name, class, parameter count and forward GFLOPs (2 x multiply-adds) at ``size`` for every model."""
    rows = []
    for name in list_models():
        model = get_model(name, num_classes=num_classes).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, model.in_channels, *size))
        rows.append(
            {
                "name": name,
                "class": type(model).__name__,
                "params": sum(p.numel() for p in model.parameters()),
                "gflops": counter.get_total_flops() / 1e9,
            }
        )
    return rows
