"""The command line keeps its promises: no run silently replaces another's checkpoints, no output
overwrites another's, and every user error (bad device, offline weights, unusable --out, a
checkpoint or layout that does not fit) exits with status 2 and one line, before any long work."""

from __future__ import annotations

import os
import time
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import segzoo
from segzoo.cli import main
from segzoo.io.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory):
    """DATA/{train,val}/{images,masks}: 6 + 3 images of 40x48, 3 classes in row bands, 255 ignored."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            mask = np.repeat(np.arange(40) // 14, 48).reshape(40, 48).astype(np.uint8)
            mask[0, :4] = 255
            image = rng.integers(0, 50, (40, 48, 3), dtype=np.uint8) + (mask.clip(0, 2)[..., None] * 80).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{i}.png")
    return root


def _train_args(data, out, *extra):
    return [
        "train", "--model", "segnet_basic", "--data", str(data), "--num-classes", "3", "--ignore-index", "255",
        "--epochs", "1", "--batch-size", "3", "--lr", "0.01", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(folder_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(_train_args(folder_dataset, out)) == 0
    return out


def _one_line_error(capsys, *mentions, status=2, result):
    err = capsys.readouterr().err.strip()
    assert result == status, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("segzoo "), err
    for mention in mentions:
        assert mention in err, f"{mention!r} not in: {err}"
    return err


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


# ---- layouts that do not fit ----


def _camvid(root):
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / "a.png")
        mask = np.zeros((8, 8), np.uint8)
        mask[0] = 11
        Image.fromarray(mask, mode="L").save(root / f"{split}annot" / "a.png")
    return root


def test_evaluating_on_camvid_a_checkpoint_with_another_ignore_label_is_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(11), metadata={"ignore_index": 255})
    _one_line_error(capsys, "ignore", "camvid", result=main(["evaluate", str(checkpoint), "--data", str(_camvid(tmp_path / "camvid")), "--layout", "camvid"]))


@pytest.mark.parametrize("extra", [("--num-classes", "5"), ("--ignore-index", "255")])
def test_training_on_camvid_refuses_class_settings_it_would_ignore(tmp_path, capsys, extra):
    argv = ["train", "--model", "segnet_basic", "--data", str(_camvid(tmp_path / "camvid")), "--layout", "camvid",
            "--out", str(tmp_path / "run"), "--no-progress", *extra]  # fmt: skip
    _one_line_error(capsys, "camvid", extra[0][2:].replace("-", "_"), result=main(argv))


# ---- checkpoints that do not fit ----


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_a_checkpoint_without_its_model_is_one_line(folder_dataset, tmp_path, capsys, command):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(3))
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["model"]
    torch.save(checkpoint, path)
    argv = {
        "evaluate": ["evaluate", str(path), "--data", str(folder_dataset)],
        "predict": ["predict", str(path), str(folder_dataset / "val" / "images" / "0.png"), "--out", str(tmp_path / "out")],
        "export": ["export", str(path), "--out", str(tmp_path / "model.onnx")],
    }[command]
    _one_line_error(capsys, str(path), "model", result=main(argv))
