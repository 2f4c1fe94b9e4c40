"""Shared fixtures: one instance per registered model, built once per session (VGG models are big),
and small image/mask folder datasets on disk."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.models import NUM_CLASSES

import segzoo

pytest_plugins = ("support.isolation",)


@pytest.fixture(scope="session")
def model_cache():
    cache = {}

    def get(name: str, **kwargs):
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = segzoo.get_model(name, num_classes=NUM_CLASSES, **kwargs)
        return cache[key]

    return get


@pytest.fixture
def one_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a busy machine their spinning costs
    several times the work (10 small SegNet-Basic forwards: 3 s with two threads, 0.2 s with one).
    Used through ``support.properties.one_thread``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_folder_dataset(tmp_path_factory) -> Callable[..., Path]:
    """``make(train, val, size)``: a new DATA/{train,val}/{images,masks} folder dataset (the
    ``folder`` layout) of ``size`` (h, w) PNGs. Masks are 3 row bands, classes 0, 1, 2 from the
    top, with the first 2 + i pixels of image i's top row ignored (255); images are noise plus
    80 per class level, so the task is learnable."""

    def make(train: int = 6, val: int = 3, size: tuple[int, int] = (40, 48)) -> Path:
        root = tmp_path_factory.mktemp("data")
        rng = np.random.default_rng(0)
        height, width = size
        for split, count in (("train", train), ("val", val)):
            (root / split / "images").mkdir(parents=True)
            (root / split / "masks").mkdir(parents=True)
            for i in range(count):
                mask = np.repeat(np.arange(height) // -(-height // 3), width).reshape(height, width).astype(np.uint8)
                mask[0, : 2 + i] = 255
                image = rng.integers(0, 60, (*size, 3), dtype=np.uint8) + (mask.clip(0, 2)[..., None] * 80).astype(np.uint8)
                Image.fromarray(image).save(root / split / "images" / f"{i}.png")
                Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{i}.png")
        return root

    return make


@pytest.fixture(scope="session")
def folder_dataset(make_folder_dataset) -> Path:
    """The shared folder dataset: 6 training and 3 validation images of 40x48 (see ``make_folder_dataset``)."""
    return make_folder_dataset()
