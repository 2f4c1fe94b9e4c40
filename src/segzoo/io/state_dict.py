"""Reading state dicts safely and loading them all-or-nothing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from torch import Tensor, nn

from .torchfile import read_torch_file

StateDictSource = str | os.PathLike | Mapping[str, Tensor]

# Training scripts often wrap the weights; these are the wrappers unwrapped automatically
# ("model_state_dict": pytorch-fcn's trainer, "model_state": pytorch-semseg's).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "model_state")

#: the prefixes wrappers put before every key of the wrapped model's state dict: nn.DataParallel
#: and DistributedDataParallel ``module.``, torch.compile's OptimizedModule ``_orig_mod.``
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` without the prefixes of :data:`WRAPPER_PREFIXES`, as often and in whatever order
    they were stacked (``module._orig_mod.`` for DDP around a compiled model), each stripped only
    when every key has it: a prefix on some keys only is a layer really named so, and is kept. Any
    other prefix is kept too, so that loading reports it rather than guessing."""
    state = dict(state)
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in state)), None)
        if prefix is None:
            break
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def preview_keys(keys: Iterable[str], limit: int = 6) -> str:
    """``[a, b, ... (N in all)]`` for error messages, or ``none``."""
    keys = list(keys)
    if not keys:
        return "none"
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


def unknown_layers(state: Mapping[str, Tensor], layers: Mapping[str, str]) -> list[str]:
    """Keys of ``state`` whose layer (the part before the last dot) ``layers`` does not name."""
    return [key for key in state if key.rsplit(".", 1)[0] not in layers]


def load_renamed(module: nn.Module, state: Mapping[str, Tensor], layers: Mapping[str, str], source: str) -> None:
    """:func:`load_exact` for a state dict of another layout, whose layer names ``layers`` maps to
    ``module``'s; error messages name the checkpoint's own keys."""
    back = {ours: theirs for theirs, ours in layers.items()}
    renamed = {_rename_layer(key, layers): value for key, value in state.items()}
    load_exact(module, renamed, source, lambda key: _rename_layer(key, back))


def _rename_layer(key: str, layers: Mapping[str, str]) -> str:
    layer, param = key.rsplit(".", 1)
    return f"{layers.get(layer, layer)}.{param}"


def read_state_dict(source: StateDictSource) -> dict[str, Tensor]:
    """Return a ``{name: tensor}`` dict from a file path or a mapping.

    Files are read with :func:`segzoo.io.torchfile.read_torch_file` (checksums verified, then
    ``torch.load(weights_only=True)``): a file holding a pickled module or any other code-bearing
    object is refused, never executed, and a damaged file is named as such; numpy scalars (trainers'
    metrics) are read. A single wrapper level (``state_dict`` / ``model_state_dict`` / ``model`` /
    ``model_state``) is unwrapped, and the prefixes of a DataParallel / DDP-wrapped or
    torch.compile'd model are stripped (:func:`strip_wrapper_prefixes`).
    """
    if isinstance(source, (str, os.PathLike)):
        loaded, where = read_torch_file(source), str(source)
    elif isinstance(source, Mapping):
        loaded, where = source, "the given state dict"
    else:
        raise TypeError(f"expected a file path or a state dict (mapping of str to Tensor), got {type(source).__name__}")
    if isinstance(loaded, nn.Module):
        raise ValueError(f"{where} is an nn.Module; pass module.state_dict() instead")
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{where} holds a {type(loaded).__name__}, expected a state dict (mapping of str to Tensor)")
    for key in _WRAPPER_KEYS:
        if key in loaded and isinstance(loaded[key], Mapping):
            loaded = loaded[key]
            break
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ValueError(f"{where} is not a state dict: entries {preview_keys(not_tensors)} are not tensors")
    return strip_wrapper_prefixes(loaded)


def load_exact(
    module: nn.Module,
    state: Mapping[str, Tensor],
    source: str,
    source_key: Callable[[str], str] = str,
) -> None:
    """Load ``state`` into ``module`` only if every key and shape fits; otherwise load nothing.

    ``nn.Module.load_state_dict`` copies tensors one by one and reports shape mismatches at the
    end, leaving the module half loaded; this checks everything first. A missing
    ``num_batches_tracked`` is allowed (checkpoints older than PyTorch 0.4.1 lack it).
    ``source_key`` turns a module key back into the checkpoint's own name for error messages,
    where ``state`` was renamed from another layout.
    """
    expected = module.state_dict()
    missing = [source_key(k) for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [source_key(k) for k in state if k not in expected]
    mismatched = [
        f"{source_key(k)}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not fit {type(module).__name__}: missing {preview_keys(missing)}, "
            f"unexpected {preview_keys(unexpected)}, shape mismatches (checkpoint vs model) "
            f"{preview_keys(mismatched)}"
        )
    complete = dict(state)
    for key, value in expected.items():
        complete.setdefault(key, value)
    module.load_state_dict(complete, strict=True)
