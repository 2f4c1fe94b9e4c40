"""Files: the rename of an atomic write reaches the disk; checkpoints that are not what segzoo
wrote fail in one line, and nothing read from a checkpoint reaches the network."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import segzoo
from segzoo.io import atomic
from segzoo.io.checkpoint import FORMAT, load, load_run, load_weights, save_checkpoint


def test_atomic_write_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    """Without a sync of the folder, a power loss after the rename can bring back the old entry."""
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def recording_replace(source, target):
        events.append("rename")
        replace(source, target)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    with atomic.atomic_write(tmp_path / "file.bin") as file:
        file.write(b"data")
    assert events == ["fsync file", "rename", "fsync folder"]
    assert (tmp_path / "file.bin").read_bytes() == b"data"


def _checkpoint(tmp_path, **changes):
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3)
    path = save_checkpoint(tmp_path / "model.pt", model)
    checkpoint = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del checkpoint[key]
        else:
            checkpoint[key] = value
    torch.save(checkpoint, path)
    return path, model


@pytest.mark.parametrize(
    ("changes", "mention"),
    [
        ({"model": None}, "model"),
        ({"model": "segnet_basic"}, "model"),
        ({"model": {"name": "segnet_basic", "config": "num_classes=3"}}, "config"),
        ({"model": {"config": {"num_classes": 3}}}, "name"),
        ({"model": {"name": 7, "config": {"num_classes": 3}}}, "name"),
        ({"model": {"name": "unet", "config": {"num_classes": 3}}}, "unet"),
        ({"model": {"name": "segnet_basic", "config": {"num_classes": "3"}}}, "num_classes"),
        ({"state_dict": None}, "state_dict"),
        ({"state_dict": [1, 2]}, "state_dict"),
    ],
)
def test_malformed_checkpoints_fail_in_one_line(tmp_path, changes, mention):
    path, _ = _checkpoint(tmp_path, **changes)
    for read in (load, load_run, lambda p: load_weights(segzoo.SegNetBasic(3), p)):
        with pytest.raises(ValueError) as info:
            read(path)
        message = str(info.value)
        assert mention in message and str(path) in message and "\n" not in message, message


@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """An empty torch.hub cache and any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def refuse(*args, **kwargs):
        pytest.fail(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("weights", ["DEFAULT", "IMAGENET1K_V1", "/nonexistent/vgg16_bn.pth"])
def test_a_config_asking_for_backbone_weights_loads_from_the_file_alone(tmp_path, no_network, weights):
    """The weights come from the checkpoint: a config naming weights_backbone must not download them."""
    path, _ = _checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model"] = {"name": "segnet", "config": {"num_classes": 3, "weights_backbone": weights, "progress": True}}
    torch.manual_seed(0)
    segnet = segzoo.SegNet(3)
    checkpoint["state_dict"] = segnet.state_dict()
    assert checkpoint["format"] == FORMAT
    torch.save(checkpoint, path)
    loaded, _ = load_run(path)
    for key, value in segnet.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert "weights_backbone" not in loaded.config
    load_weights(segzoo.SegNet(3, dropout="central"), path)
