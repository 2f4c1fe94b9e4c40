"""ImageNet weights for the VGG16 encoder: entries, resolving what the user passed, the hub cache.

Network access happens only when a user asks for pretrained weights, and only through the
torch.hub cache: a file already at ``$TORCH_HOME/hub/checkpoints/<file name>`` is used offline.

A model with ``in_channels != 3`` still starts from the RGB weights: its first conv is adapted
as timm and segmentation_models_pytorch do (:func:`adapt_first_conv`), and its input mean/std
follow the same rule (:func:`channel_statistics`).
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
    state = resolve_backbone_weights(weights, batch_norm, progress)
    in_channels = target["encoder"].in_channels
    if in_channels != 3 and isinstance(state.get(_FIRST_CONV), Tensor):
        state = {**state, _FIRST_CONV: adapt_first_conv(state[_FIRST_CONV], in_channels)}
    converted = from_torchvision(state, batch_norm, with_fc="fc6" in target)
    load_exact(target, adapt(converted) if adapt else converted, "weights_backbone")


# the first conv's weight in torchvision's VGG layout (with and without BN)
_FIRST_CONV = "features.0.weight"


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """RGB filters ``(out, 3, kh, kw)`` adapted to ``in_channels`` inputs, as timm's
    ``adapt_input_conv`` and segmentation_models_pytorch do it:

    * 1: the sum over R, G, B, so a grey image gives exactly the response of the RGB filters to
      that image replicated into three channels;
    * 3: unchanged;
    * any other N: the RGB filters repeated cyclically (R, G, B, R, G, ...) to N channels and
      scaled by 3 / N, which keeps the response to an input whose channels are all equal.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"expected RGB conv filters (out, 3, kh, kw), got shape {tuple(weight.shape)}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
    if in_channels == 3:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    repeats = -(-in_channels // 3)
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)


def channel_statistics(values: tuple[float, float, float], in_channels: int) -> tuple[float, ...]:
    """Per-channel input statistics (mean or std) for ``in_channels``, by :func:`adapt_first_conv`'s
    rule: 1 -> the average of the three RGB values, 3 -> as they are, N -> repeated cyclically."""
    if in_channels == 1:
        return (sum(values) / 3,)
    return tuple(values[i % 3] for i in range(in_channels))
