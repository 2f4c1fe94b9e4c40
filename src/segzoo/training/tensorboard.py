"""A run you can follow in TensorBoard: per-epoch losses, scores, learning rates and a prediction grid.

Needs the optional extra ``segzoo[tensorboard]`` (the ``tensorboard`` package), imported only when
a run asks for it. :class:`TensorBoardLog` writes, at step = epoch number:

- ``loss/train``, ``loss/val``; ``val/<score>`` for every score of the epoch's record in
  ``history.jsonl`` (``val/mean_iou``, ``val/global_accuracy``, ...), ``time/epoch_seconds``;
- ``val_iou/<class name>`` for every class with an IoU (a class absent from labels and
  predictions has none and is left out);
- ``lr/decoder`` (everything outside the encoder) and ``lr/encoder`` (when it trains);
- ``predictions``: image | ground truth | prediction for the first few validation items, in the
  run's colours (:func:`segzoo.viz.draw_prediction_grid`).

The trainer logs an epoch before writing its checkpoints, and a log opened for a resumed run
purges the events at and after its first epoch (``purge_step``): epochs that an interrupted run
logged after its ``last.pt`` are replaced, never shown twice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import viz
from ..io.run_description import RunDescription
from ..metrics import SegmentationScores
from ..models.base import SegmentationModel
from .evaluation import drawn_samples

INSTALL = 'pip install "segzoo[tensorboard]"'
#: history record keys and their TensorBoard tags; other numbers of the record are scores (``val/<key>``)
_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "seconds": "time/epoch_seconds"}
#: record keys not logged as scalars: the step itself, flags, and the LR (logged per parameter group)
_SKIPPED = {"epoch", "stopped_early", "lr"}


def require_tensorboard() -> Any:
    """torch's ``SummaryWriter``; an ``ImportError`` saying what to install when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {INSTALL}") from None
    return SummaryWriter


class TensorBoardLog:
    """Writes a run's epochs to TensorBoard event files in ``log_dir`` (see the module docstring).

    ``samples``: the transformed validation dataset whose first ``num_images`` items (those of the
    first item's label size) are drawn each epoch; ``None`` draws nothing. The event file is
    opened at the first logged epoch, so that its purge step is that epoch.
    """

    def __init__(self, log_dir: str | os.PathLike, run: RunDescription, samples: Any = None, num_images: int = 4) -> None:
        self._summary_writer = require_tensorboard()
        self.log_dir, self.run, self.samples, self.num_images = Path(log_dir), run, samples, num_images
        self._writer: Any = None

    def log_epoch(
        self,
        record: Mapping[str, float],
        scores: SegmentationScores | None,
        learning_rates: Mapping[str, float],
        model: SegmentationModel | None = None,
    ) -> None:
        """Log one finished epoch: its history ``record``, per-class IoU from ``scores``, the LR of
        each named parameter group and, with ``model`` and samples, the prediction grid."""
        step = int(record["epoch"])
        if self._writer is None:
            self._writer = self._summary_writer(str(self.log_dir), purge_step=step)
        for key, value in record.items():
            if key not in _SKIPPED and isinstance(value, (int, float)):
                self._writer.add_scalar(_TAGS.get(key, f"val/{key}"), value, step)
        for name, lr in learning_rates.items():
            self._writer.add_scalar(f"lr/{name}", lr, step)
        if scores is not None:
            for name, iou in zip(self.run.class_names, scores.per_class_iou.tolist()):
                if not math.isnan(iou):
                    self._writer.add_scalar(f"val_iou/{name}", iou, step)
        if model is not None and self.samples is not None and len(self.samples) > 0:
            self._writer.add_image("predictions", self._grid(model), step, dataformats="CHW")
        self._writer.flush()

    def _grid(self, model: SegmentationModel) -> torch.Tensor:
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                pictures, masks, predictions = drawn_samples(model, self.samples, self.run, self.num_images)
        finally:
            model.train(training)
        return viz.draw_prediction_grid(pictures, masks, predictions, self.run.palette, self.run.ignore_index, self.num_images)

    def close(self) -> None:
        """Flush and close the event file; a later :meth:`log_epoch` opens a new one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
