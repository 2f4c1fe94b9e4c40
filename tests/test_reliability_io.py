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
