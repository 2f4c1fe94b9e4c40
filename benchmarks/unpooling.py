"""Native vs compact (uint8) max pooling and unpooling at SegNet's five VGG16 stage shapes.

    python benchmarks/unpooling.py --repeats 11

Prints a markdown table of
* eager CPU time of pooling and of unpooling, each summed over the stages of a 1x3x360x480 input
  (64@360x480 ... 512@23x30, ceil-mode pooling as in SegNet): median of ``--repeats`` runs after a
  warm-up, native and compact runs taking turns, with PyTorch's default thread count;
* the bytes autograd keeps for backward in one training forward through the five pool/unpool pairs
  (each storage counted once), and the part of them that is not the pooled inputs (in SegNet the
  ReLU before each pooling saves those anyway).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from segzoo.models.pooling import max_pool_with_indices, max_unpool

STAGES = ((64, 360, 480), (128, 180, 240), (256, 90, 120), (512, 45, 60), (512, 23, 30))
MB = 2**20


def median_ms(runs: dict[tuple[str, bool], Callable[[], object]], repeats: int, warmup: int) -> dict[tuple[str, bool], float]:
    """Median milliseconds of each run; the runs take turns, so that they share the machine's noise."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[tuple[str, bool], list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def timings(inputs: list[torch.Tensor], repeats: int, warmup: int) -> dict[tuple[str, bool], float]:
    """Median milliseconds keyed by ("pool" or "unpool", compact), each summed over the stages."""
    runs = {}
    with torch.no_grad():
        for compact in (False, True):
            pooled = [max_pool_with_indices(x, True, compact=compact) for x in inputs]
            runs["pool", compact] = lambda c=compact: [max_pool_with_indices(x, True, compact=c) for x in inputs]
            runs["unpool", compact] = lambda p=pooled: [max_unpool(v, i, x.shape[-2:]) for (v, i), x in zip(p, inputs)]
        return median_ms(runs, repeats, warmup)


def saved_bytes(inputs: list[torch.Tensor], compact: bool) -> tuple[int, int]:
    """Bytes saved for backward by the pool/unpool pairs, all and those other than the inputs'."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    leaves = [x.detach().requires_grad_() for x in inputs]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for x in leaves:
            pooled, indices = max_pool_with_indices(x, True, compact=compact)
            max_unpool(pooled, indices, x.shape[-2:])
    input_storages = {x.untyped_storage().data_ptr() for x in leaves}
    return sum(storages.values()), sum(n for ptr, n in storages.items() if ptr not in input_storages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before the timed ones")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(1, c, h, w, generator=generator) for c, h, w in STAGES]
    ms = timings(inputs, args.repeats, args.warmup)
    saved = {compact: saved_bytes(inputs, compact) for compact in (False, True)}
    rows = [
        ("pool, ms", ms["pool", False], ms["pool", True]),
        ("unpool, ms", ms["unpool", False], ms["unpool", True]),
        ("saved for backward, MB", saved[False][0] / MB, saved[True][0] / MB),
        ("saved beyond the pooled inputs, MB", saved[False][1] / MB, saved[True][1] / MB),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} runs\n")
    print("| 5 SegNet stages, 1x3x360x480 | native | compact | compact / native |")
    print("|---|---:|---:|---:|")
    for label, native, compact in rows:
        print(f"| {label} | {native:.1f} | {compact:.1f} | {compact / native:.2f} |")


if __name__ == "__main__":
    main()
