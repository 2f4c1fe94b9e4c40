"""A large photo through sliding-window inference: wall time and peak memory, whole image vs tiles.

    python benchmarks/tiling.py                              # SegNet-Basic, 3000x4000, tiles 360x480
    python benchmarks/tiling.py --model segnet --size 1500 2000 --tile 360 480 --overlap 0.25

Each configuration runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its
own: the model, the image, the tiles' activations and the (classes, H, W) float32 blend
accumulator. ``whole`` runs the image in one forward pass for comparison (skipped with
``--no-whole``: at 3000x4000 it needs several GB). Prints a markdown table and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import torch
import segzoo
from segzoo.inference import InferenceOptions, infer
name, classes, h, w, tile, overlap, blend, batch = json.loads(sys.argv[1])
torch.manual_seed(0)
model = segzoo.get_model(name, num_classes=classes).eval()
image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
options = InferenceOptions(tile=tuple(tile) if tile else None, overlap=overlap, blend=blend, tile_batch=batch)
started = time.perf_counter()
labels = infer(model, image, options).labels
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "shape": list(labels.shape)}))
"""


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def measure(args: argparse.Namespace, tile: list[int] | None) -> dict:
    spec = [args.model, args.num_classes, *args.size, tile, args.overlap, args.blend, args.tile_batch]
    run = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segnet_basic")
    parser.add_argument("--num-classes", type=int, default=11)
    parser.add_argument("--size", type=int, nargs=2, default=(3000, 4000), metavar=("H", "W"))
    parser.add_argument("--tile", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--blend", default="gaussian")
    parser.add_argument("--tile-batch", type=int, default=4)
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-image pass")
    args = parser.parse_args()
    import torch

    print(f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.model}, {args.num_classes} classes, image {args.size[0]}x{args.size[1]}")  # fmt: skip
    print("| variant | seconds | peak MiB (process) |")
    print("|---|---:|---:|")
    variants = [(f"tiles {args.tile[0]}x{args.tile[1]}, overlap {args.overlap}, {args.blend}", list(args.tile))]
    if not args.no_whole:
        variants.append(("whole image", None))
    for label, tile in variants:
        result = measure(args, tile)
        print(f"| {label} | {result['seconds']:.1f} | {result['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
