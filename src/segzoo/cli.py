"""The ``segzoo`` command: argument parsing and printing around :mod:`segzoo.training`,
:mod:`segzoo.inference` and :mod:`segzoo.export` (``segzoo train`` lives in :mod:`segzoo.cli_train`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .allocator import keep_large_buffers
from .cli_common import positive, print_files, print_run
from .cli_data import add_mask_arguments, mask_encoding
from .cli_train import add_train_arguments, resolve_recipe, run_train
from .data import LAYOUTS
from .export import export_onnx, export_program, save_program
from .inference import InferenceOptions, predict_files
from .inference.optimize import FAST_DTYPES, refuse_mc_dropout
from .inference.tiling import BLENDS
from .io.atomic import check_writable_file
from .io.checkpoint import load
from .models.summary import model_table
from .models.weights import WeightsUnavailable
from .recipes import list_recipes, load_recipe
from .training import TrainingDiverged, demo, evaluate_checkpoint

#: ``segzoo export --format``: the suffix of its default output file
EXPORT_SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}
# WeightsUnavailable: pretrained weights neither cached nor downloadable (offline); the message says where to put them
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError, WeightsUnavailable)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segzoo`` and ``python -m segzoo``; returns the exit status. Run as the
    program (``argv`` None), it keeps glibc's large buffers for reuse (:mod:`segzoo.allocator`)."""
    if argv is None:
        keep_large_buffers()
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "train":
        args.argv, args.given = argv, _given_options(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        args.run(args)
    except _USER_ERRORS as error:
        print(f"segzoo {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:  # not a user error, but as plain: the last good checkpoints are kept
        print(f"segzoo {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"segzoo {args.command}: interrupted (completed checkpoints are kept)", file=sys.stderr)
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segzoo", description="SegNet and FCN semantic segmentation: train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"segzoo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(commands, "demo", _demo, "train SegNet-Basic on the embedded synthetic shapes (CPU, ~2 minutes)")
    demo.add_argument("--out", default="segzoo-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--epochs", type=positive, default=4, help="default: %(default)s")
    demo.add_argument("--images", type=positive, default=512, help="training images (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace the checkpoints of an earlier run in --out")

    recipes = _command(commands, "recipes", _recipes, "list the named training recipes (segzoo train --recipe NAME)")
    recipes.add_argument("name", nargs="?", help="print this recipe's settings as TOML")

    train = _command(commands, "train", run_train, "fine-tune a model on a folder of images and masks")
    add_train_arguments(train)

    evaluate = _command(commands, "evaluate", _evaluate, "score a checkpoint on a dataset split")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--layout", choices=LAYOUTS, default="folder")
    evaluate.add_argument("--split", default="val")
    add_mask_arguments(evaluate)
    evaluate.add_argument("--out", help="also write predictions.png and confusion_matrix.png here")
    evaluate.add_argument("--batch-size", type=positive, default=8)
    evaluate.add_argument("--device")
    evaluate.add_argument("--mc", type=positive, metavar="T", help="score the mean of T Monte Carlo dropout passes")
    evaluate.add_argument("--seed", type=int, default=0, help="dropout seed with --mc (default: %(default)s)")
    _inference_arguments(evaluate)

    predict = _command(commands, "predict", _predict, "write class masks and overlays for images")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--out", required=True)
    predict.add_argument("--device")
    predict.add_argument("--mc", type=positive, metavar="T",
                         help="Monte Carlo dropout with T passes (models built with dropout, e.g. Bayesian SegNet); "
                              "also writes entropy and mutual-information heat maps")
    predict.add_argument("--seed", type=int, default=0, help="dropout seed with --mc (default: %(default)s)")
    _inference_arguments(predict)

    models = _command(commands, "models", _models, "list models with parameters and GFLOPs")
    models.add_argument("--size", type=positive, nargs=2, default=(360, 480), metavar=("H", "W"))
    models.add_argument("--num-classes", type=positive, default=11)

    export = _command(commands, "export", _export, "write a checkpoint's model as an ONNX file or a torch.export program")
    export.add_argument("checkpoint")
    export.add_argument("--format", choices=EXPORT_SUFFIXES, default="onnx", help="default: %(default)s")
    export.add_argument("--out", help="output file (default: the checkpoint's path with .onnx / .pt2)")
    export.add_argument("--size", type=positive, nargs=2, default=(360, 480), metavar=("H", "W"),
                        help="example input traced; the export takes other sizes too (default: 360 480)")
    return parser


def _command(commands, name: str, run, help_text: str) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    command.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    command.set_defaults(run=run)
    return command


def _given_options(argv: Sequence[str]) -> set[str]:
    """The ``segzoo train`` options written in ``argv``, as opposed to those left at their default
    (argparse cannot tell them apart once defaults are filled in: parse again without defaults)."""
    parser = _parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    for action in train._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _recipes(args: argparse.Namespace) -> None:
    if args.name:
        recipe = load_recipe(args.name)
        # every field as `segzoo train --recipe NAME` resolves it: the train defaults fill the gaps
        defaults = _parser().parse_args(["train", "--recipe", args.name, "--data", "DATA"])
        defaults.given = {"recipe", "data"}
        print(resolve_recipe(defaults).to_toml(f"segzoo train {recipe.source}, with the defaults it leaves"), end="")
        return
    recipes = list_recipes()
    width = max(len(recipe.name or "") for recipe in recipes)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.description}")


def _inference_arguments(command: argparse.ArgumentParser) -> None:
    """Tiles and test-time augmentation, shared by predict and evaluate."""
    command.add_argument("--tile", type=positive, nargs=2, metavar=("H", "W"),
                         help="sliding-window inference with HxW tiles (large images, bounded memory)")
    command.add_argument("--overlap", type=float, default=0.25, help="with --tile: fraction of a tile shared with the next (default: %(default)s)")
    command.add_argument("--blend", choices=BLENDS, default="gaussian", help="with --tile: how overlapping tiles are averaged (default: %(default)s)")
    command.add_argument("--tile-batch", type=positive, default=4, help="with --tile: tiles per forward pass (default: %(default)s)")
    command.add_argument("--tta", choices=("flip",), help="test-time augmentation: average with the horizontally mirrored image")
    command.add_argument("--scales", type=float, nargs="+", default=(1.0,), metavar="S",
                         help="test-time augmentation: average over these image scales, e.g. 0.75 1 1.25 (default: 1)")
    command.add_argument("--fast", nargs="?", const="auto", choices=("auto", *FAST_DTYPES),
                         help="optimized model (segzoo.optimize): BN folded, channels_last, frozen weights; bare --fast = auto "
                              "= bf16 where the CPU/GPU has it natively, else fp32, compiled except the SegNet family on a CPU "
                              "(eager there: faster than its compiled graphs); int8 = post-training quantization (x86 CPU; eager for "
                              "the SegNet family, compiled with segzoo[int8] for the rest); a compiled first run waits for the "
                              "compiler (tens of seconds to minutes)")
    command.add_argument("--eager", action="store_true",
                         help="with --fast: run the fused model eagerly instead of compiling it (no compile wait; faster than "
                              "compiled on some CPUs, see the README's Deployment section); int8: the SegNet family only")
    command.add_argument("--calibration", metavar="DIR",
                         help="with --fast int8: calibrate on 8 images spread over DIR (default: spread over the images to "
                              "predict / the split)")


def _inference_options(args: argparse.Namespace) -> InferenceOptions:
    return InferenceOptions(
        tile=tuple(args.tile) if args.tile else None, overlap=args.overlap, blend=args.blend, tile_batch=args.tile_batch,
        flip=args.tta == "flip", scales=tuple(args.scales), mc_samples=args.mc, seed=args.seed,
    )  # fmt: skip


def _check_fast(args: argparse.Namespace) -> None:
    if args.calibration is not None and args.fast != "int8":
        raise ValueError("--calibration is for --fast int8")
    if args.eager and args.fast is None:
        raise ValueError("--eager is for --fast (auto, fp32, bf16, or int8 for the SegNet family)")
    if args.fast is not None:
        refuse_mc_dropout(args.mc)


def _demo(args: argparse.Namespace) -> None:
    result = demo(args.out, epochs=args.epochs, num_images=args.images, seed=args.seed, progress=args.progress, overwrite=args.overwrite)
    print_run(result)


def _evaluate(args: argparse.Namespace) -> None:
    _check_fast(args)
    scores, run, files = evaluate_checkpoint(
        args.checkpoint, args.data, args.layout, args.split, args.out, args.batch_size, args.device, _inference_options(args),
        fast=args.fast, calibration=args.calibration, eager=args.eager, **mask_encoding(args),
    )  # fmt: skip
    print(scores.table(run.class_names))
    print_files(files)


def _predict(args: argparse.Namespace) -> None:
    _check_fast(args)
    paths = predict_files(
        args.checkpoint, args.images, args.out, args.device, args.mc, args.seed, _inference_options(args),
        fast=args.fast, calibration=args.calibration, eager=args.eager,
    )  # fmt: skip
    for path in paths:
        print(path)


def _models(args: argparse.Namespace) -> None:
    height, width = args.size
    print(f"| model | class | parameters | GFLOPs at {height}x{width} |")
    print("|---|---|---:|---:|")
    for row in model_table(tuple(args.size), args.num_classes):
        print(f"| {row['name']} | {row['class']} | {row['params']:,} | {row['gflops']:.1f} |")


def _export(args: argparse.Namespace) -> None:
    out = check_writable_file(args.out or Path(args.checkpoint).with_suffix(EXPORT_SUFFIXES[args.format]), "--out")
    model = load(args.checkpoint)
    if args.format == "onnx":
        print(export_onnx(model, out, tuple(args.size)))
    else:
        print(save_program(export_program(model, tuple(args.size)), out))
