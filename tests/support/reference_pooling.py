"""An independent NumPy 2x2/2 max-pool-with-positions and unpool, used as ground truth in tests."""

from __future__ import annotations

import numpy as np


def pool(x: np.ndarray, ceil_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, H, W) -> pooled values and the (row, col) of each window's maximum in the input plane.

    Ties go to the first position in row-major order inside the window, as in PyTorch.
    """
    n, c, h, w = x.shape
    ph, pw = ((h + 1) // 2, (w + 1) // 2) if ceil_mode else (h // 2, w // 2)
    padded = np.full((n, c, 2 * ph, 2 * pw), -np.inf, dtype=np.float64)
    rows, cols = min(h, 2 * ph), min(w, 2 * pw)
    padded[:, :, :rows, :cols] = x[:, :, :rows, :cols]
    windows = padded.reshape(n, c, ph, 2, pw, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ph, pw, 4)
    choice = windows.argmax(-1)
    values = np.take_along_axis(windows, choice[..., None], -1)[..., 0]
    row = 2 * np.arange(ph)[:, None] + choice // 2
    col = 2 * np.arange(pw)[None, :] + choice % 2
    return values, np.stack([row, col], -1)


def unpool(values: np.ndarray, positions: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scatter ``values`` to ``positions`` in a zero map of spatial ``size``."""
    n, c, ph, pw = values.shape
    out = np.zeros((n, c, *size), dtype=values.dtype)
    ni, ci, ii, jj = np.meshgrid(np.arange(n), np.arange(c), np.arange(ph), np.arange(pw), indexing="ij")
    out[ni, ci, positions[..., 0], positions[..., 1]] = values
    return out
