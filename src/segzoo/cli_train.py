"""``segzoo train``: its options and how they become a model, data and a training run."""

from __future__ import annotations

import argparse
import inspect
import os
import shlex
from pathlib import Path

import torch

from ._checks import check_device
from .cli_common import positive, positive_float, print_files, print_run
from .cli_data import add_mask_arguments, mask_encoding
from .data import LAYOUTS, DataConfig, layout_classes, open_splits
from .data.config import CLASS_WEIGHTINGS
from .io.atomic import check_writable_folder
from .io.checkpoint import load_weights
from .models.registry import get_model, list_models, model_class
from .models.segnet import DROPOUT_PLACEMENTS
from .recipes import FIELDS as RECIPE_FIELDS
from .recipes import Recipe, load_recipe
from .training import AMP_MODES, OPTIMIZERS, SCHEDULES, RunResult, TrainConfig, distributed, prepare_out_dir, train
from .training.memory_format import CHANNELS_LAST_WORDS
from .training.tensorboard import require_tensorboard


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    """Every ``segzoo train`` option; each one that is a recipe field overrides the recipe when given."""
    train.add_argument("--recipe", metavar="NAME",
                       help="start from a named recipe (segzoo recipes) or a recipe .toml file; flags given here override its fields")
    train.add_argument("--model", choices=list_models(), help="required unless the recipe names one")
    train.add_argument("--data", required=True, help="dataset root folder")
    train.add_argument("--layout", choices=LAYOUTS, default="folder",
                       help="folder: DATA/{train,val}/{images,masks} or DATA/{images,masks} + DATA/splits/{train,val}.txt; "
                            "camvid, voc, cityscapes, ade20k: those datasets as published (default: %(default)s)")
    add_mask_arguments(train)
    train.add_argument("--num-classes", type=positive, help="number of classes (folder layout; default: from --palette/--label-map)")
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
    train.add_argument("--epochs", type=positive, default=30)
    train.add_argument("--batch-size", type=positive, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    train.add_argument("--schedule", choices=SCHEDULES, default="poly")
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--crop", type=positive, nargs=2, metavar=("H", "W"), help="random scale + crop + flip augmentation to HxW")
    train.add_argument("--train-scale", type=float, nargs=2, default=(0.5, 2.0), metavar=("LOW", "HIGH"), help="scale range with --crop")
    train.add_argument("--eval-size", type=positive, nargs=2, metavar=("H", "W"), help="resize for evaluation (and training without --crop)")
    train.add_argument("--class-weights", choices=(*CLASS_WEIGHTINGS, "none"), default="none",
                       help="median: median-frequency balancing (SegNet paper); sqrt-median: its square root, milder (default: %(default)s)")
    train.add_argument("--loss", default="ce",
                       help="ce, dice, focal, lovasz or a weighted sum such as ce+dice or 0.5*ce+1*lovasz (default: %(default)s)")
    train.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing in [0, 1) (default: %(default)s)")
    train.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=False)
    train.add_argument("--encoder-lr-scale", type=float, default=1.0)
    train.add_argument("--amp", nargs="?", const="on", default="auto", choices=AMP_MODES,
                       help="mixed precision: bare --amp = on (bf16 on CPU, fp16 + scaling on CUDA); auto = bf16 where "
                            "the CPU/GPU has it natively (else fp32 on CPU, fp16 on older GPUs); bf16; fp16 (CUDA) "
                            "(default: %(default)s)")
    train.add_argument("--channels-last", nargs="?", type=_channels_last, const=True, default="auto", metavar="{auto,on,off}",
                       help="channels_last memory format for training: bare --channels-last = on; auto = where it trains faster "
                            "(GPUs, bf16 autocast, float32 on AVX-512 CPUs; NCHW for float32 on other CPUs) (default: auto)")
    train.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False, help="= --channels-last off")
    train.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False,
                       help="decode both splits once and keep them in memory (refused if they would not fit)")
    train.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                       help='also log every epoch to TensorBoard in DIR (default: OUT/tensorboard); needs pip install "segzoo[tensorboard]"')
    train.add_argument("--patience", type=positive, metavar="N",
                       help="early stopping: stop once validation mIoU has not improved for N epochs")
    train.add_argument("--val-every", type=positive, default=1, metavar="N",
                       help="validate after every N-th epoch and the last (default: %(default)s); the others only train")
    train.add_argument("--time-limit", type=positive_float, metavar="MIN",
                       help="stop cleanly after the last epoch that ends within MIN minutes; resume with --resume")
    train.add_argument("--accumulate", type=positive, default=1, help="gradient accumulation steps")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the checkpoints of an earlier run in OUT (without it, or --resume, such an OUT is refused)")
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available; under torchrun: cuda:LOCAL_RANK)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=False,
                       help="deterministic kernels: reruns give identical weights")
    train.add_argument("--sync-bn", action="store_true", help="under torchrun on GPUs: BatchNorm statistics over all processes")


def _channels_last(text: str) -> bool | str:
    """``--channels-last``'s value as ``TrainConfig.channels_last`` takes it: True, False or "auto"."""
    if text not in CHANNELS_LAST_WORDS:
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return CHANNELS_LAST_WORDS[text]


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """Fill ``args`` with defaults < recipe < flags and return the resolved recipe (every field)."""
    given = getattr(args, "given", set())
    base = load_recipe(args.recipe) if args.recipe else Recipe(None, "command-line options")
    for key, value in base.options.items():
        if key not in given:
            setattr(args, key, list(value) if isinstance(value, tuple) else value)
    if args.weights_backbone is not None and args.weights_backbone.lower() == "none":
        args.weights_backbone = None
    return base.merged({key: getattr(args, key) for key in RECIPE_FIELDS}, source="segzoo train options")


def run_train(args: argparse.Namespace) -> None:
    """``segzoo train``: resolve the recipe, check every option, then build the model, open the data and train."""
    recipe = resolve_recipe(args)
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
        patience=args.patience, val_every=args.val_every, loss=args.loss, label_smoothing=args.label_smoothing,
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
            print_run(result)


def _takes(model: str, option: str) -> bool:
    """Whether the registered ``model``'s constructor takes ``option``."""
    return option in inspect.signature(model_class(model)).parameters


def _print_time_limit(result: RunResult, args: argparse.Namespace) -> None:
    longest = max(r["seconds"] for r in result.history) / 60
    argv = list(args.argv) + ([] if args.resume else ["--resume"])
    # best.pt exists once a validation has run (not yet when the limit comes first, --val-every > 1)
    written = [name for name in ("last.pt", "best.pt") if (Path(result.out_dir) / name).exists()]
    print(
        f"time limit of {args.time_limit:g} min: stopped after epoch {result.history[-1]['epoch']}/{args.epochs} "
        f"(an epoch took up to {longest:.1f} min); {' and '.join(written)} {'are' if len(written) > 1 else 'is'} in {result.out_dir}"
    )
    if longest >= args.time_limit:
        print(f"the next epoch will not fit in {args.time_limit:g} min either: resume with a longer --time-limit")
    print(f"resume with: segzoo {shlex.join(argv)}")
    print_files(result.files)
