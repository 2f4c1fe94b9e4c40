"""BatchNorm statistics far from a fresh model's identity BN, so that code which dropped or
mistreated BN (a fold, an export) cannot agree with PyTorch by accident."""

import torch
from torch import nn

_RANGES = {"running_mean": (-0.5, 0.5), "running_var": (0.5, 2.0), "weight": (0.5, 1.5), "bias": (-0.5, 0.5)}


def randomise_batch_norms(model: nn.Module) -> nn.Module:
    """Set every BatchNorm2d's running statistics and affine parameters to seeded random values (in place)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                for attribute, (low, high) in _RANGES.items():
                    getattr(bn, attribute).copy_(low + (high - low) * torch.rand(bn.num_features, generator=generator))
    return model
