"""Sharing trained models: a folder of ``config.json`` + ``model.safetensors`` + a model card.

``save_pretrained(model, folder, run)`` writes the three files atomically; ``from_pretrained`` and
every function that takes a checkpoint path (``segzoo.load``, ``load_run``, ``load_weights``, the
``evaluate`` / ``predict`` / ``export`` commands) also take such a folder or its ``.safetensors``
file. safetensors holds only tensors (no pickle), so reading one never runs code. With the
optional ``hub`` extra (``pip install "segzoo[hub]"``, huggingface_hub), :func:`push_to_hub` uploads
the folder and a Hugging Face Hub id (``owner/name``) loads like a folder; nothing touches the
network unless a hub id is given.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .atomic import atomic_write
from .run_description import RunDescription

FORMAT = "segzoo-pretrained/1"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"


def save_pretrained(
    model: Any, folder: str | os.PathLike, run: RunDescription | None = None, scores: Mapping[str, float] | None = None
) -> Path:
    """Write ``model`` to ``folder`` (created if needed): ``config.json`` (architecture, config and
    run description), ``model.safetensors`` (the weights) and ``README.md`` (a model card with the
    classes, input normalisation, data settings and ``scores``, e.g. ``scores.summary()``). Each
    file is written atomically. Returns the folder."""
    from safetensors.torch import save

    from ..models.registry import model_name

    run = run or RunDescription.for_model(model)
    if run.num_classes != model.num_classes:
        raise ValueError(f"the run description names {run.num_classes} classes, the model has {model.num_classes}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder")
    name = model_name(model)
    config = {
        "format": FORMAT,
        "segzoo_version": __version__,
        "model": {"name": name, "config": model.config},
        "run": run.to_dict(),
        "scores": dict(scores or {}),
    }
    # safetensors refuses shared or non-contiguous storage: every tensor is saved as its own copy
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    with atomic_write(folder / WEIGHTS_FILE) as file:
        file.write(save(tensors, metadata={"format": FORMAT}))
    with atomic_write(folder / CARD_FILE) as file:
        file.write(model_card(name, model, run, config["scores"]).encode())
    with atomic_write(folder / CONFIG_FILE) as file:  # last: a folder with a config is complete
        file.write(json.dumps(config, indent=2).encode())
    return folder


def is_pretrained(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a pretrained folder or its ``.safetensors`` file (not a torch file)."""
    path = Path(path)
    return (path.is_dir() and (path / CONFIG_FILE).is_file()) or path.suffix == ".safetensors"


def read_pretrained(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict (``model``, ``state_dict``, ``run``) of a pretrained folder, or of the
    ``.safetensors`` file inside one; damaged or incomplete folders give a ``ValueError`` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config_path, weights_path = folder / CONFIG_FILE, (path if path.suffix == ".safetensors" else folder / WEIGHTS_FILE)
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: a pretrained model is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path} is not readable JSON: {error}") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("model"), dict):
        raise ValueError(f"{config_path} is not a segzoo pretrained config (expected format={FORMAT!r} and a 'model' entry)")
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{weights_path} is truncated or corrupted: {error}") from error
    checkpoint = {"format": "segzoo-checkpoint/1", "model": config["model"], "state_dict": state}
    if "run" in config:
        checkpoint["run"] = config["run"]
    return checkpoint


def from_pretrained(source: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Rebuild the model of a pretrained folder, its ``.safetensors`` file or a Hugging Face Hub
    id (``owner/name``, needs the ``hub`` extra); see :func:`segzoo.load_run` for the run description."""
    from .checkpoint import load

    return load(resolve_source(source), map_location)


def resolve_source(source: str | os.PathLike) -> Path:
    """A local path as is; a Hugging Face Hub id (``owner/name`` that is not a local path)
    downloaded (config, weights and card only) into the hub cache."""
    path = Path(source)
    if path.exists() or not isinstance(source, str) or source.count("/") != 1 or source.startswith((".", "/")):
        return path
    hub = _hub()
    try:
        return Path(hub.snapshot_download(source, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE]))
    except Exception as error:  # the hub raises many kinds (offline, not found, auth); each means "not here"
        raise ValueError(f"{source} is neither a local path nor a downloadable Hugging Face Hub model: {error}") from error


def push_to_hub(
    model: Any,
    repo_id: str,
    run: RunDescription | None = None,
    scores: Mapping[str, float] | None = None,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload ``model`` as a pretrained folder to the Hugging Face Hub repository ``repo_id``
    (created if needed); returns the URL of the commit."""
    hub = _hub()
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder, run, scores)
        info = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="Upload segzoo model")
    return str(getattr(info, "commit_url", info))


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError('the Hugging Face Hub needs huggingface_hub: pip install "segzoo[hub]"') from error
    return huggingface_hub


def model_card(name: str, model: Any, run: RunDescription, scores: Mapping[str, float]) -> str:
    """The README.md of a pretrained folder: what the model is, its classes and how to use it."""
    lines = [
        "---",
        "library_name: segzoo",
        "tags: [semantic-segmentation, pytorch, segzoo]",
        "---",
        "",
        f"# {type(model).__name__} ({name}), {run.num_classes} classes",
        "",
        f"A [segzoo](https://pypi.org/project/segzoo/) {type(model).__name__} with "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; config `{json.dumps(model.config)}`.",
        "",
        "```python",
        "import segzoo",
        'model, run = segzoo.load_run("path/or/hub-id")   # or segzoo.from_pretrained(...)',
        "labels = model.predict(image)                   # PIL image / uint8 array -> (N, H, W) class indices",
        "```",
        "",
        f"Inputs: RGB scaled to [0, 1], normalised with mean {list(run.mean)} and std {list(run.std)}"
        + (f"; evaluated at {run.data.eval_size[0]}x{run.data.eval_size[1]}" if run.data.eval_size else "")
        + ".",
        "",
        "| index | class | colour |",
        "|---:|---|---|",
    ]
    lines += [f"| {i} | {n} | {tuple(c)} |" for i, (n, c) in enumerate(zip(run.class_names, run.colours))]
    if run.ignore_index is not None:
        lines += ["", f"Label {run.ignore_index} is ignored (void)."]
    lines += ["", "## Training data", "", f"Layout: {run.layout or 'given in Python'}; data settings: `{json.dumps(run.data.to_dict())}`."]
    if scores:
        lines += ["", "## Scores", "", "| " + " | ".join(scores) + " |", "|" + "---:|" * len(scores)]
        lines.append("| " + " | ".join(f"{100 * v:.1f}" for v in scores.values()) + " |")
    return "\n".join(lines) + "\n"
