"""Predicting files: class masks, overlays and (with Monte Carlo dropout) uncertainty maps."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .. import viz
from ..data.folder import image_to_tensor
from ..io.checkpoint import load_run
from ..metrics import upsample_logits
from .mc_dropout import mc_predict, normalised


def predict_files(
    checkpoint: str | os.PathLike,
    images: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    device: str | None = None,
    mc_samples: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """For each image write ``<stem>_mask.png`` (palette PNG whose pixels are class indices) and
    ``<stem>_overlay.png``; images are resized to the training ``eval_size``, if any, and the logits upsampled
    bilinearly back to the image's size before the argmax (as when scored), the heat maps likewise.

    With ``mc_samples`` (a model built with dropout, e.g. Bayesian SegNet), the mask is the mean of
    that many Monte Carlo dropout passes (seeded), and heat maps of the predictive entropy and the
    mutual information, each divided by log C, are written beside it (``<stem>_entropy.png``,
    ``<stem>_mutual_information.png``; black: certain, pale yellow: log C).
    """
    model, run = load_run(checkpoint, device or "cpu")
    model.eval()
    colours = run.palette
    eval_size = run.data.eval_size
    written = []
    for path in map(Path, images):
        try:
            with Image.open(path) as file:
                image = image_to_tensor(file)
        except (OSError, SyntaxError) as error:
            raise ValueError(f"cannot read image {path}: {error}") from error
        resized = image
        if eval_size:
            resized = F.interpolate(image[None].float(), size=tuple(eval_size), mode="bilinear", antialias=True)
            resized = resized.round().clamp(0, 255).to(torch.uint8)[0]
        maps: dict[str, Tensor] = {}
        if mc_samples:
            result = mc_predict(model, resized, mc_samples, seed=seed)
            logits = result.probabilities.clamp_min(torch.finfo(result.probabilities.dtype).tiny).log()
            maps = {"entropy": result.entropy, "mutual_information": result.mutual_information}
        else:
            with torch.no_grad():
                logits = model(model.prepare(resized))
        # as when scored: logits upsampled bilinearly to the image's own size, then the argmax
        labels = upsample_logits(logits.float(), image.shape[-2:]).argmax(1)
        if eval_size:
            maps = {k: F.interpolate(v[None], size=image.shape[-2:], mode="bilinear")[0] for k, v in maps.items()}
        labels = labels[0].cpu()
        written.append(viz.save_mask_png(Path(out_dir) / f"{path.stem}_mask.png", labels, colours))
        written.append(viz.save_png(Path(out_dir) / f"{path.stem}_overlay.png", viz.overlay(image, labels, colours)))
        for name, values in maps.items():
            heat = viz.heatmap(normalised(values[0].float().cpu(), model.num_classes))
            written.append(viz.save_png(Path(out_dir) / f"{path.stem}_{name}.png", heat))
    return written
