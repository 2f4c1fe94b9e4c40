"""Pooling with indices and unpooling against the independent NumPy reference."""

import numpy as np
import pytest
import torch

from reference_pooling import pool, unpool
from segzoo.pooling import max_pool_with_indices, max_unpool

SIZES = [(2, 2), (5, 7), (45, 60), (23, 30), (97, 131)]
CASES = [(size, ceil) for size in SIZES for ceil in (True, False)] + [((1, 3), True)]


@pytest.mark.parametrize(("size", "ceil_mode"), CASES)
def test_pool_then_unpool_matches_reference(size, ceil_mode):
    """Values go back to exactly the positions they came from, at odd sizes and in both modes."""
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pooled, indices = max_pool_with_indices(x, ceil_mode)
    values, positions = pool(x.numpy(), ceil_mode)
    np.testing.assert_array_equal(pooled.numpy(), values)
    restored = max_unpool(pooled, indices, x.shape[-2:])
    assert restored.shape == x.shape
    np.testing.assert_array_equal(restored.numpy(), unpool(values, positions, size))


def test_ties_go_to_the_first_position_in_the_window():
    """A constant window keeps its top-left element, in agreement with the reference."""
    x = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    pooled, indices = max_pool_with_indices(x, ceil_mode=True)
    restored = max_unpool(pooled, indices, x.shape[-2:]).numpy()
    np.testing.assert_array_equal(restored, unpool(*pool(x.numpy(), True), (3, 3)))
    assert restored[0, 0].tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 1]]


def test_unpool_needs_the_pre_pool_size():
    """Without the pre-pool size PyTorch infers 2x the pooled size, which is wrong for odd inputs."""
    x = torch.randn(1, 1, 45, 61)
    pooled, indices = max_pool_with_indices(x, ceil_mode=True)
    assert max_unpool(pooled, indices, (45, 61)).shape[-2:] == (45, 61)
    assert torch.nn.functional.max_unpool2d(pooled, indices, 2, 2).shape[-2:] == (46, 62)
