"""Decode a dataset once and keep it in memory: :class:`InMemoryDataset`.

On a small CPU every epoch otherwise decodes every PNG again (about 5 ms per CamVid image and
its label). The cache holds the decoded uint8 images and labels (4 bytes per pixel: 3 for RGB, 1 for
a label below 256), so CamVid's 367 + 101 images take about 310 MiB; transforms still run per item,
so random augmentation stays random. Building one refuses, before decoding anything, a dataset
whose estimated size exceeds half the memory available (what ``/proc/meminfo`` and the cgroup
limit allow), leaving the rest to training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

#: attributes of the wrapped dataset that travel with the cache (run descriptions, class weights)
DESCRIBING = ("num_classes", "ignore_index", "class_names", "palette", "layout", "root", "split", "label_map", "colour_table")
MEMORY_FRACTION = 0.5
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


class InMemoryDataset(Dataset[tuple[Tensor, Tensor]]):
    """The items of an untransformed ``dataset`` (uint8 image (3, H, W), integer mask (H, W)),
    decoded once in ``__init__`` and served from memory, with this wrapper's own ``transforms``.

    ``dataset``'s own ``transforms`` are set aside while its items are read and put back afterwards.
    ``num_classes``, ``ignore_index``, ``class_names``, ``palette`` and ``layout`` are copied from it.
    ``available_bytes`` (default: :func:`available_memory`) and ``fraction`` bound the estimate of
    :func:`estimate_bytes`: above ``fraction * available_bytes`` a ``ValueError`` says so and
    nothing is decoded.
    """

    def __init__(
        self,
        dataset: Any,
        transforms: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        available_bytes: int | None = None,
        fraction: float = MEMORY_FRACTION,
        name: str = "dataset",
    ) -> None:
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be a callable (image, mask) -> (image, mask), got {type(transforms).__name__}")
        needed = estimate_bytes(dataset)
        available = available_memory() if available_bytes is None else available_bytes
        if needed > fraction * available:
            raise ValueError(
                f"caching the {name} in memory needs about {needed / 2**20:,.0f} MiB, more than {fraction:.0%} of the "
                f"{available / 2**20:,.0f} MiB available; train without the cache (--no-cache, DataConfig(cache=False))"
            )
        saved = getattr(dataset, "transforms", None)
        if saved is not None:
            dataset.transforms = None
        try:
            items = [dataset[i] for i in range(len(dataset))]
        finally:
            if saved is not None:
                dataset.transforms = saved
        self.images: list[Tensor] = []
        self.masks: list[Tensor] = []
        for index, (image, mask) in enumerate(items):
            if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.dim() != 3:
                raise TypeError(f"item {index} of the {name} is not an untransformed uint8 (3, H, W) image")
            self.images.append(image.contiguous())
            small = mask.numel() == 0 or (int(mask.min()) >= 0 and int(mask.max()) <= 255)
            self.masks.append(mask.to(torch.uint8) if small else mask.clone())
        self.transforms = transforms
        for attribute in DESCRIBING:
            if hasattr(dataset, attribute):
                setattr(self, attribute, getattr(dataset, attribute))

    @property
    def nbytes(self) -> int:
        """Bytes the cached tensors hold."""
        return sum(t.numel() * t.element_size() for t in (*self.images, *self.masks))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.images[index], self.masks[index].long()
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


def estimate_bytes(dataset: Any) -> int:
    """The memory :class:`InMemoryDataset` would take for ``dataset``: 4 bytes per pixel. Image
    sizes come from the file headers when the dataset lists its files (``samples``, as
    :class:`~segzoo.data.SegmentationFolder` does), otherwise from the first item times the length."""
    samples = getattr(dataset, "samples", None)
    if samples:
        total = 0
        for image_path, _ in samples:
            with Image.open(image_path) as image:  # reads the header only
                width, height = image.size
            total += 4 * width * height
        return total
    if len(dataset) == 0:
        return 0
    saved = getattr(dataset, "transforms", None)
    if saved is not None:
        dataset.transforms = None
    try:
        image, _ = dataset[0]
    finally:
        if saved is not None:
            dataset.transforms = saved
    return 4 * int(image.shape[-1]) * int(image.shape[-2]) * len(dataset)


def available_memory() -> int:
    """Bytes this process may still allocate: ``MemAvailable`` of ``/proc/meminfo``, lowered by a
    cgroup v2 memory limit (``memory.max - memory.current``) when there is one; where neither can
    be read (not Linux), 8 GiB is assumed."""
    available = None
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        available = None
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int((_CGROUP / "memory.current").read_text().strip())
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available if available is not None else 8 * 2**30
