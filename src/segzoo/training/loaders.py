"""DataLoaders with the settings the trainer and the evaluation loop expect, sharded under torchrun."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, Sampler, default_collate

from .distributed import ShardSampler


def make_loader(
    dataset: Any, batch_size: int, shuffle: bool, num_workers: int = 0, distributed: bool = False, seed: int = 0
) -> DataLoader:
    """A DataLoader with the settings the trainer expects: ``shuffle=True`` for training, ``False``
    for evaluation (every item once, in order).

    Training drops the last partial batch, so BatchNorm never sees a lone remainder, but only when
    at least one full batch exists: a training set smaller than ``batch_size`` is one (smaller)
    batch, never none. The order comes from :class:`EpochShuffle`: its own generator, seeded from
    ``seed`` and the epoch (which the trainer sets), never from the global torch RNG, so nothing
    else that draws from it (a progress bar, another loader) changes what a run trains on, and a
    resumed run sees the same orders as an uninterrupted one.

    With ``distributed``, this process gets its share of ``dataset`` under the default process
    group and ``batch_size`` is per process. Training: a ``DistributedSampler`` shuffled from
    ``seed`` and the epoch, dropping the remainder so that every process takes the same number of
    steps. Evaluation: a :class:`~segzoo.training.distributed.ShardSampler`, every item exactly once.

    Evaluation loaders batch with :func:`collate_pairs`: masks of different sizes stay a list.

    Workers' seeds come from the global torch RNG, which the trainer seeds and checkpoints; torch
    seeds ``random``, ``numpy`` and torch in each worker.
    """
    if not shuffle:
        # evaluation: labels of any size, each kept as it is
        sampler: Sampler[int] = ShardSampler(dataset) if distributed else None  # type: ignore[assignment]
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_pairs)
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = EpochShuffle(dataset, seed)
    drop_last = len(sampler) > batch_size  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last)


class EpochShuffle(Sampler[int]):
    """A random order of ``range(len(dataset))`` for each epoch, drawn from a generator seeded with
    ``seed + epoch`` (as ``DistributedSampler`` does in one process): independent of the global RNG.

    :meth:`set_epoch` (the trainer calls it before each epoch) picks the epoch; each iteration
    then moves on to the next one, so that a loop without ``set_epoch`` still gets a new order
    every time.
    """

    def __init__(self, dataset: Sized, seed: int = 0) -> None:
        self.size = len(dataset)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        return iter(torch.randperm(self.size, generator=generator).tolist())


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
