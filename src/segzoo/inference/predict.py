"""Predicting files: class masks, overlays and (with Monte Carlo dropout) uncertainty maps."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .. import viz
from .._checks import check_device
from ..data.pairs import image_to_tensor
from ..io.atomic import atomic_write, check_writable_folder
from ..io.checkpoint import load_run
from ..io.images import to_channels
from ..io.run_description import RunDescription
from .calibration import calibration_batches, calibration_files, spread
from .mc_dropout import normalised
from .optimize import fast_compiled, fast_dtype, optimize, refuse_mc_dropout
from .pipeline import InferenceOptions, infer


def predict_files(
    checkpoint: str | os.PathLike,
    images: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    device: str | None = None,
    mc_samples: int | None = None,
    seed: int = 0,
    options: InferenceOptions | None = None,
    fast: str | None = None,
    calibration: str | os.PathLike | None = None,
    eager: bool = False,
) -> list[Path]:
    """For each image write ``<name>_mask.png`` in the training masks' own format (see
    :func:`write_mask`) and ``<name>_overlay.png``; images are resized to the training ``eval_size``, if any, and the logits
    upsampled bilinearly back to the image's size before the argmax (as when scored), the heat maps
    likewise. ``<name>`` is the image's stem, made unique where inputs share one (see
    :func:`output_names`). ``out_dir`` and ``device`` are checked, and a checkpoint with non-finite
    weights refused, before any image is read.

    With ``mc_samples`` (a model built with dropout, e.g. Bayesian SegNet), the mask is the mean of
    that many Monte Carlo dropout passes (seeded), and heat maps of the predictive entropy and the
    mutual information, each divided by log C, are written beside it (``<name>_entropy.png``,
    ``<name>_mutual_information.png``; black: certain, pale yellow: log C).

    ``options`` adds sliding-window tiles and test-time augmentation (flips, scales) around the
    model or its MC dropout passes (:class:`~segzoo.inference.InferenceOptions`; its own
    ``mc_samples`` and ``seed`` are replaced by the arguments here).

    ``fast`` (``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"``; see :func:`~segzoo.inference.optimize.fast_dtype`) predicts with :func:`segzoo.optimize`'s compiled
    model; int8 calibrates on the images of the ``calibration`` folder, by default on
    :data:`~segzoo.inference.calibration.CALIBRATION_IMAGES` images from across those given
    (:func:`~segzoo.inference.calibration.spread`). Monte Carlo dropout is refused with it (the
    optimized model has no live dropout). ``eager`` runs the fused model without compiling it
    (``optimize(..., compiled=False)``; int8 for the SegNet family only).
    """
    out = check_writable_folder(out_dir, "output folder (--out)")
    device = check_device(device, "device (--device)") if device is not None else "cpu"
    names = output_names(images)
    model, run = load_run(checkpoint, device)
    bad = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:  # its logits would be NaN, and their argmax a mask of class 0
        raise ValueError(f"{checkpoint} holds non-finite weights ({', '.join(bad[:5])}): a diverged run? Nothing was predicted")
    model.eval()
    if fast is not None:
        refuse_mc_dropout(mc_samples)
        files = calibration_files(calibration) if calibration is not None else spread(images)
        dtype = fast_dtype(fast, device)
        batches = calibration_batches(files, model, run.data.eval_size) if dtype == "int8" else None
        model = optimize(model, dtype, calibration=batches, compiled=fast_compiled(fast, model, device, eager))
    settings = replace(options or InferenceOptions(), mc_samples=mc_samples or None, seed=seed)
    colours = run.palette
    eval_size = run.data.eval_size
    written = []
    done = set()
    for path, name in zip(map(Path, images), names):
        if name in done:  # the same file given twice
            continue
        done.add(name)
        try:
            with Image.open(path) as file:
                image = image_to_tensor(file)
        except (OSError, SyntaxError, ValueError) as error:  # ValueError: a mode segzoo refuses (io.images)
            raise ValueError(f"cannot read image {path}: {error}") from error
        resized = to_channels(image, model.in_channels)  # grayscale for a 1-channel model
        if eval_size:
            resized = F.interpolate(resized[None].float(), size=tuple(eval_size), mode="bilinear", antialias=True)
            resized = resized.round().clamp(0, 255).to(torch.uint8)[0]
        # as when scored: logits (or log-probabilities) upsampled bilinearly to the image's own size
        result = infer(model, resized, settings, output_size=tuple(image.shape[-2:]))
        maps = {"entropy": result.entropy, "mutual_information": result.mutual_information} if mc_samples else {}
        labels = result.labels[0].cpu()
        written.append(write_mask(out / f"{name}_mask.png", labels, run))
        written.append(viz.save_png(out / f"{name}_overlay.png", viz.overlay(image, labels, colours)))
        for kind, values in maps.items():
            heat = viz.heatmap(normalised(values[0].float().cpu(), model.num_classes))
            written.append(viz.save_png(out / f"{name}_{kind}.png", heat))
    return written


def write_mask(path: str | os.PathLike, labels: Tensor, run: RunDescription) -> Path:
    """Write predicted class indices (H, W) as the run's training masks stored them (atomically):

    * colour masks (``run.colour_table``): an RGB PNG in the table's colours;
    * a label map (``run.label_map``): a grayscale PNG of the file values, 8-bit (mode ``L``) when
      they fit, else 16-bit; each class as its canonical file value (the smallest mapping to it,
      see :mod:`segzoo.data.labelmaps`), so ``{0: 0, 255: 1}`` writes 0/255 masks and Cityscapes
      writes labelIds;
    * otherwise a palette PNG whose pixel values are the class indices (shown in the class colours).
    """
    array = labels.cpu().numpy()
    if run.colour_table is not None:
        picture = Image.fromarray(run.colour_table.encode(array, run.ignore_index))
    elif run.label_map is not None:
        values = run.label_map.encode(array, run.ignore_index)
        picture = Image.fromarray(values.astype(np.uint8 if values.max(initial=0) <= 255 else np.uint16))
    else:
        return viz.save_mask_png(path, labels, run.palette)
    with atomic_write(path) as file:
        picture.save(file, format="PNG")
    return Path(path)


def output_names(images: list[str | os.PathLike]) -> list[str]:
    """The name each image's outputs start with (``<name>_mask.png``, ...): unique per file and the
    same in every run, whatever the other inputs and their order.

    An image's stem, when no other input file has the same stem (compared case-insensitively, as
    macOS and Windows file systems compare names); otherwise the stem, a dash and the first 8 hex
    digits of the SHA-256 of the file's resolved path (``frame-3fa91c2e``), so ``a/frame.png`` and
    ``b/frame.png``, or ``x.png`` and ``x.jpg``, never overwrite each other's outputs. A file given
    twice gets the same name twice (and :func:`predict_files` predicts it once).
    """
    paths = [Path(image) for image in images]
    resolved = [path.resolve() for path in paths]
    files_by_stem: dict[str, set[Path]] = {}
    for path, full in zip(paths, resolved):
        files_by_stem.setdefault(path.stem.casefold(), set()).add(full)
    names = []
    for path, full in zip(paths, resolved):
        shared = len(files_by_stem[path.stem.casefold()]) > 1
        names.append(f"{path.stem}-{hashlib.sha256(str(full).encode()).hexdigest()[:8]}" if shared else path.stem)
    by_name: dict[str, Path] = {}
    for name, full in zip(names, resolved):  # a hashed name equal to another input's stem: never silently
        if by_name.setdefault(name.casefold(), full) != full:
            raise ValueError(f"inputs {by_name[name.casefold()]} and {full} would both write {name}_mask.png; rename one")
    return names
