"""CamVid with the SegNet papers' recipes, runnable on a CPU at reduced resolution.

    python examples/camvid.py --data ../shared/data/camvid --recipe camvid-segnet-basic --epochs 5
    python examples/camvid.py --data ../shared/data/camvid --recipe camvid-segnet --weights-backbone DEFAULT
    python examples/camvid.py --data ../shared/data/camvid --recipe camvid-bayesian-segnet-basic --mc 8
    python examples/camvid.py --data ../shared/data/camvid --full-size --epochs 24    # the recipe as written

Each run is ``segzoo train --recipe NAME`` (``segzoo recipes NAME`` prints the recipe's settings;
the files are ``src/segzoo/recipes/NAME.toml``) with this script's ``--epochs`` and ``--out`` and,
unless ``--full-size``, a reduced resolution ``--size H W``: the recipe's scale range times
H/360 and crops of HxW for training, images resized to HxW for evaluation. Scores are always
counted against the full 360x480 labels. Any other ``segzoo train`` flag (``--time-limit 30``,
``--batch-size 4``, ...) is passed on and overrides the recipe.

camvid-bayesian-segnet-basic is then also scored with Monte Carlo dropout (``--mc`` samples),
beside the usual dropout-off (weight averaging) scores. Scores are on the val split (the test split
is not shipped here); every run writes OUT/best.pt, predictions.png, confusion_matrix.png, curves.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import segzoo
from segzoo.cli import main as segzoo_main
from segzoo.data import eval_transforms, open_split
from segzoo.io.checkpoint import load_checkpoint, load_run
from segzoo.recipes import load_recipe, recipe_names
from segzoo.training import make_loader

FULL_HEIGHT = 360  # CamVid's image height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CamVid root with train/ trainannot/ val/ valannot/")
    parser.add_argument("--recipe", choices=[n for n in recipe_names() if n.startswith("camvid-")], default="camvid-segnet-basic")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(90, 120), metavar=("H", "W"), help="train/eval resolution")
    parser.add_argument("--full-size", action="store_true", help="the recipe's own resolution (360x480)")
    parser.add_argument("--out", default="camvid-run")
    parser.add_argument("--mc", type=int, default=8, help="Monte Carlo dropout samples (bayesian recipe)")
    args, passed_on = parser.parse_known_args(argv)

    command = ["train", "--recipe", args.recipe, "--data", args.data, "--epochs", str(args.epochs), "--out", args.out]
    if not args.full_size:
        height, width = args.size
        low, high = load_recipe(args.recipe).options.get("train_scale", (1.0, 1.0))
        factor = height / FULL_HEIGHT
        command += ["--crop", str(height), str(width), "--eval-size", str(height), str(width),
                    "--train-scale", str(low * factor), str(high * factor)]  # fmt: skip
    status = segzoo_main(command + passed_on)
    if status != 0:
        return status
    history = load_checkpoint(Path(args.out) / "last.pt")["history"]
    resolution = "360x480" if args.full_size else f"{args.size[0]}x{args.size[1]}"
    print(f"{args.recipe}: {len(history)} epochs at {resolution} in {sum(r['seconds'] for r in history):.0f} s")
    if "bayesian" in args.recipe and (Path(args.out) / "best.pt").is_file():
        model, run = load_run(Path(args.out) / "best.pt")
        val_set = open_split(args.data, "camvid", "val")
        val_set.transforms = eval_transforms(run.mean, run.std, run.data.eval_size)
        scores = monte_carlo_scores(model, make_loader(val_set, run.data.batch_size, shuffle=False), args.mc, run.ignore_index)
        print(f"\nMonte Carlo dropout, {args.mc} samples:")
        print(scores.table(run.class_names))
    return 0


def monte_carlo_scores(model, loader, samples: int, ignore_index: int) -> segzoo.SegmentationScores:
    """Scores of the mean of ``samples`` Monte Carlo dropout passes (BF and ECE included), each
    label counted at its own resolution (the mean's log is upsampled to it, as logits are)."""
    metrics = segzoo.SegmentationMetrics(model.num_classes, ignore_index, boundary=True, calibration=True)
    for index, (images, masks) in enumerate(loader):
        # log-probabilities: their softmax is the MC mean, their argmax its labels
        probabilities = segzoo.mc_predict(model, images, samples, seed=index).probabilities
        metrics.update(probabilities.clamp_min(1e-30).log(), masks)
    return metrics.compute()


if __name__ == "__main__":
    sys.exit(main())
