"""Shared fixtures: one instance per registered model, built once per session (VGG models are big)."""

import pytest
import torch

import segzoo
from support.models import NUM_CLASSES


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
