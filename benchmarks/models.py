"""SegNet, SegNet-Basic and FCN-8s: segzoo's fast paths against a plain eager reference, side by side.

    python benchmarks/models.py                       # CPU, 1x3x360x480, prints a markdown table
    python benchmarks/models.py --device cuda --compile --train-batch 8
    python benchmarks/models.py --allocator           # also: glibc malloc settings, in subprocesses

The reference is written here, as a straightforward eager port would be: conv, separate BatchNorm,
ReLU, native ``max_unpool2d`` (SegNet), NCHW, float32. Its FLOPs are checked to equal segzoo's, so
both compute the same network. Variants:

* eval: ``reference``; ``segzoo`` (the model as built: compact unpooling); ``fused``
  (:func:`segzoo.fuse_for_inference`: BN folded, channels_last); ``fused bf16`` (the same under bf16
  autocast); ``fused+compile`` (inductor, with ``--compile``).
* train (one SGD step at ``--train-batch``): ``reference``; ``segzoo`` (channels_last); ``segzoo
  bf16`` (channels_last + bf16 autocast, compiled with ``--compile``).

Columns: median milliseconds over ``--repeats`` runs after warm-up, images per second, and peak
memory of the tensors the forward creates (activations + pooling indices; weights excluded): on
CUDA ``max_memory_allocated``, on the CPU counted by a dispatch mode that tracks every live storage.
On CUDA the achieved TFLOP/s (FLOPs from ``FlopCounterMode``, 3x the forward for a train step) is
reported against the measured bf16 matmul peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

import segzoo
from segzoo import fuse_for_inference

MiB = 2**20
VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


# ---------------------------------------------------------------- the plain reference implementations


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, bias: bool = True, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ReferenceSegNet(nn.Module):
    """Encoder stages, ``F.max_pool2d(return_indices=True)``, ``F.max_unpool2d``, mirrored decoder."""

    def __init__(self, num_classes: int, basic: bool = False) -> None:
        super().__init__()
        stages = ((64,),) * 4 if basic else VGG16
        kernel, bias, decoder_relu = (7, False, False) if basic else (3, True, True)
        self.encoder = nn.ModuleList()
        cin = 3
        for widths in stages:
            layers = []
            for width in widths:
                layers += conv_bn_relu(cin, width, kernel, bias)
                cin = width
            self.encoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList()
        for i, widths in enumerate(reversed(stages)):
            below = list(reversed(stages))[i + 1][-1] if i + 1 < len(stages) else widths[-1]
            outs = [*widths[:-1], below]
            if not basic and i == len(stages) - 1:
                outs = outs[:-1]  # SegNet: the mirror of conv1_1 is the classifier
            layers = []
            for width in outs:
                layers += conv_bn_relu(cin, width, kernel, bias, decoder_relu)
                cin = width
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(cin, num_classes, 1 if basic else 3, padding=0 if basic else 1)

    def forward(self, x: Tensor) -> Tensor:
        sizes, indices = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, where = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
            indices.append(where)
        for stage, where, size in zip(self.decoder, reversed(indices), reversed(sizes)):
            x = stage(F.max_unpool2d(x, where, 2, 2, output_size=size))
        return self.classifier(x)


class ReferenceFCN8s(nn.Module):
    """VGG16-BN, fc6 (7x7, same padding) / fc7 as convs, scores on pool3/pool4, bilinear-shaped deconvs."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        cin = 3
        for widths in VGG16:
            layers = []
            for width in widths:
                layers += conv_bn_relu(cin, width)
                cin = width
            self.stages.append(nn.Sequential(*layers))
        self.fc6, self.fc7 = nn.Conv2d(512, 4096, 7, padding=3), nn.Conv2d(4096, 4096, 1)
        self.score_fr, self.score_pool4, self.score_pool3 = (nn.Conv2d(c, num_classes, 1) for c in (4096, 512, 256))
        self.up2, self.up_pool4 = (nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False) for _ in range(2))
        self.up8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, 4, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        size, taps = x.shape[-2:], []
        for stage in self.stages:
            x = F.max_pool2d(stage(x), 2, 2, ceil_mode=True)
            taps.append(x)
        x = self.score_fr(F.dropout(F.relu(self.fc7(F.dropout(F.relu(self.fc6(x)), 0.5, self.training))), 0.5, self.training))
        pool4 = self.score_pool4(taps[3])
        x = self.up2(x)[..., : pool4.shape[-2], : pool4.shape[-1]] + pool4
        pool3 = self.score_pool3(taps[2])
        x = self.up_pool4(x)[..., : pool3.shape[-2], : pool3.shape[-1]] + pool3
        return self.up8(x)[..., : size[0], : size[1]]


def reference(name: str, num_classes: int) -> nn.Module:
    return {"segnet": lambda: ReferenceSegNet(num_classes), "segnet_basic": lambda: ReferenceSegNet(num_classes, basic=True),
            "fcn8s": lambda: ReferenceFCN8s(num_classes)}[name]()  # fmt: skip


# ---------------------------------------------------------------- measuring


class LiveStorageBytes(TorchDispatchMode):
    """Peak bytes of the storages created under it and still alive (tensors made before are not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, (ref, size) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.current -= size
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def median_ms(run: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_forward_bytes(model: nn.Module, x: Tensor) -> int:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with torch.inference_mode(), LiveStorageBytes() as tracker:
        model(x)
    return tracker.peak


def forward_flops(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def bf16_matmul_peak(device: torch.device) -> float:
    """Measured TFLOP/s of a large bf16 matmul: the ceiling achieved throughput is compared with."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ a, 10, 3, device)
    return 2 * 8192**3 / (ms / 1e3) / 1e12


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, bf16: bool) -> None:
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def benchmark(name: str, args: argparse.Namespace) -> list[dict[str, object]]:
    device, (h, w) = torch.device(args.device), args.size
    torch.manual_seed(0)
    ours = segzoo.get_model(name, num_classes=args.num_classes).to(device)
    plain = reference(name, args.num_classes).to(device)
    x = torch.randn(1, 3, h, w, device=device)
    flops = forward_flops(ours.eval(), x)
    plain_flops = forward_flops(plain.eval(), x)
    if abs(flops - plain_flops) > 0.01 * flops:
        raise SystemExit(f"{name}: the reference has {plain_flops / 1e9:.1f} GFLOPs, segzoo {flops / 1e9:.1f}: not the same network")
    rows = []

    eval_variants: dict[str, tuple[nn.Module, Tensor]] = {"reference": (plain.eval(), x), "segzoo": (ours.eval(), x)}
    fused = fuse_for_inference(ours)
    x_fused = x.contiguous(memory_format=torch.channels_last)
    eval_variants["fused"] = (fused, x_fused)
    eval_variants["fused bf16"] = (fused, x_fused)
    if args.compile:
        eval_variants["fused+compile"] = (torch.compile(fused), x_fused)
    for variant, (model, inputs) in eval_variants.items():
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled="bf16" in variant):
            ms = median_ms(lambda m=model, i=inputs: m(i), args.repeats, args.warmup, device)
            mib = peak_forward_bytes(model, inputs) / MiB
        rows.append({"model": name, "mode": "eval", "variant": variant, "batch": 1, "ms": ms, "img_s": 1e3 / ms,
                     "mib": mib, "tflops": flops / (ms / 1e3) / 1e12})  # fmt: skip

    batch = args.train_batch
    xb = torch.randn(batch, 3, h, w, device=device)
    yb = torch.randint(0, args.num_classes, (batch, h, w), device=device)
    trainable = segzoo.get_model(name, num_classes=args.num_classes).to(device, memory_format=torch.channels_last).train()
    train_variants = {
        "reference": (plain.train(), xb, False),
        "segzoo": (trainable, xb.contiguous(memory_format=torch.channels_last), False),
        "segzoo bf16" + (" compiled" if args.compile else ""): (
            torch.compile(trainable) if args.compile else trainable, xb.contiguous(memory_format=torch.channels_last), True
        ),
    }
    for variant, (model, inputs, bf16) in train_variants.items():
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
        ms = median_ms(lambda m=model, i=inputs, o=optimizer, b=bf16: train_step(m, o, i, yb, b),
                       max(args.repeats // 3, 3), args.warmup, device)  # fmt: skip
        rows.append({"model": name, "mode": f"train x{batch}", "variant": variant, "batch": batch, "ms": ms,
                     "img_s": batch * 1e3 / ms, "mib": float("nan"), "tflops": 3 * flops * batch / (ms / 1e3) / 1e12})  # fmt: skip
    return rows


def table(rows: list[dict[str, object]], device: torch.device, peak: float | None) -> str:
    lines = ["| model | mode | variant | ms | images/s | vs reference | peak MiB (activations + indices) |"
             + (" TFLOP/s (% of bf16 peak) |" if peak else ""), "|---|---|---|---:|---:|---:|---:|" + ("---:|" if peak else "")]  # fmt: skip
    base: dict[tuple[object, object], float] = {}
    for row in rows:
        key = (row["model"], row["mode"])
        base.setdefault(key, row["ms"])  # type: ignore[arg-type]
        memory = "" if row["mib"] != row["mib"] else f"{row['mib']:.0f}"
        line = (f"| {row['model']} | {row['mode']} | {row['variant']} | {row['ms']:.1f} | {row['img_s']:.2f} | "
                f"{row['ms'] / base[key]:.2f}x | {memory} |")  # fmt: skip
        if peak:
            line += f" {row['tflops']:.1f} ({100 * row['tflops'] / peak:.0f}%) |"  # type: ignore[operator]
        lines.append(line)
    return "\n".join(lines)


def allocator_comparison(args: argparse.Namespace) -> str:
    """SegNet eval latency with glibc's defaults and with large buffers kept (no mmap, no trimming)."""
    settings = {"glibc defaults": {}, "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1e12": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(10**12)}}
    code = (
        "import sys, torch, segzoo; sys.path.insert(0, 'benchmarks'); from models import fuse_for_inference, median_ms, reference;"
        f"m = segzoo.get_model('segnet', num_classes={args.num_classes}).eval(); r = reference('segnet', {args.num_classes}).eval();"
        f"x = torch.randn(1, 3, {args.size[0]}, {args.size[1]}); d = torch.device('cpu');"
        "f = fuse_for_inference(m); xf = x.contiguous(memory_format=torch.channels_last);"
        "torch.set_grad_enabled(False);"
        f"print(median_ms(lambda: r(x), {args.repeats}, {args.warmup}, d), median_ms(lambda: f(xf), {args.repeats}, {args.warmup}, d))"
    )
    lines = ["| malloc settings | SegNet reference ms | SegNet fused ms |", "|---|---:|---:|"]
    for label, extra in settings.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
        lines.append(f"| {label} | {float(out[0]):.1f} | {float(out[1]):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["segnet", "segnet_basic", "fcn8s"], choices=["segnet", "segnet_basic", "fcn8s"])
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (inductor) variants")
    parser.add_argument("--allocator", action="store_true", help="also compare glibc malloc settings (CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [row for name in args.models for row in benchmark(name, args)]
    peak = bf16_matmul_peak(device) if device.type == "cuda" else None
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, input {args.size[0]}x{args.size[1]}, {args.num_classes} classes"
          + (f", measured bf16 matmul peak {peak:.0f} TFLOP/s" if peak else ""))  # fmt: skip
    print(table(rows, device, peak))
    if args.allocator:
        print()
        print(allocator_comparison(args))


if __name__ == "__main__":
    main()
