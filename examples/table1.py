"""The SegNet paper's Table 1 (decoder variants on CamVid), trained at a CPU-sized budget.

    python examples/table1.py --data ../shared/data/camvid --epochs 5 --size 90 120
    python examples/table1.py --data ../shared/data/camvid --variants segnet_basic fcn_basic --epochs 20
    python examples/table1.py --synthetic --epochs 1 --size 32 32          # seconds, no data needed

Every row trains with its recipe, ``camvid-<variant>`` (``segzoo recipes``; ``segzoo train --recipe
camvid-fcn-basic ...`` runs one at full size): camvid-segnet-basic's settings (the square roots
of the paper's median-frequency class weights, AdamW, poly schedule, crops and flips). Only the budget is
overridden here: ``--epochs``, ``--batch-size`` and the resolution, ``--size H W``, as
examples/camvid.py reduces it: crops of HxW from CamVid images scaled by the recipe's range times
H/360, evaluation images resized to HxW (the paper: 360x480 until the training loss converges;
synthetic images are made at HxW, so their scale range is the recipe's). Scores are counted against
the labels at their own resolution, on the val split (the paper: the test split). The table prints our G (global
accuracy), C (class average accuracy) and mIoU beside the paper's median-frequency-balanced test
figures, which are quoted from the paper's Table 1 as recalled: check them against the paper
before citing them.
"""

from __future__ import annotations

import argparse
import time

import torch

import segzoo
from segzoo.data import DataConfig, SyntheticShapes, open_splits
from segzoo.recipes import Recipe, load_recipe
from segzoo.training import TrainConfig, train

#: Table 1 of arXiv 1511.00561 (median frequency balancing, CamVid test): params (M), G, C, mIoU
PAPER = {
    "bilinear_interpolation": (0.625, 77.9, 61.1, 43.3),
    "segnet_basic": (1.425, 82.7, 62.0, 47.7),
    "segnet_basic_encoder_addition": (1.425, 83.4, 63.6, 48.5),
    "segnet_basic_single_channel_decoder": (0.625, 81.2, 60.7, 46.1),
    "fcn_basic": (0.65, 81.7, 62.4, 47.3),
    "fcn_basic_no_addition": (0.65, 80.5, 58.6, 44.1),
    "fcn_basic_no_dim_reduction": (1.625, 84.1, 63.4, 50.1),
    "fcn_basic_no_addition_no_dim_reduction": (1.625, 80.5, 61.6, 45.9),
}
VARIANTS = tuple(PAPER)
CAMVID_HEIGHT = 360  # the recipes' crops are 360x480, CamVid's image size

#: recipe fields and the TrainConfig / DataConfig fields they set; ``model`` and ``layout`` are
#: read separately, and any other field in a recipe stops the script rather than being dropped
TRAIN_FIELDS = {"epochs": "epochs", "lr": "lr", "optimizer": "optimizer", "momentum": "momentum",
                "weight_decay": "weight_decay", "schedule": "schedule", "amp": "amp", "channels_last": "channels_last",
                "val_every": "val_every"}  # fmt: skip
DATA_FIELDS = {"batch_size": "batch_size", "crop": "crop_size", "train_scale": "train_scale", "eval_size": "eval_size",
               "class_weights": "class_weights", "cache": "cache"}  # fmt: skip


def recipe_name(variant: str) -> str:
    """The recipe of a Table 1 row: ``camvid-`` and the model's name with dashes."""
    return "camvid-" + variant.replace("_", "-")


def configs(recipe: Recipe, args: argparse.Namespace) -> tuple[TrainConfig, DataConfig]:
    """The recipe's training and data settings with this script's budget: ``--epochs``,
    ``--batch-size``, and crops and evaluation images of ``--size``, the scale range reduced with
    them (for CamVid's 360-pixel-high images; synthetic ones are made at ``--size``)."""
    factor = 1.0 if args.synthetic else args.size[0] / CAMVID_HEIGHT
    low, high = recipe.options.get("train_scale", (1.0, 1.0))
    budget = {"epochs": args.epochs, "batch_size": args.batch_size, "crop": tuple(args.size),
              "train_scale": (low * factor, high * factor), "eval_size": tuple(args.size)}  # fmt: skip
    options = recipe.merged(budget, "examples/table1.py's budget").options
    unused = set(options) - set(TRAIN_FIELDS) - set(DATA_FIELDS) - {"model", "layout"}
    if unused:
        raise ValueError(f"{recipe.source} sets {sorted(unused)}, which examples/table1.py does not apply")
    train_config = TrainConfig(**{TRAIN_FIELDS[key]: value for key, value in options.items() if key in TRAIN_FIELDS})
    data = {DATA_FIELDS[key]: value for key, value in options.items() if key in DATA_FIELDS}
    if data.get("class_weights") == "none":
        data["class_weights"] = None
    return train_config, DataConfig(**data)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="CamVid root with train/ trainannot/ val/ valannot/")
    source.add_argument("--synthetic", action="store_true", help="segzoo's synthetic shapes instead (a smoke run)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), metavar="NAME",
                        help=f"which rows to train (default: all): {', '.join(VARIANTS)}")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(90, 120), metavar=("H", "W"), help="train/eval resolution")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=64, help="training images with --synthetic")
    parser.add_argument("--out", default="table1-runs")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser.parse_args(argv)


def datasets(args: argparse.Namespace):
    if args.synthetic:
        size = tuple(args.size)
        return SyntheticShapes(args.images, size, seed=0, class_textures=True), SyntheticShapes(16, size, seed=1, class_textures=True)
    return open_splits(args.data, "camvid")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    train_set, val_set = datasets(args)
    rows = []
    for name in args.variants:
        recipe = load_recipe(recipe_name(name))
        if recipe.options["model"] != name:
            raise ValueError(f"{recipe.source} trains {recipe.options['model']}, not {name}")
        config, data = configs(recipe, args)
        torch.manual_seed(0)
        model = segzoo.get_model(name, num_classes=train_set.num_classes)
        start = time.perf_counter()
        result = train(model, train_set, val_set, f"{args.out}/{name}", config, data, progress=args.progress)
        scores = result.scores
        rows.append(
            {
                "name": name,
                "params": sum(p.numel() for p in model.parameters()),
                "G": 100 * scores.global_accuracy,
                "C": 100 * scores.class_accuracy,
                "mIoU": 100 * scores.mean_iou,
                "seconds": time.perf_counter() - start,
            }
        )
        print(f"{name}: {args.epochs} epochs in {rows[-1]['seconds']:.0f} s", flush=True)
    where = "synthetic shapes" if args.synthetic else "CamVid val"
    print(f"\n{where}, {args.size[0]}x{args.size[1]}, {args.epochs} epochs, {train_set.num_classes} classes; "
          "paper: CamVid test, 360x480, median frequency balancing (Table 1, as recalled)\n")  # fmt: skip
    print("| variant | params (M) | paper params (M) | G | C | mIoU | paper G | paper C | paper mIoU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        paper = PAPER[row["name"]]
        print(
            f"| {row['name']} | {row['params'] / 1e6:.3f} | {paper[0]} | {row['G']:.1f} | {row['C']:.1f} | "
            f"{row['mIoU']:.1f} | {paper[1]} | {paper[2]} | {paper[3]} |"
        )
    return rows


if __name__ == "__main__":
    main()
