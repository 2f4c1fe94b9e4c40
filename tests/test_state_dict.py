"""Reading state dicts safely (read_state_dict) and loading them all-or-nothing (load_exact)."""

from __future__ import annotations

import os
import pathlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segzoo.io.state_dict import load_exact, read_state_dict

torch.set_num_threads(2)


def small_state() -> dict[str, torch.Tensor]:
    """A small random state dict with float and integer tensors."""
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(3, generator=g), "n": torch.tensor(7)}


def assert_same_state(actual, expected) -> None:
    assert list(actual) == list(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


class MarkerPayload:
    """Unpickling this runs ``make(marker)``: the payload of a malicious checkpoint."""

    def __init__(self, make, marker: Path) -> None:
        self.make, self.marker = make, marker

    def __reduce__(self):
        return self.make, (self.marker,)


def touch_with_os_system(marker: Path):
    """A reduce payload that runs a shell command (os.system) creating ``marker``."""
    return MarkerPayload(os.system, f"touch '{marker}'")


# --- read_state_dict -------------------------------------------------------------------------------


@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "Path"])
def test_round_trip_from_file(as_type, tmp_path):
    """A torch.save'd state dict reads back key for key, tensor for tensor, on the CPU."""
    state = small_state()
    torch.save(state, tmp_path / "w.pth")
    loaded = read_state_dict(as_type(tmp_path / "w.pth"))
    assert type(loaded) is dict
    assert_same_state(loaded, state)
    assert all(v.device.type == "cpu" for v in loaded.values())


def test_real_module_state_dict_round_trip(tmp_path):
    """An nn.Module's state_dict (OrderedDict with BN buffers) reads back exactly."""
    torch.manual_seed(0)
    state = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict()
    torch.save(state, tmp_path / "m.pth")
    assert_same_state(read_state_dict(tmp_path / "m.pth"), state)


def test_mapping_is_returned_as_dict():
    """A mapping in memory comes back as a plain dict with the same tensors, without copying them."""
    state = OrderedDict(small_state())
    loaded = read_state_dict(state)
    assert type(loaded) is dict
    assert_same_state(loaded, state)
    assert all(loaded[k] is state[k] for k in state)


@pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict", "model", "model_state"])
@pytest.mark.parametrize("from_file", [False, True], ids=["mapping", "file"])
def test_wrappers_are_unwrapped(wrapper, from_file, tmp_path):
    """{"state_dict" | "model_state_dict" | "model": sd, plus training metadata} yields sd."""
    state = small_state()
    wrapped = {wrapper: state, "epoch": 12, "optimizer": {"lr": 0.1}}
    if from_file:
        torch.save(wrapped, tmp_path / "ckpt.pth")
        wrapped = tmp_path / "ckpt.pth"
    assert_same_state(read_state_dict(wrapped), state)


def _numpy_1_names(path: Path) -> None:
    """Rewrite a pre-1.6 format file as numpy 1.x pickles scalars: ``numpy.core.multiarray.scalar``
    (numpy 2 writes ``numpy._core``). Protocol 2 names globals by newline-ended text, so the
    stream stays valid."""
    data = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))


@pytest.mark.parametrize("fmt", ["zip", "legacy", "legacy-numpy1"])
def test_trainer_file_with_numpy_scalars(fmt, tmp_path):
    """Trainers save metrics as numpy scalars (np.nanmean's float64; ints, float32, bools too):
    such files are read with exactly those globals allowed, for the duration of the read only."""
    state = small_state()
    path = tmp_path / "model_best.pth.tar"
    checkpoint = {
        "model_state_dict": state,
        "best_mean_iu": np.float64(0.5),
        "scores": [np.float32(0.25), np.int64(3), np.bool_(True), np.uint8(7), np.float16(1.5)],
        "optim_state_dict": {"state": {}, "param_groups": [{"lr": 1e-10, "params": [0, 1]}]},
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=fmt == "zip")
    if fmt == "legacy-numpy1":
        _numpy_1_names(path)
    before = set(torch.serialization.get_safe_globals())  # a set: its order may change
    assert_same_state(read_state_dict(path), state)
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(Exception, match="numpy"):  # the allowance did not outlive the read
        torch.load(path, weights_only=True)


def test_callers_own_allowances_are_kept(tmp_path):
    """A global the caller allowed before (here numpy.dtype) is still allowed after a read."""
    torch.save({"state_dict": small_state(), "best_iou": np.float64(0.5)}, tmp_path / "ckpt.pth")
    with torch.serialization.safe_globals([np.dtype]):
        read_state_dict(tmp_path / "ckpt.pth")
        assert np.dtype in torch.serialization.get_safe_globals()
    assert np.dtype not in torch.serialization.get_safe_globals()


def test_numpy_array_is_still_refused(tmp_path):
    """Only numpy scalars are allowed: an ndarray (numpy's _reconstruct) is refused as before."""
    torch.save({"weight": torch.zeros(2), "hist": np.zeros(3)}, tmp_path / "array.pth")
    with pytest.raises(ValueError, match="pickled"):
        read_state_dict(tmp_path / "array.pth")


@pytest.mark.parametrize("from_file", [False, True], ids=["mapping", "file"])
def test_data_parallel_prefix_is_stripped(from_file, tmp_path):
    """nn.DataParallel / DDP state dicts (every key prefixed module.) come back without it."""
    state = small_state()
    source = {"model_state": {f"module.{k}": v for k, v in state.items()}, "best_iou": np.float64(0.5)}
    if from_file:
        torch.save(source, tmp_path / "dp.pkl")
        source = tmp_path / "dp.pkl"
    assert_same_state(read_state_dict(source), state)


def test_partial_module_prefix_is_kept():
    """A prefix on some keys only is a layer really called ``module``: left alone."""
    state = {"module.weight": torch.zeros(2), "head.weight": torch.ones(2)}
    assert_same_state(read_state_dict(state), state)


@pytest.mark.parametrize("from_file", [False, True], ids=["mapping", "file"])
def test_non_tensor_value_is_rejected(from_file, tmp_path):
    """A mapping with a non-tensor entry is a ValueError naming the entry."""
    state = {**small_state(), "epoch": 3}
    if from_file:
        torch.save(state, tmp_path / "bad.pth")
        state = tmp_path / "bad.pth"
    with pytest.raises(ValueError, match="epoch"):
        read_state_dict(state)


def test_file_holding_a_list_is_rejected(tmp_path):
    """A file holding a list of tensors (not a mapping) is a ValueError."""
    torch.save(list(small_state().values()), tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list"):
        read_state_dict(tmp_path / "list.pth")


@pytest.mark.parametrize("value", [[torch.zeros(1)], 3, None], ids=["list", "int", "None"])
def test_non_mapping_in_memory_is_a_type_error(value):
    """An in-memory value that is neither a path nor a mapping is a TypeError."""
    with pytest.raises(TypeError):
        read_state_dict(value)


def test_module_in_memory_is_a_type_error():
    """An nn.Module passed in memory is not a mapping: TypeError (as documented: path or state dict)."""
    with pytest.raises(TypeError, match="Linear"):
        read_state_dict(nn.Linear(2, 2))


@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "Path"])
def test_missing_file(as_type, tmp_path):
    """A path to no file is a FileNotFoundError naming it; a directory is one too."""
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_state_dict(as_type(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError):
        read_state_dict(as_type(tmp_path))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_file_is_a_value_error(legacy, tmp_path):
    """The first half of a real checkpoint file is a ValueError, not a crash of another kind."""
    full, cut = tmp_path / "full.pth", tmp_path / "cut.pth"
    torch.save(small_state(), full, _use_new_zipfile_serialization=not legacy)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth"):
        read_state_dict(cut)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n"], ids=["empty", "text"])
def test_garbage_file_is_a_value_error(content, tmp_path):
    """An empty file or a text file is a ValueError."""
    (tmp_path / "junk.pth").write_bytes(content)
    with pytest.raises(ValueError):
        read_state_dict(tmp_path / "junk.pth")


# --- security: pickled code is refused, never executed -----------------------------------------


@pytest.mark.parametrize(
    "payload",
    [lambda m: MarkerPayload(pathlib.Path.touch, m), touch_with_os_system],
    ids=["Path.touch", "os.system"],
)
@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-state-dict"])
def test_malicious_pickle_is_refused_not_executed(payload, nested, tmp_path):
    """A checkpoint whose unpickling would run code is a ValueError about pickled objects; the code never runs."""
    marker = tmp_path / "pwned"
    obj = payload(marker)
    torch.save({"weight": torch.zeros(2), "extra": obj} if nested else obj, tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(ValueError, match="pickled") as info:
        read_state_dict(tmp_path / "evil.pth")
    assert "refuse" in str(info.value)
    assert not marker.exists()


def test_malicious_pickle_payload_is_live(tmp_path):
    """Control: the same file loaded unsafely (weights_only=False) does create the marker."""
    marker = tmp_path / "pwned"
    torch.save(MarkerPayload(pathlib.Path.touch, marker), tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def test_whole_module_file_is_refused(tmp_path):
    """torch.save(module) (a pickled nn.Module) is a ValueError that says to save the state_dict."""
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    with pytest.raises(ValueError, match="state_dict"):
        read_state_dict(tmp_path / "module.pth")


# --- load_exact -----------------------------------------------------------------------------------


def make_module() -> nn.Module:
    """A small module with parameters and BN buffers; last key in order is fc.bias."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), bn=nn.BatchNorm2d(4), fc=nn.Linear(4, 5)))


def random_like(module: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict fitting ``module`` exactly, every tensor random and different from the module's."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = value + 1 + torch.randint(0, 100, value.shape, generator=g)
    return state


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_load_exact_success_loads_exactly():
    """A fitting state dict is loaded tensor for tensor (parameters and buffers), as copies."""
    module = make_module()
    state = random_like(module)
    load_exact(module, state, "test weights")
    assert_same_state(module.state_dict(), state)
    assert module.conv.weight.data_ptr() != state["conv.weight"].data_ptr()


def test_load_exact_wrong_shape_late_loads_nothing():
    """One late key of the wrong shape: ValueError listing it, and every parameter and buffer unchanged."""
    module = make_module()
    before = snapshot(module)
    state = random_like(module)
    assert list(state)[-1] == "fc.bias"
    state["fc.bias"] = torch.zeros(6)
    with pytest.raises(ValueError, match=r"fc\.bias") as info:
        load_exact(module, state, "test weights")
    assert "test weights" in str(info.value)
    assert_same_state(module.state_dict(), before)


def test_load_exact_missing_key_loads_nothing():
    """A missing key is a ValueError naming it; nothing is loaded."""
    module = make_module()
    before = snapshot(module)
    state = random_like(module)
    del state["bn.running_var"]
    with pytest.raises(ValueError, match=r"bn\.running_var"):
        load_exact(module, state, "test weights")
    assert_same_state(module.state_dict(), before)


def test_load_exact_unexpected_key_loads_nothing():
    """An extra key is a ValueError naming it; nothing is loaded."""
    module = make_module()
    before = snapshot(module)
    state = {**random_like(module), "head.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"head\.weight"):
        load_exact(module, state, "test weights")
    assert_same_state(module.state_dict(), before)


def test_load_exact_allows_missing_num_batches_tracked():
    """A state dict without num_batches_tracked loads everything else; the counter keeps its value."""
    module = make_module()
    module.bn.num_batches_tracked.fill_(42)
    state = random_like(module)
    del state["bn.num_batches_tracked"]
    load_exact(module, state, "old weights")
    loaded = module.state_dict()
    assert int(loaded["bn.num_batches_tracked"]) == 42
    for key in state:
        assert torch.equal(loaded[key], state[key]), key


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_compiled_model_prefix_is_stripped(prefix):
    """torch.compile's wrapper (every key prefixed _orig_mod.), alone or with DDP's, comes back without it."""
    state = small_state()
    assert_same_state(read_state_dict({"state_dict": {prefix + k: v for k, v in state.items()}}), state)
