"""DataLoaders with the settings the trainer and the evaluation loop expect, sharded under torchrun."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, default_collate

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

    Evaluation loaders batch with :func:`collate_pairs`: masks of different sizes stay a list.

    Shuffling otherwise, and workers' seeds always, come from the global torch RNG, which the
    trainer seeds and checkpoints; torch seeds ``random``, ``numpy`` and torch in each worker.
    """
    collate = None if shuffle else collate_pairs  # evaluation: labels of any size, each kept as it is
    if not distributed:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=shuffle, collate_fn=collate
        )
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True) if shuffle else ShardSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=shuffle, collate_fn=collate)


def collate_pairs(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor | list[Tensor], Tensor | list[Tensor]]:
    """Batch (image, mask) pairs for evaluation: images and masks are each stacked when they share
    a size, and otherwise kept as lists, so that a dataset of mixed sizes is scored at every
    label's own resolution with any batch size, without padding (:func:`~segzoo.training.evaluate`
    runs listed images one by one and upsamples logits to each listed mask)."""
    images, masks = zip(*batch)
    return _stack_if_equal(images), _stack_if_equal(masks)


def _stack_if_equal(tensors: Sequence[Tensor]) -> Tensor | list[Tensor]:
    if all(t.shape == tensors[0].shape for t in tensors):
        return default_collate(list(tensors))
    return list(tensors)
