"""The README's "Your own data" walkthroughs through the command line, on tiny data: 0/255 binary
masks, RGB colour masks with a palette JSON, the Cityscapes and ADE20K layouts; and the one-line
errors bad masks stop at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_layouts import ade20k_tree, cityscapes_tree

import segzoo
from segzoo.cli import main

FAST = ["--model", "segnet_basic", "--epochs", "1", "--batch-size", "2", "--no-progress", "--device", "cpu"]
PALETTE = {
    "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "road", "color": [128, 64, 128]},
                {"name": "car", "color": [0, 0, 142]}],
    "ignore": [[255, 255, 255]],
}  # fmt: skip


@pytest.fixture(autouse=True)
def without_matplotlib_plots(monkeypatch):
    """The plots (seconds of matplotlib per run, and not what is tested here) take the path a
    machine without matplotlib takes: skipped. predictions.png (PIL) is still written."""

    def no_matplotlib(*args, **kwargs):
        raise ImportError("matplotlib left out by the test")

    monkeypatch.setattr(segzoo.viz, "plot_curves", no_matplotlib)
    monkeypatch.setattr(segzoo.viz, "plot_confusion_matrix", no_matplotlib)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def binary_folder(root: Path) -> None:
    """DATA/{train,val}/{images,masks}: photos with a bright box, masks 255 on the box and 0 elsewhere."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(2):
            mask = np.zeros((16, 24), np.uint8)
            mask[4:12, 6 + i : 16 + i] = 255
            image = rng.integers(0, 80, (16, 24, 3), dtype=np.uint8) + (mask[..., None] // 2)
            _save(root / split / "images" / f"photo{i}.jpg", image)
            _save(root / split / "masks" / f"photo{i}.png", mask)


def colour_folder(root: Path) -> None:
    """DATA/{train,val}/{images,masks} with RGB masks in PALETTE's colours (and its ignore colour)."""
    rng = np.random.default_rng(1)
    colours = [np.array(c["color"], np.uint8) for c in PALETTE["classes"]]
    for split in ("train", "val"):
        for i in range(2):
            labels = rng.integers(0, 3, (16, 24))
            mask = np.stack(colours)[labels]
            mask[0, :4] = 255  # ignored
            _save(root / split / "images" / f"street{i}.png", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
            _save(root / split / "masks" / f"street{i}.png", mask)


def test_binary_walkthrough(tmp_path, capsys):
    data, run, masks = tmp_path / "data", tmp_path / "run", tmp_path / "masks"
    binary_folder(data)
    assert main(["train", "--data", str(data), "--label-map", '{"0": 0, "255": 1}', "--loss", "ce+dice", "--out", str(run), *FAST]) == 0
    assert "mIoU" in capsys.readouterr().out
    model, description = segzoo.load_run(run / "best.pt")
    assert model.num_classes == 2 and description.label_map.pairs == ((0, 0), (255, 1))
    # evaluate reads the 0/255 masks with the label map the checkpoint stored
    assert main(["evaluate", str(run / "best.pt"), "--data", str(data)]) == 0
    assert "fg IoU" in capsys.readouterr().out
    assert main(["predict", str(run / "best.pt"), str(data / "val" / "images" / "photo0.jpg"), "--out", str(masks)]) == 0
    written = Image.open(masks / "photo0_mask.png")
    assert written.mode == "L" and set(np.unique(np.asarray(written)).tolist()) <= {0, 255}  # the user's 0/255 again
    assert written.size == (24, 16)


def test_colour_mask_walkthrough(tmp_path):
    data, run, masks = tmp_path / "data", tmp_path / "run", tmp_path / "masks"
    colour_folder(data)
    (tmp_path / "palette.json").write_text(json.dumps(PALETTE))
    assert main(["train", "--data", str(data), "--palette", str(tmp_path / "palette.json"), "--out", str(run), *FAST]) == 0
    _, description = segzoo.load_run(run / "best.pt")
    assert description.class_names == ("background", "road", "car") and description.ignore_index == 255
    assert main(["evaluate", str(run / "best.pt"), "--data", str(data)]) == 0  # colour masks read with the stored table
    assert main(["evaluate", str(run / "best.pt"), "--data", str(data), "--palette", "camvid"]) == 2  # not these colours
    assert main(["predict", str(run / "best.pt"), str(data / "val" / "images" / "street0.png"), "--out", str(masks)]) == 0
    written = Image.open(masks / "street0_mask.png")
    assert written.mode == "RGB"
    found = {tuple(c) for c in np.asarray(written).reshape(-1, 3).tolist()}
    assert found <= {tuple(c["color"]) for c in PALETTE["classes"]}


def test_cityscapes_layout_trains_and_predicts_label_ids(tmp_path):
    cityscapes_tree(tmp_path / "cityscapes", size=(16, 24))
    run, masks = tmp_path / "run", tmp_path / "masks"
    assert main(["train", "--layout", "cityscapes", "--data", str(tmp_path / "cityscapes"), "--out", str(run), *FAST]) == 0
    assert main(["evaluate", str(run / "best.pt"), "--layout", "cityscapes", "--data", str(tmp_path / "cityscapes"),
                 "--device", "cpu", "--no-progress"]) == 0
    image = next((tmp_path / "cityscapes" / "leftImg8bit" / "val").glob("*/*.png"))
    assert main(["predict", str(run / "best.pt"), str(image), "--out", str(masks)]) == 0
    label_ids = np.asarray(Image.open(next(masks.glob("*_mask.png"))))
    train_label_ids = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    assert set(np.unique(label_ids).tolist()) <= train_label_ids


def test_ade20k_layout_trains_and_evaluates(tmp_path, capsys):
    ade20k_tree(tmp_path / "ade")
    assert main(["train", "--layout", "ade20k", "--data", str(tmp_path / "ade"), "--out", str(tmp_path / "run"), *FAST]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "best.pt"), "--layout", "ade20k", "--data", str(tmp_path / "ade"),
                 "--device", "cpu", "--no-progress"]) == 0
    assert "| wall |" in capsys.readouterr().out  # the benchmark's class names in the score table
    model, description = segzoo.load_run(tmp_path / "run" / "best.pt")
    assert model.num_classes == 150 and description.layout == "ade20k" and description.label_map.name == "ade20k-reduce-zero"


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_masks_exit_2_with_one_line_naming_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    binary_folder(data)
    _save(data / "train" / "masks" / "photo1.png", np.full((16, 24), 128, np.uint8))
    out = str(tmp_path / "run")
    assert main(["train", "--data", str(data), "--label-map", '{"0": 0, "255": 1}', "--out", out, *FAST]) == 2
    assert "photo1.png holds values the label map does not list: 128 (384 pixels)" in _error(capsys)
    assert main(["train", "--data", str(data), "--palette", "camvid", "--out", out, *FAST]) == 2
    assert "is a class-index image (8-bit grayscale (L)), not an RGB colour mask" in _error(capsys)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--label-map", "{0: 1}"], "label map is not valid JSON"),
        (["--label-map", "cityscape"], "is neither a built-in map"),
        (["--palette", "nope.json"], "is neither a built-in table ['camvid', 'voc'] nor an existing JSON file"),
        (["--unknown-colours", "ignore"], "--unknown-colours applies to colour masks: give --palette too"),
        (["--layout", "camvid", "--palette", "camvid"], "the camvid layout has 11 classes, ignore label 11 and mask encoding of its own"),
        (["--label-map", "{}"], "must send at least one file value to a class"),
    ],
)
def test_bad_mask_options_exit_2_before_reading_data(tmp_path, capsys, flags, message):
    assert main(["train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run"), *FAST, *flags]) == 2
    assert message in _error(capsys)
