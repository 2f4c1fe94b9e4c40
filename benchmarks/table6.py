"""The SegNet paper's Table 6 (time and memory of SegNet, FCN, DeconvNet and DeepLab-LargeFOV), measured
side by side in one run and reported as ratios to SegNet next to the paper's ratios.

    python benchmarks/table6.py                 # CPU, 1x3x360x480: takes minutes
    python benchmarks/table6.py --repeats 5 --device cuda

Each network as its paper builds it: SegNet (VGG16-BN encoder, 11 classes), FCN-8s ("FCN (learnt
deconv)": plain VGG16, the Caffe geometry with conv1_1 padded by 100), DeconvNet (BN everywhere),
DeepLab-LargeFOV (plain VGG16). Unpooling is segzoo's default (compact). Columns, as the paper's:

* forward / backward: median milliseconds of one training forward (autograd recording, train
  mode) and of the backward of its cross-entropy loss, batch 1 (the paper: ``caffe time``, batch 1).
  The models take turns in each of ``--repeats`` rounds and the time ratios are medians of the
  per-round ratios, so that other load on the machine weighs on every model alike;
* training memory: weights + the peak of every tensor a training forward and backward create
  (activations, saved tensors, gradients), batch 1 (the paper: ``nvidia-smi`` while training with
  batch 4, so its activations weigh four times as much against the weights);
* inference memory: weights + the peak of the tensors an inference forward creates, batch 1;
* model size: parameters and buffers, float32, in MB (the paper: the Caffe model file).

On the CPU the peaks are counted by a dispatch mode that tracks every live storage (see
``benchmarks/models.py``); on CUDA they are ``max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from models import LiveStorageBytes, sync
from torch import nn

import segzoo

MB = 1e6

#: Table 6 of arXiv 1511.00561 (Caffe on an NVIDIA Titan GPU, 360x480), as recalled: forward ms,
#: backward ms, training memory MB (batch 4), inference memory MB (batch 1), model size MB
PAPER = {
    "SegNet": (422.50, 488.71, 6803, 1052, 117),
    "DeepLab-LargeFOV": (110.06, 160.73, 5618, 1993, 83),
    "FCN (learnt deconv)": (317.09, 484.11, 9735, 1806, 539),
    "DeconvNet": (474.65, 602.15, 9731, 1872, 877),
}
MODELS = {
    "SegNet": ("segnet", {}),
    "DeepLab-LargeFOV": ("deeplab_largefov", {"batch_norm": False}),
    "FCN (learnt deconv)": ("fcn8s", {"batch_norm": False, "geometry": "caffe"}),
    "DeconvNet": ("deconvnet", {}),
}
COLUMNS = ("forward ms", "backward ms", "training MB", "inference MB", "model size MB")


def weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def peak_bytes(run, device: torch.device) -> int:
    """Peak bytes of the tensors ``run()`` creates (on CUDA: of all allocations, less those before)."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with LiveStorageBytes() as tracker:
        run()
    return tracker.peak


def build(name: str, kwargs: dict, args: argparse.Namespace, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return segzoo.get_model(name, num_classes=args.num_classes, **kwargs).to(device)


def timed(run, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return 1e3 * (time.perf_counter() - start)


def times(models: dict[str, nn.Module], args: argparse.Namespace, device: torch.device) -> dict[str, list[tuple[float, float]]]:
    """(forward ms, backward ms) of every model per round, the models taking turns in each round, so
    that a machine whose load drifts during the run slows every model alike within a round."""
    h, w = args.size
    x = torch.randn(1, 3, h, w, device=device)
    y = torch.randint(0, args.num_classes, (1, h, w), device=device)
    rounds: dict[str, list[tuple[float, float]]] = {label: [] for label in models}
    for _ in range(args.warmup + args.repeats):
        for label, model in models.items():
            model.train().zero_grad(set_to_none=True)
            losses = []
            forward = timed(lambda m=model: losses.append(F.cross_entropy(m(x), y)), device)
            backward = timed(lambda: losses.pop().backward(), device)
            model.zero_grad(set_to_none=True)
            rounds[label].append((forward, backward))
    return {label: values[args.warmup :] for label, values in rounds.items()}


def memory(model: nn.Module, args: argparse.Namespace, device: torch.device) -> tuple[float, float, float]:
    """Training and inference memory and model size, MB."""
    h, w = args.size
    x = torch.randn(1, 3, h, w, device=device)
    y = torch.randint(0, args.num_classes, (1, h, w), device=device)

    def step():
        F.cross_entropy(model(x), y).backward()

    model.train().zero_grad(set_to_none=True)
    size = weight_bytes(model)
    training = size + peak_bytes(step, device)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.inference_mode():
        inference = size + peak_bytes(lambda: model(x), device)
    return training / MB, inference / MB, size / MB


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    if "SegNet" not in args.models:
        parser.error("the ratios are to SegNet: keep it in --models")
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    load_before = os.getloadavg()[0]
    models = {label: build(*MODELS[label], args, device) for label in args.models}
    rounds = times(models, args, device)
    measured = {}
    for label, model in models.items():
        forward, backward = (statistics.median(r[i] for r in rounds[label]) for i in (0, 1))
        measured[label] = (forward, backward, *memory(model, args, device))
    load_after = os.getloadavg()[0]

    print(f"torch {torch.__version__}, {where}, input {args.size[0]}x{args.size[1]}, batch 1, {args.num_classes} classes; "
          f"times: median of {args.repeats} rounds after {args.warmup}, the models taking turns in each; "
          f"1-minute load average {load_before:.1f} before, {load_after:.1f} after")  # fmt: skip
    print()
    print("| network | parameters | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for label, values in measured.items():
        count = sum(p.numel() for p in models[label].parameters())
        print(f"| {label} | {count:,} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")
    print()
    print("Ratios to SegNet, measured here / paper's Table 6 (as recalled; Caffe, Titan GPU, training memory at batch 4);")
    print("time ratios are medians of the per-round ratios:")
    print()
    print("| network | " + " | ".join(c.replace(" ms", "").replace(" MB", "") for c in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    paper_base = PAPER["SegNet"]
    for label, values in measured.items():
        ours = [statistics.median(r[i] / b[i] for r, b in zip(rounds[label], rounds["SegNet"])) for i in (0, 1)]
        ours += [v / b for v, b in zip(values[2:], measured["SegNet"][2:])]
        cells = [f"{o:.2f} / {p / pb:.2f}" for o, p, pb in zip(ours, PAPER[label], paper_base)]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
