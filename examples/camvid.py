"""CamVid recipes from the SegNet paper, runnable on a CPU at reduced resolution.

    python examples/camvid.py --data ../shared/data/camvid --recipe segnet-basic --epochs 5
    python examples/camvid.py --data ../shared/data/camvid --recipe segnet --weights DEFAULT
    python examples/camvid.py --data ../shared/data/camvid --recipe bayesian-segnet-basic --mc 8

segnet-basic: SegNet-Basic from scratch with median-frequency class weights (paper, Table 1).
bayesian-segnet-basic: the same with the central dropout of Bayesian SegNet (Kendall et al.), then
              scored both ways: dropout off (weight averaging) and Monte Carlo dropout (--mc samples).
segnet:       SegNet with an ImageNet VGG16-BN encoder, fine-tuned with a 10x smaller encoder LR.
Scores are on the val split (the test split is not shipped here); all write OUT/best.pt,
predictions.png, confusion_matrix.png and curves.png.
"""

from __future__ import annotations

import argparse

import segzoo
from segzoo.data import DataConfig, open_splits
from segzoo.training import TrainConfig, make_loader, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CamVid root with train/ trainannot/ val/ valannot/")
    parser.add_argument("--recipe", choices=("segnet-basic", "bayesian-segnet-basic", "segnet"), default="segnet-basic")
    parser.add_argument("--weights", default=None, help="encoder weights for --recipe segnet (e.g. DEFAULT)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(90, 120), metavar=("H", "W"), help="train/eval resolution")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="camvid-run")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's checkpoints in --out")
    parser.add_argument("--mc", type=int, default=8, help="Monte Carlo dropout samples (bayesian recipe)")
    args = parser.parse_args()

    train_set, val_set = open_splits(args.data, "camvid")
    if args.recipe.endswith("segnet-basic"):
        model = segzoo.SegNetBasic(num_classes=11, dropout="central" if args.recipe.startswith("bayesian") else "none")
        config = TrainConfig(epochs=args.epochs, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="constant")
    else:
        model = segzoo.SegNet(num_classes=11, weights_backbone=args.weights)
        config = TrainConfig(epochs=args.epochs, lr=1e-3, encoder_lr_scale=0.1)
    data = DataConfig(batch_size=args.batch_size, eval_size=tuple(args.size), class_weights="median")
    result = train(model, train_set, val_set, args.out, config, data, overwrite=args.overwrite)
    seconds = sum(r["seconds"] for r in result.history)
    print(f"{args.recipe}: {len(result.history)} epochs at {args.size[0]}x{args.size[1]} in {seconds:.0f} s")
    print(result.scores.table(result.class_names))
    if args.recipe.startswith("bayesian"):
        model = segzoo.load(f"{args.out}/best.pt")
        scores = monte_carlo_scores(model, make_loader(val_set, args.batch_size, shuffle=False), args.mc, val_set.ignore_index)
        print(f"\nMonte Carlo dropout, {args.mc} samples:")
        print(scores.table(result.class_names))


def monte_carlo_scores(model, loader, samples: int, ignore_index: int) -> segzoo.SegmentationScores:
    """Scores of the mean of ``samples`` Monte Carlo dropout passes (BF and ECE included)."""
    metrics = segzoo.SegmentationMetrics(model.num_classes, ignore_index, boundary=True, calibration=True)
    for index, (images, masks) in enumerate(loader):
        # log-probabilities: their softmax is the MC mean, their argmax its labels
        metrics.update(segzoo.mc_predict(model, images, samples, seed=index).probabilities.log(), masks)
    return metrics.compute()


if __name__ == "__main__":
    main()
