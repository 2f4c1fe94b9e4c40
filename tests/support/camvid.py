"""A tiny CamVid tree on disk (train/val images and annotations, void label 11 in the top row)."""

from pathlib import Path

import numpy as np
from PIL import Image


def make_tiny_camvid(root: Path, size: tuple[int, int] = (8, 8)) -> Path:
    """``root/{train,val}/a.png`` (black) and ``root/{train,val}annot/a.png`` (class 0, top row 11)."""
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / split / "a.png")
        mask = np.zeros(size, np.uint8)
        mask[0] = 11
        Image.fromarray(mask, mode="L").save(root / f"{split}annot" / "a.png")
    return root
