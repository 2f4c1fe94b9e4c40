"""Build every segzoo model, run it on a CamVid-sized batch and print what it returns.

    python examples/quickstart.py            # all models at 360x480, eval mode, CPU
    python examples/quickstart.py --size 97 131
"""

from __future__ import annotations

import argparse
import time

import torch

import segzoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=11)
    args = parser.parse_args()

    torch.manual_seed(0)
    image = torch.randn(1, 3, *args.size)
    print(f"| model | parameters | output for 1x3x{args.size[0]}x{args.size[1]} | forward (s) |")
    print("|---|---:|---|---:|")
    for name in segzoo.list_models():
        model = segzoo.get_model(name, num_classes=args.num_classes).eval()
        start = time.perf_counter()
        with torch.inference_mode():
            logits = model(image)
        seconds = time.perf_counter() - start
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {params:,} | {tuple(logits.shape)} | {seconds:.2f} |")
    labels = logits.argmax(1)
    print(f"\nper-pixel labels: {tuple(labels.shape)}, classes present: {labels.unique().tolist()}")


if __name__ == "__main__":
    main()
