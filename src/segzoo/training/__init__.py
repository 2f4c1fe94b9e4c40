"""Training: the trainer, the one evaluation loop, loaders, distributed runs, whole runs.

``config`` (:class:`TrainConfig`), ``trainer`` (:class:`Trainer`: the loop, checkpoints, resume),
``evaluation`` (:func:`evaluate` over a loader, a dataset with pictures, a checkpoint),
``loaders`` (:func:`make_loader`), ``precision`` (what each ``amp`` mode means on a device),
``distributed`` (joining and leaving torchrun's process group, sharding, collectives),
``history`` (per-epoch records, history.jsonl, early stopping), ``tensorboard`` (the same epochs,
scores and prediction grids in TensorBoard, an optional extra), ``run`` (a whole run from
datasets: :func:`train`, :func:`demo`).
"""

from .config import OPTIMIZERS, SCHEDULES, TrainConfig
from .distributed import ShardSampler, process_group
from .evaluation import evaluate, evaluate_checkpoint, evaluate_dataset
from .history import History
from .loaders import collate_pairs, make_loader
from .precision import AMP_MODES, autocast_dtype
from .run import RunResult, demo, prepare_out_dir, train
from .trainer import Trainer, TrainingDiverged

__all__ = [
    "AMP_MODES",
    "OPTIMIZERS",
    "SCHEDULES",
    "History",
    "RunResult",
    "ShardSampler",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "autocast_dtype",
    "collate_pairs",
    "demo",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_dataset",
    "make_loader",
    "prepare_out_dir",
    "process_group",
    "train",
]
