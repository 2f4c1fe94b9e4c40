"""A learnable toy segmentation task held in memory, for the trainer and evaluation tests."""

import torch
from torch.utils.data import TensorDataset


def toy_dataset(n: int = 16, size: int = 32, seed: int = 0) -> TensorDataset:
    """``n`` float images (3, size, size) and int64 masks with 3 classes: the label is a function of
    the first two channels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x, y)
