"""DataLoaders with the settings the trainer and the evaluation loop expect, sharded under torchrun."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, DistributedSampler

from .distributed import ShardSampler


def make_loader(
    dataset: Any, batch_size: int, shuffle: bool, num_workers: int = 0, distributed: bool = False, seed: int = 0
) -> DataLoader:
    """A DataLoader with the settings the trainer expects: ``shuffle=True`` for training (drops
    the last partial batch, so BatchNorm never sees a batch of one), ``False`` for evaluation.

    With ``distributed``, this process gets its share of ``dataset`` under the default process
    group and ``batch_size`` is per process. Training: a ``DistributedSampler`` shuffled from
    ``seed`` and the epoch, dropping the remainder so that every process takes the same number of
    steps. Evaluation: a :class:`~segzoo.training.distributed.ShardSampler`, every item exactly once.

    Shuffling otherwise, and workers' seeds always, come from the global torch RNG, which the
    trainer seeds and checkpoints; torch seeds ``random``, ``numpy`` and torch in each worker.
    """
    if not distributed:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=shuffle)
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True) if shuffle else ShardSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=shuffle)
