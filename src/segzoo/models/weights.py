"""ImageNet weights for the VGG16 encoder: entries, resolving what the user passed, the hub cache.

Network access happens only when a user asks for pretrained weights, and only through the
torch.hub cache: a file already at ``$TORCH_HOME/hub/checkpoints/<file name>`` is used offline.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io.state_dict import load_exact, read_state_dict
from .vgg import from_torchvision


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint: where it lives and what it expects of the input."""

    name: str
    url: str
    batch_norm: bool
    num_params: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The sha256 prefix torchvision puts in its file names (``vgg16-397923af.pth``)."""
        return self.file_name.rsplit("-", 1)[-1].split(".")[0]

    def cache_path(self) -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / self.file_name


VGG16_IMAGENET1K_V1 = WeightsEntry(
    "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg16-397923af.pth", False, 138_357_544
)
VGG16_BN_IMAGENET1K_V1 = WeightsEntry(
    "IMAGENET1K_V1", "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth", True, 138_365_992
)
_ENTRIES = {False: VGG16_IMAGENET1K_V1, True: VGG16_BN_IMAGENET1K_V1}
WEIGHT_NAMES = ("DEFAULT", "IMAGENET1K_V1")

BackboneWeights = str | os.PathLike | Mapping[str, Tensor] | Any  # Any: a torchvision weights enum member
DOWNLOAD_TIMEOUT_S = 30.0


class WeightsUnavailable(RuntimeError):
    """Published weights that are neither in the torch.hub cache nor downloadable (offline, say);
    the message names the file and the folder to put it in. The command line reports it in one line."""


def backbone_entry(batch_norm: bool) -> WeightsEntry:
    """The published VGG16 (``batch_norm=False``) or VGG16-BN checkpoint entry."""
    return _ENTRIES[batch_norm]


def resolve_backbone_weights(weights: BackboneWeights, batch_norm: bool, progress: bool = True) -> dict[str, Tensor] | None:
    """Turn a ``weights_backbone=`` argument into a torchvision-layout state dict (or ``None``).

    Accepts ``None``; ``"DEFAULT"`` / ``"IMAGENET1K_V1"``; a torchvision ``VGG16_Weights`` /
    ``VGG16_BN_Weights`` member; a path to a local file; or a state dict in torchvision's layout.
    """
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        return read_state_dict(weights)
    if isinstance(weights, str) and weights in WEIGHT_NAMES:
        return load_entry(backbone_entry(batch_norm), progress)
    if isinstance(weights, (str, os.PathLike)):
        if not Path(weights).is_file():
            raise ValueError(
                f"weights_backbone={weights!r} is neither one of {list(WEIGHT_NAMES)} nor an existing file"
            )
        return read_state_dict(weights)
    url = getattr(weights, "url", None)
    if isinstance(url, str):  # a torchvision WeightsEnum member, duck-typed so torchvision stays optional
        entry = backbone_entry(batch_norm)
        if url != entry.url:
            raise ValueError(
                f"weights_backbone={weights} points to {url.rsplit('/', 1)[-1]}, but batch_norm={batch_norm} "
                f"needs {entry.file_name} ({'VGG16_BN_Weights' if batch_norm else 'VGG16_Weights'})"
            )
        return load_entry(entry, progress)
    raise TypeError(
        f"weights_backbone must be None, one of {list(WEIGHT_NAMES)}, a torchvision VGG16 weights enum member, "
        f"a file path or a state dict; got {type(weights).__name__}"
    )


def load_entry(entry: WeightsEntry, progress: bool = True) -> dict[str, Tensor]:
    """Load ``entry`` from the torch.hub cache, downloading it (hash checked) only when absent."""
    path = entry.cache_path()
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                # writes to a temporary file and renames it, so an interrupted download leaves nothing
                torch.hub.download_url_to_file(entry.url, str(path), hash_prefix=entry.hash_prefix, progress=progress)
        except OSError as error:  # URLError, timeouts and DNS failures are all OSErrors
            raise WeightsUnavailable(
                f"could not download {entry.file_name} from {entry.url} ({error}). To use it offline, "
                f"download it elsewhere and place it at {path} (the torch.hub cache; set TORCH_HOME to move it)."
            ) from error
        except RuntimeError as error:  # torch.hub: the download's sha256 does not start with the file's hash
            raise WeightsUnavailable(
                f"the download of {entry.file_name} from {entry.url} is damaged ({error}); nothing was kept, try again "
                f"or place the file at {path}"
            ) from error
    return read_state_dict(path)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub opens the URL without a timeout; an unreachable host must fail, not hang
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def load_vgg_backbone(
    target: torch.nn.ModuleDict,
    weights: BackboneWeights,
    batch_norm: bool,
    progress: bool,
    adapt: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> None:
    """Load ImageNet VGG16 weights into ``target['encoder']`` (and ``fc6``/``fc7`` when present).

    All-or-nothing: the checkpoint is converted and checked against every key and shape first.
    ``adapt`` reshapes the converted state before the check (DeepLab decimates fc6/fc7).
    """
    if weights is None:
        return
    in_channels = target["encoder"].in_channels
    if in_channels != 3:  # checked before resolving, so a wrong configuration never downloads
        raise ValueError(f"ImageNet weights expect in_channels=3, the model was built with in_channels={in_channels}")
    state = resolve_backbone_weights(weights, batch_norm, progress)
    converted = from_torchvision(state, batch_norm, with_fc="fc6" in target)
    load_exact(target, adapt(converted) if adapt else converted, "weights_backbone")
