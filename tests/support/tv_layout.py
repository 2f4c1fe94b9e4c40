"""Test helper: torchvision's VGG checkpoint layout, built independently of segzoo.

The layout is rebuilt here from a flat torchvision-style config (``64, 64, "M", ...``) the way
torchvision's ``vgg.make_layers`` does it, so tests compare segzoo against this, never against
segzoo's own key map. Module structures are built on the meta device (no memory, no init cost);
checkpoints are filled with seeded random values so that any misplaced tensor shows.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: torchvision's configuration "D" (VGG16).
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

#: The published checkpoint files, as named by torchvision.
VGG16_FILE = "vgg16-397923af.pth"
VGG16_BN_FILE = "vgg16_bn-6c64b313.pth"


def file_name(batch_norm: bool) -> str:
    return VGG16_BN_FILE if batch_norm else VGG16_FILE


class TvVGG(nn.Module):
    """torchvision's ``VGG`` module layout: ``features``, ``avgpool``, ``classifier``."""

    def __init__(self, cfg: list[int | str] = VGG16_CFG, batch_norm: bool = True, classifier: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(channels, int(v), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        if classifier:
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 1000),
            )


def meta_model(cfg: list[int | str] = VGG16_CFG, batch_norm: bool = True, classifier: bool = True) -> TvVGG:
    """The layout on the meta device: keys and shapes only."""
    with torch.device("meta"):
        return TvVGG(cfg, batch_norm, classifier)


def conv_bn_indices(cfg: list[int | str] = VGG16_CFG, batch_norm: bool = True) -> list[tuple[int, int | None]]:
    """``(conv index, BN index or None)`` in ``features`` for every conv, read off the built Sequential."""
    pairs: list[tuple[int, int | None]] = []
    for i, module in enumerate(meta_model(cfg, batch_norm, classifier=False).features):
        if isinstance(module, nn.Conv2d):
            pairs.append((i, None))
        elif isinstance(module, nn.BatchNorm2d):
            pairs[-1] = (pairs[-1][0], i)
    return pairs


def random_state_dict(
    batch_norm: bool,
    seed: int = 0,
    cfg: list[int | str] = VGG16_CFG,
    classifier: bool = True,
    num_batches_tracked: bool = True,
) -> dict[str, Tensor]:
    """A torchvision-layout state dict with every tensor random (running_var positive)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in meta_model(cfg, batch_norm, classifier).state_dict().items():
        if key.endswith("num_batches_tracked"):
            if num_batches_tracked:
                state[key] = torch.randint(1, 10_000, (), generator=generator, dtype=meta.dtype)
        elif key.endswith("running_var"):
            state[key] = torch.rand(meta.shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(meta.shape, generator=generator)
    return state


def conv_bn_modules(module: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every Conv2d of ``module`` in definition order, with the BatchNorm2d defined right after it."""
    pairs: list[list] = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            pairs.append([m, None])
        elif isinstance(m, nn.BatchNorm2d):
            pairs[-1][1] = m
    return [(conv, bn) for conv, bn in pairs]


def assert_encoder_matches(
    encoder: nn.Module, state: dict[str, Tensor], batch_norm: bool, cfg: list[int | str] = VGG16_CFG
) -> None:
    """Every conv / BN tensor of ``encoder`` equals the checkpoint's, walking both in conv order."""
    modules = conv_bn_modules(encoder)
    indices = conv_bn_indices(cfg, batch_norm)
    assert len(modules) == len(indices)
    for n, ((conv, bn), (ci, bi)) in enumerate(zip(modules, indices)):
        assert torch.equal(conv.weight, state[f"features.{ci}.weight"]), f"conv {n} weight"
        assert torch.equal(conv.bias, state[f"features.{ci}.bias"]), f"conv {n} bias"
        if bi is None:
            assert bn is None, f"conv {n} has an unexpected BN"
            continue
        assert bn is not None, f"conv {n} lacks its BN"
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(bn, name), state[f"features.{bi}.{name}"]), f"bn {n} {name}"
        if f"features.{bi}.num_batches_tracked" in state:
            assert torch.equal(bn.num_batches_tracked, state[f"features.{bi}.num_batches_tracked"])
