"""Which images calibrate int8: evenly spaced over a folder, the images to predict or the split,
not the first few (often frames of one video)."""

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.cli import main
from segzoo.data import denormalize
from segzoo.inference.calibration import CALIBRATION_IMAGES, calibration_files, spread


@pytest.mark.parametrize(
    "count, total, expected",
    [(4, 10, [0, 2, 5, 7]), (8, 20, [0, 2, 5, 7, 10, 12, 15, 17]), (3, 3, [0, 1, 2]), (8, 3, [0, 1, 2]), (1, 5, [0]), (2, 0, [])],
)
def test_spread_by_hand(count, total, expected):
    assert spread(range(total), count) == expected


def test_spread_takes_count_distinct_indices_a_near_equal_step_apart():
    for total in range(1, 60):
        for count in range(1, total + 1):
            picked = spread(range(total), count)
            steps = np.diff([*picked, total + picked[0]])  # wrapping round: the last gap counts too
            assert len(set(picked)) == count and picked[0] == 0 and steps.max() - steps.min() <= 1, (count, total)


def test_spread_refuses_no_images():
    with pytest.raises(ValueError, match="at least 1"):
        spread(range(10), 0)


def test_calibration_files_are_spread_over_the_folder_by_name(tmp_path):
    for i in range(10):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"{9 - i:02d}.png")  # written in reverse order
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in calibration_files(tmp_path, 4)] == ["00.png", "02.png", "05.png", "07.png"]
    assert len(calibration_files(tmp_path, 20)) == 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        calibration_files(tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a folder"):
        calibration_files(tmp_path / "notes.txt")


def _recording(asked):
    def optimize(model, dtype=torch.float32, calibration=None, compiled=True):
        asked.extend(calibration)
        return model

    return optimize


def _pixels(batches, model):
    """Each calibration batch back to its image's uint8 pixels (H, W, 3)."""
    return [denormalize(batch, model.mean, model.std)[0].permute(1, 2, 0).numpy() for batch in batches]


def test_predict_calibrates_on_images_from_across_those_given(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(segzoo.inference.predict, "optimize", _recording(asked))
    model = segzoo.SegNetBasic(num_classes=3)
    checkpoint = segzoo.save_checkpoint(tmp_path / "best.pt", model)
    paths, total = [], 2 * CALIBRATION_IMAGES + 3
    for i in range(total):
        paths.append(str(tmp_path / f"{i:02d}.png"))
        Image.fromarray(np.full((32, 32, 3), 5 * i, np.uint8)).save(paths[-1])
    assert main(["predict", str(checkpoint), *paths, "--out", str(tmp_path / "out"), "--fast", "int8"]) == 0
    values = [int(pixels.mean()) // 5 for pixels in _pixels(asked, model)]
    assert values == [i * total // CALIBRATION_IMAGES for i in range(CALIBRATION_IMAGES)]


def test_evaluate_calibrates_on_images_from_across_the_split(tmp_path, make_folder_dataset, monkeypatch):
    asked = []
    monkeypatch.setattr(importlib.import_module("segzoo.inference.optimize"), "optimize", _recording(asked))
    total = CALIBRATION_IMAGES + 5
    data = make_folder_dataset(train=1, val=total, size=(32, 32))
    model = segzoo.SegNetBasic(num_classes=3)
    run = segzoo.RunDescription(("a", "b", "c"), ((0, 0, 0), (9, 9, 9), (99, 99, 99)), model.mean, model.std, ignore_index=255, layout="folder")
    checkpoint = segzoo.save_checkpoint(tmp_path / "best.pt", model, run=run.to_dict())
    assert main(["evaluate", str(checkpoint), "--data", str(data), "--fast", "int8"]) == 0
    files = sorted((data / "val" / "images").glob("*.png"))  # the split's order: by name
    originals = [np.array(Image.open(path)) for path in files]
    picked = [next(i for i, original in enumerate(originals) if np.array_equal(original, pixels)) for pixels in _pixels(asked, model)]
    assert picked == [i * total // CALIBRATION_IMAGES for i in range(CALIBRATION_IMAGES)]
