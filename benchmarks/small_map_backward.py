"""The CPU backward of FCN's and DeconvNet's fc6 on small maps: segzoo's explicitly padded layers
(``segzoo.models.small_maps``) against the plain padded layers, side by side in one run.

    python benchmarks/small_map_backward.py
    python benchmarks/small_map_backward.py --maps 2x2 6x8 8x10 --images 64x64 160x160 --repeats 2

Layer rows: forward + backward (input and weight gradients) of the 4096x512x7x7 fc6 (padding 3)
and of DeconvNet's deconv-fc6 (its transpose), batch 2, on pool5-sized maps. Model rows: one
training step (forward, cross-entropy, backward; batch 2) of FCN-8s and DeconvNet at image sizes,
with fc6 (and deconv-fc6) as shipped against the same weights in the plain layers. The variants
alternate, each ``--repeats`` times, and the fastest time of each is printed with the ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from recipe_throughput import cpu_model
from torch import nn

import segzoo
from segzoo.models.small_maps import ExplicitPadConv2d, ExplicitPadConvTranspose2d

PLAIN = {ExplicitPadConv2d: nn.Conv2d, ExplicitPadConvTranspose2d: nn.ConvTranspose2d}


def plain_copy(model: nn.Module) -> nn.Module:
    """``model`` with its explicitly padded layers turned back into the plain layers (same weights)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) in PLAIN:
            module.__class__ = PLAIN[type(module)]
    return model


def size(text: str) -> tuple[int, int]:
    height, width = text.split("x")
    return int(height), int(width)


def fastest(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """The fastest of ``repeats`` calls of each step, the steps alternating."""
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def layer_step(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    return step


def model_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()

    return step


def print_row(label: str, best: dict[str, float]) -> None:
    shipped, plain = best["explicit padding"], best["plain"]
    print(f"{label:<34} {shipped:9.3f} s {plain:9.3f} s {plain / shipped:8.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", nargs="+", type=size, default=[(2, 2), (6, 8), (8, 10), (12, 15)], help="fc6 map sizes HxW")
    parser.add_argument("--images", nargs="+", type=size, default=[(64, 64), (160, 160), (224, 224)], help="model input sizes HxW")
    parser.add_argument("--models", nargs="*", default=["fcn8s", "deconvnet"], help="none: the layer rows only")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print(f"{'forward + backward, batch 2':<34} {'explicit':>11} {'plain':>11} {'plain/explicit':>9}")
    torch.manual_seed(0)
    layers = {"fc6": ExplicitPadConv2d(512, 4096, 7, padding=3), "deconv-fc6": ExplicitPadConvTranspose2d(4096, 512, 7, padding=3)}
    for name, layer in layers.items():
        plain = plain_copy(layer)
        for height, width in args.maps:
            x = torch.randn(2, layer.in_channels, height, width, requires_grad=True)
            best = fastest({"explicit padding": layer_step(layer, x), "plain": layer_step(plain, x)}, args.repeats)
            print_row(f"{name} on {height}x{width} maps", best)
    for name in args.models:
        model = segzoo.get_model(name, num_classes=11).train()
        plain = plain_copy(model)
        for height, width in args.images:
            x, target = torch.randn(2, 3, height, width), torch.randint(0, 11, (2, height, width))
            best = fastest({"explicit padding": model_step(model, x, target), "plain": model_step(plain, x, target)}, args.repeats)
            print_row(f"{name} train step at {height}x{width}", best)


if __name__ == "__main__":
    main()
