"""The ``segzoo`` command: argument parsing and printing around :mod:`segzoo.training`,
:mod:`segzoo.inference` and :mod:`segzoo.export`."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__
from ._checks import check_device
from .cli_data import add_mask_arguments, mask_encoding
from .data import LAYOUTS, DataConfig, layout_classes, open_splits
from .export import export_onnx, export_program, save_program
from .inference import InferenceOptions, predict_files
from .inference.optimize import FAST_DTYPES, refuse_mc_dropout
from .inference.tiling import BLENDS
from .io.atomic import check_writable_file, check_writable_folder
from .io.checkpoint import load, load_weights
from .models.registry import get_model, list_models, model_class
from .models.segnet import DROPOUT_PLACEMENTS
from .models.summary import model_table
from .models.weights import WeightsUnavailable
from .recipes import FIELDS as RECIPE_FIELDS
from .recipes import Recipe, list_recipes, load_recipe
from .training import (
    AMP_MODES,
    OPTIMIZERS,
    SCHEDULES,
    RunResult,
    TrainConfig,
    TrainingDiverged,
    demo,
    distributed,
    evaluate_checkpoint,
    prepare_out_dir,
    train,
)
from .training.tensorboard import require_tensorboard

#: ``segzoo export --format``: the suffix of its default output file
EXPORT_SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}
# WeightsUnavailable: pretrained weights neither cached nor downloadable (offline); the message says where to put them
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError, WeightsUnavailable)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segzoo`` and ``python -m segzoo``; returns the exit status."""
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
    demo.add_argument("--epochs", type=_positive, default=8, help="default: %(default)s")
    demo.add_argument("--images", type=_positive, default=512, help="training images (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace the checkpoints of an earlier run in --out")

    recipes = _command(commands, "recipes", _recipes, "list the named training recipes (segzoo train --recipe NAME)")
    recipes.add_argument("name", nargs="?", help="print this recipe's settings as TOML")

    train = _command(commands, "train", _train, "fine-tune a model on a folder of images and masks")
    train.add_argument("--recipe", metavar="NAME",
                       help="start from a named recipe (segzoo recipes) or a recipe .toml file; flags given here override its fields")
    train.add_argument("--model", choices=list_models(), help="required unless the recipe names one")
    train.add_argument("--data", required=True, help="dataset root folder")
    train.add_argument("--layout", choices=LAYOUTS, default="folder",
                       help="folder: DATA/{train,val}/{images,masks} or DATA/{images,masks} + DATA/splits/{train,val}.txt; "
                            "camvid, voc, cityscapes, ade20k: those datasets as published (default: %(default)s)")
    add_mask_arguments(train)
    train.add_argument("--num-classes", type=_positive, help="number of classes (folder layout; default: from --palette/--label-map)")
    train.add_argument("--ignore-index", type=int, help="mask label to ignore (folder layout)")
    train.add_argument("--out", default="segzoo-run", help="output folder for checkpoints and pictures (default: %(default)s)")
    train.add_argument("--weights-backbone", help="DEFAULT / IMAGENET1K_V1 or a torchvision-layout checkpoint file (not for segnet_basic)")
    train.add_argument("--init-from", metavar="CHECKPOINT", help="start from a segzoo checkpoint's weights (same model)")
    train.add_argument("--reinit-head", action="store_true",
                       help="with --init-from: keep every weight but the class-dependent head, which starts fresh (new classes)")
    train.add_argument("--dropout", choices=DROPOUT_PLACEMENTS, default="none",
                       help="SegNet models: dropout placement; central = Bayesian SegNet (default: %(default)s)")
    train.add_argument("--batch-norm", action=argparse.BooleanOptionalAction,
                       help="SegNet and FCN: VGG16 with or without BatchNorm (default: with)")
    train.add_argument("--fixed-upsampling", action=argparse.BooleanOptionalAction, default=False,
                       help="FCN: keep the bilinear upsampling layers fixed, as the reference release does")
    train.add_argument("--epochs", type=_positive, default=30)
    train.add_argument("--batch-size", type=_positive, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    train.add_argument("--schedule", choices=SCHEDULES, default="poly")
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--crop", type=_positive, nargs=2, metavar=("H", "W"), help="random scale + crop + flip augmentation to HxW")
    train.add_argument("--train-scale", type=float, nargs=2, default=(0.5, 2.0), metavar=("LOW", "HIGH"), help="scale range with --crop")
    train.add_argument("--eval-size", type=_positive, nargs=2, metavar=("H", "W"), help="resize for evaluation (and training without --crop)")
    train.add_argument("--class-weights", choices=("median", "none"), default="none", help="median-frequency balancing")
    train.add_argument("--loss", default="ce",
                       help="ce, dice, focal, lovasz or a weighted sum such as ce+dice or 0.5*ce+1*lovasz (default: %(default)s)")
    train.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing in [0, 1) (default: %(default)s)")
    train.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=False)
    train.add_argument("--encoder-lr-scale", type=float, default=1.0)
    train.add_argument("--amp", nargs="?", const="on", default="auto", choices=AMP_MODES,
                       help="mixed precision: bare --amp = on (bf16 on CPU, fp16 + scaling on CUDA); auto = bf16 where "
                            "the CPU/GPU has it natively (else fp32 on CPU, fp16 on older GPUs); bf16; fp16 (CUDA) "
                            "(default: %(default)s)")
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                       help="channels_last memory format for training (faster convolutions on most CPUs and GPUs; default: on)")
    train.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False,
                       help="decode both splits once and keep them in memory (refused if they would not fit)")
    train.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                       help='also log every epoch to TensorBoard in DIR (default: OUT/tensorboard); needs pip install "segzoo[tensorboard]"')
    train.add_argument("--patience", type=_positive, metavar="N",
                       help="early stopping: stop once validation mIoU has not improved for N epochs")
    train.add_argument("--time-limit", type=_positive_float, metavar="MIN",
                       help="stop cleanly after the last epoch that ends within MIN minutes; resume with --resume")
    train.add_argument("--accumulate", type=_positive, default=1, help="gradient accumulation steps")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the checkpoints of an earlier run in OUT (without it, or --resume, such an OUT is refused)")
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available; under torchrun: cuda:LOCAL_RANK)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=False,
                       help="deterministic kernels: reruns give identical weights")
    train.add_argument("--sync-bn", action="store_true", help="under torchrun on GPUs: BatchNorm statistics over all processes")

    evaluate = _command(commands, "evaluate", _evaluate, "score a checkpoint on a dataset split")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--layout", choices=LAYOUTS, default="folder")
    evaluate.add_argument("--split", default="val")
    add_mask_arguments(evaluate)
    evaluate.add_argument("--out", help="also write predictions.png and confusion_matrix.png here")
    evaluate.add_argument("--batch-size", type=_positive, default=8)
    evaluate.add_argument("--device")
    evaluate.add_argument("--mc", type=_positive, metavar="T", help="score the mean of T Monte Carlo dropout passes")
    evaluate.add_argument("--seed", type=int, default=0, help="dropout seed with --mc (default: %(default)s)")
    _inference_arguments(evaluate)

    predict = _command(commands, "predict", _predict, "write class masks and overlays for images")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--out", required=True)
    predict.add_argument("--device")
    predict.add_argument("--mc", type=_positive, metavar="T",
                         help="Monte Carlo dropout with T passes (models built with dropout, e.g. Bayesian SegNet); "
                              "also writes entropy and mutual-information heat maps")
    predict.add_argument("--seed", type=int, default=0, help="dropout seed with --mc (default: %(default)s)")
    _inference_arguments(predict)

    models = _command(commands, "models", _models, "list models with parameters and GFLOPs")
    models.add_argument("--size", type=_positive, nargs=2, default=(360, 480), metavar=("H", "W"))
    models.add_argument("--num-classes", type=_positive, default=11)

    export = _command(commands, "export", _export, "write a checkpoint's model as an ONNX file or a torch.export program")
    export.add_argument("checkpoint")
    export.add_argument("--format", choices=EXPORT_SUFFIXES, default="onnx", help="default: %(default)s")
    export.add_argument("--out", help="output file (default: the checkpoint's path with .onnx / .pt2)")
    export.add_argument("--size", type=_positive, nargs=2, default=(360, 480), metavar=("H", "W"),
                        help="example input traced; the export takes other sizes too (default: 360 480)")
    return parser


def _command(commands, name: str, run, help_text: str) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    command.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    command.set_defaults(run=run)
    return command


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _given_options(argv: Sequence[str]) -> set[str]:
    """The ``segzoo train`` options written in ``argv``, as opposed to those left at their default
    (argparse cannot tell them apart once defaults are filled in: parse again without defaults)."""
    parser = _parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    for action in train._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _resolve_recipe(args: argparse.Namespace) -> Recipe:
    """Fill ``args`` with defaults < recipe < flags and return the resolved recipe (every field)."""
    given = getattr(args, "given", set())
    base = load_recipe(args.recipe) if args.recipe else Recipe(None, "command-line options")
    for key, value in base.options.items():
        if key not in given:
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    if args.weights_backbone is not None and args.weights_backbone.lower() == "none":
        args.weights_backbone = None
    return base.merged({key: getattr(args, key) for key in RECIPE_FIELDS}, source="segzoo train options")


def _recipes(args: argparse.Namespace) -> None:
    if args.name:
        recipe = load_recipe(args.name)
        # every field as `segzoo train --recipe NAME` resolves it: the train defaults fill the gaps
        defaults = _parser().parse_args(["train", "--recipe", args.name, "--data", "DATA"])
        defaults.given = {"recipe", "data"}
        print(_resolve_recipe(defaults).to_toml(f"segzoo train {recipe.source}, with the defaults it leaves"), end="")
        return
    recipes = list_recipes()
    width = max(len(recipe.name or "") for recipe in recipes)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.description}")


def _takes(model: str, option: str) -> bool:
    """Whether the registered ``model``'s constructor takes ``option``."""
    return option in inspect.signature(model_class(model)).parameters


def _inference_arguments(command: argparse.ArgumentParser) -> None:
    """Tiles and test-time augmentation, shared by predict and evaluate."""
    command.add_argument("--tile", type=_positive, nargs=2, metavar=("H", "W"),
                         help="sliding-window inference with HxW tiles (large images, bounded memory)")
    command.add_argument("--overlap", type=float, default=0.25, help="with --tile: fraction of a tile shared with the next (default: %(default)s)")
    command.add_argument("--blend", choices=BLENDS, default="gaussian", help="with --tile: how overlapping tiles are averaged (default: %(default)s)")
    command.add_argument("--tile-batch", type=_positive, default=4, help="with --tile: tiles per forward pass (default: %(default)s)")
    command.add_argument("--tta", choices=("flip",), help="test-time augmentation: average with the horizontally mirrored image")
    command.add_argument("--scales", type=float, nargs="+", default=(1.0,), metavar="S",
                         help="test-time augmentation: average over these image scales, e.g. 0.75 1 1.25 (default: 1)")
    command.add_argument("--fast", nargs="?", const="auto", choices=("auto", *FAST_DTYPES),
                         help="compiled model (segzoo.optimize): BN folded, channels_last, frozen weights; bare --fast = auto "
                              "= bf16 where the CPU/GPU has it natively, else fp32; int8 = post-training quantization (x86 CPU, "
                              "segzoo[int8]); the first run compiles (tens of seconds to minutes)")
    command.add_argument("--calibration", metavar="DIR",
                         help="with --fast int8: calibrate on the images in DIR (default: the first few images to predict / "
                              "of the split)")


def _inference_options(args: argparse.Namespace) -> InferenceOptions:
    return InferenceOptions(
        tile=tuple(args.tile) if args.tile else None, overlap=args.overlap, blend=args.blend, tile_batch=args.tile_batch,
        flip=args.tta == "flip", scales=tuple(args.scales), mc_samples=args.mc, seed=args.seed,
    )  # fmt: skip


def _check_fast(args: argparse.Namespace) -> None:
    if args.calibration is not None and args.fast != "int8":
        raise ValueError("--calibration is for --fast int8")
    if args.fast is not None:
        refuse_mc_dropout(args.mc)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _demo(args: argparse.Namespace) -> None:
    result = demo(args.out, epochs=args.epochs, num_images=args.images, seed=args.seed, progress=args.progress, overwrite=args.overwrite)
    _print_run(result)


def _train(args: argparse.Namespace) -> None:
    recipe = _resolve_recipe(args)
    if args.model is None:
        raise ValueError("segzoo train needs --model or a --recipe that names one")
    overridden = sorted(key for key in getattr(args, "given", ()) if key in RECIPE_FIELDS)
    if args.recipe and os.environ.get("RANK", "0") == "0":
        flags = f"; overridden by flags: {', '.join(overridden)}" if overridden else ""
        print(recipe.to_toml(f"resolved recipe {recipe.name}{flags}"), flush=True)
    if args.weights_backbone and not _takes(args.model, "weights_backbone"):
        raise ValueError(f"{args.model} has no pretrained encoder (the paper trains it from scratch); drop --weights-backbone")
    if args.reinit_head and not args.init_from:
        raise ValueError("--reinit-head needs --init-from CHECKPOINT")
    if args.dropout != "none" and not args.model.startswith("segnet"):
        raise ValueError(f"--dropout places SegNet's dropout; {args.model} has its own (fc6/fc7)")
    if args.batch_norm is not None and args.model == "segnet_basic":
        raise ValueError("segnet_basic always uses BatchNorm (paper, Section 4.1); drop --batch-norm / batch_norm")
    if args.fixed_upsampling and not args.model.startswith("fcn"):
        raise ValueError(f"--fixed-upsampling freezes FCN's upsampling layers; {args.model} has none")
    # every check that needs no data first, then the model (pretrained weights load or fail here), then the data
    tensorboard = None if args.tensorboard is None else Path(args.tensorboard or Path(args.out) / "tensorboard")
    if tensorboard is not None:
        require_tensorboard()
    prepare_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    if tensorboard is not None:
        check_writable_folder(tensorboard, "TensorBoard folder (--tensorboard)")
    if args.device is not None:
        check_device(args.device, "--device")
    encoding = mask_encoding(args)
    num_classes, _ = layout_classes(args.layout, args.num_classes, args.ignore_index, **encoding)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
        encoder_lr_scale=args.encoder_lr_scale, freeze_encoder=args.freeze_encoder, amp=args.amp,
        accumulate_steps=args.accumulate, seed=args.seed, sync_batchnorm=args.sync_bn, deterministic=args.deterministic,
        momentum=args.momentum, channels_last=args.channels_last, time_limit_minutes=args.time_limit,
        patience=args.patience, loss=args.loss, label_smoothing=args.label_smoothing,
    )  # fmt: skip
    data = DataConfig(
        batch_size=args.batch_size, crop_size=tuple(args.crop) if args.crop else None, train_scale=tuple(args.train_scale),
        eval_size=tuple(args.eval_size) if args.eval_size else None,
        class_weights=None if args.class_weights == "none" else args.class_weights, cache=args.cache,
    )  # fmt: skip
    kwargs = {"num_classes": num_classes}
    if args.weights_backbone:
        kwargs["weights_backbone"] = args.weights_backbone
    if args.dropout != "none":
        kwargs["dropout"] = args.dropout
    if args.batch_norm is not None:
        kwargs["batch_norm"] = args.batch_norm
    if args.fixed_upsampling:
        kwargs["fixed_upsampling"] = True
    torch.manual_seed(args.seed)  # the initial weights too, so that --deterministic reruns match
    model = get_model(args.model, **kwargs)
    if args.init_from:
        load_weights(model, args.init_from, reinit_head=args.reinit_head)
    train_set, val_set = open_splits(args.data, args.layout, num_classes=num_classes, ignore_index=args.ignore_index, **encoding)
    with distributed.process_group(args.device) as device:
        result = train(
            model, train_set, val_set, args.out, config, data,
            resume=args.resume, overwrite=args.overwrite, num_workers=args.workers, device=device, progress=args.progress,
            recipe={**recipe.to_dict(), "overrides": overridden}, tensorboard=tensorboard,
        )  # fmt: skip
        if distributed.is_main() and result.time_limit_reached:
            _print_time_limit(result, args)
        elif distributed.is_main():
            _print_run(result)


def _evaluate(args: argparse.Namespace) -> None:
    _check_fast(args)
    scores, run, files = evaluate_checkpoint(
        args.checkpoint, args.data, args.layout, args.split, args.out, args.batch_size, args.device, _inference_options(args),
        fast=args.fast, calibration=args.calibration, **mask_encoding(args),
    )  # fmt: skip
    print(scores.table(run.class_names))
    _print_files(files)


def _predict(args: argparse.Namespace) -> None:
    _check_fast(args)
    paths = predict_files(
        args.checkpoint, args.images, args.out, args.device, args.mc, args.seed, _inference_options(args),
        fast=args.fast, calibration=args.calibration,
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


def _print_run(result: RunResult) -> None:
    last = result.history[-1]
    print(f"{len(result.history)} epochs, {sum(r['seconds'] for r in result.history):.0f} s, final train loss {last['train_loss']:.4f}")
    print(f"validation scores of the best checkpoint ({result.out_dir / 'best.pt'}):")
    print(result.scores.table(result.class_names))
    _print_files(result.files)


def _print_time_limit(result: RunResult, args: argparse.Namespace) -> None:
    longest = max(r["seconds"] for r in result.history) / 60
    argv = list(args.argv) + ([] if args.resume else ["--resume"])
    print(
        f"time limit of {args.time_limit:g} min: stopped after epoch {result.history[-1]['epoch']}/{args.epochs} "
        f"(an epoch took up to {longest:.1f} min); last.pt and best.pt are in {result.out_dir}"
    )
    if longest >= args.time_limit:
        print(f"the next epoch will not fit in {args.time_limit:g} min either: resume with a longer --time-limit")
    print(f"resume with: segzoo {shlex.join(argv)}")
    _print_files(result.files)


def _print_files(files: dict) -> None:
    for name, path in files.items():
        print(f"{name}: {path}")
