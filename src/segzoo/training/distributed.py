"""Training on several processes with ``torch.distributed``: joining ``torchrun``'s process group,
sharding evaluation data without duplicates, and the few collectives the trainer needs.

Every helper also works in a single process without a process group (rank 0 of 1, collectives
do nothing), so callers need no branches of their own. :func:`setup` is the one place that joins a
group and :func:`process_group` the one that leaves it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence, Sized
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from .._checks import check_device

T = TypeVar("T")

#: what ``torchrun`` (``python -m torch.distributed.run``) sets in every process it starts
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` started this process (its rank variables are in the environment)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_active() -> bool:
    """Whether a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Number of processes in the default group (1 without one)."""
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and shows progress."""
    return rank() == 0


def setup(device: str | torch.device | None = None) -> torch.device:
    """Join ``torchrun``'s process group if needed, and return the device this process trains on.

    Launched by ``torchrun`` with no process group yet, this initialises one from the environment
    (``env://``): NCCL when the device is CUDA, gloo otherwise. Under a process group, ``None`` or a
    bare ``"cuda"`` mean this process's own GPU, ``cuda:LOCAL_RANK``. Without ``torchrun`` or a
    group, ``None`` means CUDA if available, else the CPU, and nothing else happens.
    """
    # an explicit device must exist here (ValueError otherwise, before any model or data moves)
    resolved = check_device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (launched_by_torchrun() or is_active()):
        return resolved
    if resolved.type == "cuda":
        if resolved.index is None:
            local_rank = os.environ.get("LOCAL_RANK")
            resolved = torch.device("cuda", int(local_rank) if local_rank is not None else rank() % torch.cuda.device_count())
        torch.cuda.set_device(resolved)  # NCCL collectives and barriers run on the current device
    if not is_active():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=resolved if resolved.type == "cuda" else None)
    return resolved


@contextmanager
def process_group(device: str | torch.device | None = None) -> Iterator[torch.device]:
    """Join ``torchrun``'s process group for the block (see :func:`setup`) and yield this process's
    device; a group this block created is destroyed when it ends, even on error. Outside
    ``torchrun`` it only resolves the device."""
    joined = not is_active()
    resolved = setup(device)
    try:
        yield resolved
    finally:
        if joined and is_active():
            dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here (no-op without a process group)."""
    if is_active():
        dist.barrier()


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """``values`` summed element-wise over all processes (float64; ``device`` must suit the
    backend: CUDA for NCCL)."""
    summed = torch.tensor(values, dtype=torch.float64, device=device)
    if is_active():
        dist.all_reduce(summed)
    return summed.tolist()


def check_equal(value: int, what: str, device: torch.device) -> None:
    """Raise ``ValueError`` unless every process passes the same ``value`` (e.g. its number of
    training batches: DDP hangs when processes take different numbers of steps)."""
    if world_size() == 1:
        return
    extremes = torch.tensor([value, -value], dtype=torch.int64, device=device)
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    largest, smallest = int(extremes[0]), -int(extremes[1])
    if largest != smallest:
        raise ValueError(f"{what} must be equal on all {world_size()} processes, got values from {smallest} to {largest}")


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into every process's ``module``.

    DDP keeps parameters equal but lets each process update its buffers with its own last batch.
    """
    if world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable value) on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + num_replicas, ...`` of a dataset: over all processes every item is
    drawn exactly once, in order.

    For evaluation: ``DistributedSampler`` pads shards with repeated items (or drops items) so
    that all processes get the same count, which would count those pixels twice (or never).
    Shards here differ in length by at most one, which evaluation, having no collective per
    batch, does not mind. ``num_replicas`` and ``rank`` default to the default process group's.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.num_replicas = world_size() if num_replicas is None else num_replicas
        self.rank = (dist.get_rank() if is_active() else 0) if rank is None else rank
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"expected num_replicas >= 1 and 0 <= rank < num_replicas, got rank {self.rank} of {self.num_replicas}")
        self.length = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))
