"""The SegNet paper's Table 6 (time and memory of SegNet, FCN, DeconvNet and DeepLab-LargeFOV), measured
side by side in one run and reported as ratios to SegNet next to the paper's ratios.

    python benchmarks/table6.py                 # CPU, 1x3x360x480: takes minutes
    python benchmarks/table6.py --repeats 5 --device cuda

Each network as its paper builds it: SegNet (VGG16-BN encoder, 11 classes), FCN-8s ("FCN (learnt
deconv)": plain VGG16, the Caffe geometry with conv1_1 padded by 100), DeconvNet (BN everywhere),
DeepLab-LargeFOV (plain VGG16). Unpooling is segzoo's default (compact). Columns, as the paper's:

* forward / backward: median milliseconds of one training forward (autograd recording, train
  mode) and of the backward of its cross-entropy loss, batch 1 (the paper: ``caffe time``, batch 1);
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
import gc
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
from torch import nn

import segzoo
from models import LiveStorageBytes, median_ms, sync

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


def measure(name: str, kwargs: dict, args: argparse.Namespace, device: torch.device) -> tuple[float, ...]:
    torch.manual_seed(0)
    model = segzoo.get_model(name, num_classes=args.num_classes, **kwargs).to(device)
    h, w = args.size
    x = torch.randn(1, 3, h, w, device=device)
    y = torch.randint(0, args.num_classes, (1, h, w), device=device)

    def forward():
        return F.cross_entropy(model(x), y)

    def step():
        model.zero_grad(set_to_none=True)
        forward().backward()

    model.train()
    forward_ms = median_ms(forward, args.repeats, args.warmup, device)
    backward_times = []
    for _ in range(args.warmup + args.repeats):
        model.zero_grad(set_to_none=True)
        loss = forward()
        sync(device)
        start = time.perf_counter()
        loss.backward()
        sync(device)
        backward_times.append(1e3 * (time.perf_counter() - start))
    backward_ms = statistics.median(backward_times[args.warmup :])
    training = weight_bytes(model) + peak_bytes(step, device)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.inference_mode():
        inference = weight_bytes(model) + peak_bytes(lambda: model(x), device)
    size = weight_bytes(model)
    del model
    gc.collect()
    return forward_ms, backward_ms, training / MB, inference / MB, size / MB


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
    measured = {label: measure(*MODELS[label], args, device) for label in args.models}

    print(f"torch {torch.__version__}, {where}, input {args.size[0]}x{args.size[1]}, batch 1, {args.num_classes} classes, "
          f"median of {args.repeats} after {args.warmup} warm-up")  # fmt: skip
    print()
    print("| network | parameters | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for label, values in measured.items():
        name, kwargs = MODELS[label]
        with torch.device("meta"):
            count = sum(p.numel() for p in segzoo.get_model(name, num_classes=args.num_classes, **kwargs).parameters())
        print(f"| {label} | {count:,} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")
    print()
    print("Ratios to SegNet, measured here / paper's Table 6 (as recalled; Caffe, Titan GPU, training memory at batch 4):")
    print()
    print("| network | " + " | ".join(c.replace(" ms", "").replace(" MB", "") for c in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    base, paper_base = measured["SegNet"], PAPER["SegNet"]
    for label, values in measured.items():
        cells = [f"{v / b:.2f} / {p / pb:.2f}" for v, b, p, pb in zip(values, base, PAPER[label], paper_base)]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
