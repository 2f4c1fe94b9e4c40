"""Training throughput of a recipe: images/s over a slice of one epoch, data loading included.

    python benchmarks/recipe_throughput.py --data ../shared/data/camvid --steps 10 --batch-size 4
    python benchmarks/recipe_throughput.py --data ../shared/data/camvid --amp off --no-cache --no-channels-last

Builds the recipe's model, training transforms (crop, scale, flips) and trainer exactly as
``segzoo train --recipe NAME`` does, runs ``--warmup`` steps, then times ``--steps`` training steps
(decoding or cache lookup, augmentation, forward, backward, optimizer step) and prints images/s
beside the CPU model (``lscpu``), torch version, thread count and load average; on a shared
machine, also the images/s the process CPU time implies (threads x images / CPU seconds), which
waiting for cores does not inflate. Options given here override the
recipe as on the command line; class weights are left out (they do not change the cost).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import time

import torch

from segzoo.data import InMemoryDataset, open_splits, train_transforms
from segzoo.models.registry import get_model
from segzoo.recipes import load_recipe
from segzoo.training import TrainConfig, Trainer, make_loader
from segzoo.training.memory_format import CHANNELS_LAST_WORDS, describe_channels_last
from segzoo.training.precision import describe_amp


class _Slice:
    """The first ``steps`` batches of a loader, with a length (the trainer needs one)."""

    def __init__(self, loader, steps: int) -> None:
        self.loader, self.steps = loader, steps
        self.dataset, self.sampler = loader.dataset, loader.sampler

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.steps)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--recipe", default="camvid-segnet-basic")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--amp", choices=("off", "on", "auto", "bf16", "fp16"))
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction)
    parser.add_argument("--channels-last", choices=tuple(CHANNELS_LAST_WORDS), help="(default: the recipe's)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_const", const="off")
    args = parser.parse_args()

    options = dict(load_recipe(args.recipe).options)
    if args.channels_last is not None:
        args.channels_last = CHANNELS_LAST_WORDS[args.channels_last]
    for key in ("batch_size", "amp", "cache", "channels_last"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    torch.manual_seed(0)
    train_set, _ = open_splits(args.data, options["layout"])
    kwargs = {k: options[k] for k in ("dropout", "batch_norm", "fixed_upsampling") if k in options}
    model = get_model(options["model"], num_classes=train_set.num_classes, **kwargs)
    started = time.perf_counter()
    if options.get("cache"):
        train_set = InMemoryDataset(train_set, name="training split")
    cache_seconds = time.perf_counter() - started
    crop = tuple(options["crop"])
    train_set.transforms = train_transforms(crop, model.mean, model.std, scale=tuple(options["train_scale"]))
    loader = make_loader(train_set, options["batch_size"], shuffle=True)
    # the recipe's optimizer settings (AdamW recipes have no momentum; TrainConfig's defaults fill in)
    optimizer = {k: options[k] for k in ("lr", "optimizer", "momentum", "weight_decay") if k in options}
    config = TrainConfig(
        epochs=1, **optimizer, amp=options.get("amp", "off"), channels_last=options.get("channels_last", False),
        ignore_index=train_set.ignore_index,
    )  # fmt: skip
    timings, cpu_seconds = [], []
    for steps in (args.warmup, args.steps):
        trainer = Trainer(model, _Slice(loader, steps), None, config, device="cpu", progress=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer._train_epoch()
        timings.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    images = args.steps * options["batch_size"]
    threads = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_model()}, {threads} threads, torch {torch.__version__}, load average {load:.1f}")
    print(
        f"{args.recipe}: batch {options['batch_size']} at {crop[0]}x{crop[1]}, amp {describe_amp(config.amp, 'cpu')}, "
        f"cache {bool(options.get('cache'))} ({cache_seconds:.1f} s to fill), "
        f"channels_last {describe_channels_last(config.channels_last, 'cpu', trainer.amp_dtype)}"
    )
    print(f"{images} images in {timings[1]:.1f} s: {images / timings[1]:.2f} images/s ({timings[1] / args.steps:.2f} s/step)")
    # on a shared machine the wall time includes waiting for cores; CPU time does not
    print(
        f"process CPU time {cpu_seconds[1]:.1f} s: {threads * images / cpu_seconds[1]:.2f} images/s "
        f"if the {threads} threads had their cores to themselves"
    )


if __name__ == "__main__":
    main()
