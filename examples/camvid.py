"""CamVid recipes from the SegNet paper, runnable on a CPU at reduced resolution.

    python examples/camvid.py --data ../shared/data/camvid --recipe segnet-basic --epochs 5
    python examples/camvid.py --data ../shared/data/camvid --recipe segnet --weights DEFAULT

segnet-basic: SegNet-Basic from scratch with median-frequency class weights (paper, Table 1).
segnet:       SegNet with an ImageNet VGG16-BN encoder, fine-tuned with a 10x smaller encoder LR.
Scores are on the val split (the test split is not shipped here); both write OUT/best.pt,
predictions.png, confusion_matrix.png and curves.png.
"""

from __future__ import annotations

import argparse

import segzoo
from segzoo import workflows
from segzoo.cli import format_scores
from segzoo.train import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CamVid root with train/ trainannot/ val/ valannot/")
    parser.add_argument("--recipe", choices=("segnet-basic", "segnet"), default="segnet-basic")
    parser.add_argument("--weights", default=None, help="encoder weights for --recipe segnet (e.g. DEFAULT)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(90, 120), metavar=("H", "W"), help="train/eval resolution")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="camvid-run")
    args = parser.parse_args()

    train_set, val_set = workflows.datasets(args.data, "camvid")
    if args.recipe == "segnet-basic":
        model = segzoo.SegNetBasic(num_classes=11)
        config = TrainConfig(epochs=args.epochs, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="constant")
    else:
        model = segzoo.SegNet(num_classes=11, weights_backbone=args.weights)
        config = TrainConfig(epochs=args.epochs, lr=1e-3, encoder_lr_scale=0.1)
    result = workflows.train(
        model, train_set, val_set, args.out, config, batch_size=args.batch_size,
        eval_size=tuple(args.size), class_weights="median",
    )  # fmt: skip
    seconds = sum(r["seconds"] for r in result.history)
    print(f"{args.recipe}: {len(result.history)} epochs at {args.size[0]}x{args.size[1]} in {seconds:.0f} s")
    print(format_scores(result.scores, result.class_names))


if __name__ == "__main__":
    main()
