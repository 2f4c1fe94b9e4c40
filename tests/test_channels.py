"""How many channels reach the model: RGB files to a 1-channel model (luma), grey files to an RGB
model (replicated), and a whole 1-channel run (transforms, training, pictures, prediction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.data import SegmentationFolder, denormalize, eval_transforms, train_transforms
from segzoo.io.images import to_channels
from segzoo.training import TrainConfig, train


def test_luma_is_exactly_pils_grayscale_conversion():
    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    expected = np.array(Image.fromarray(rgb).convert("L"))
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(to_channels(tensor, 1)[0], torch.from_numpy(expected))
    assert to_channels(tensor, 3) is tensor
    grey = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).expand(3, -1, -1)
    assert torch.equal(to_channels(grey, 1)[0], grey[0])  # a grey file comes back unchanged
    with pytest.raises(ValueError, match="not 4 channels"):
        to_channels(tensor, 4)


def test_transforms_give_a_one_channel_model_the_normalised_luma():
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 5, 7), dtype=np.uint8))
    mask = torch.zeros(5, 7, dtype=torch.int64)
    luma = torch.from_numpy(np.array(Image.fromarray(rgb.permute(1, 2, 0).numpy()).convert("L"))).float()
    model = segzoo.SegNetBasic(2, in_channels=1)
    (mean,), (std,) = model.mean, model.std
    image, _ = eval_transforms(model.mean, model.std)(rgb, mask)
    assert image.shape == (1, 5, 7)
    torch.testing.assert_close(image[0], (luma / 255 - mean) / std)
    cropped, _ = train_transforms((5, 7), model.mean, model.std, scale=(1.0, 1.0), hflip=False)(rgb, mask)
    torch.testing.assert_close(cropped, image)
    shown = denormalize(image, model.mean, model.std)  # for pictures: grey replicated to RGB
    assert shown.shape == (3, 5, 7) and torch.equal(shown[0], luma.to(torch.uint8)) and torch.equal(shown[0], shown[2])


def test_predict_gives_a_one_channel_model_grayscale_pil_images():
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3, in_channels=1).eval()
    grey = np.random.default_rng(2).integers(0, 256, (20, 24), dtype=np.uint8)
    batch = (torch.from_numpy(grey).float()[None, None] / 255 - model.mean[0]) / model.std[0]
    assert torch.equal(model.predict(Image.fromarray(grey)), model(batch).argmax(1))
    colour = Image.fromarray(np.dstack([grey] * 3))  # an RGB file of a grey picture: the same luma
    assert torch.equal(model.predict(colour), model(batch).argmax(1))


def test_a_one_channel_run_trains_scores_and_predicts(tmp_path):
    rng = np.random.default_rng(3)
    for split in ("train", "val"):
        for i in range(2):
            (tmp_path / split / "images").mkdir(parents=True, exist_ok=True)
            (tmp_path / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / split / "images" / f"{i}.png")
            Image.fromarray((rng.random((16, 16)) > 0.5).astype(np.uint8)).save(tmp_path / split / "masks" / f"{i}.png")
    datasets = [SegmentationFolder(tmp_path / s / "images", tmp_path / s / "masks", num_classes=2) for s in ("train", "val")]
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(2, in_channels=1)
    result = train(model, *datasets, tmp_path / "run", TrainConfig(epochs=1), progress=False)
    assert result.run.mean == model.mean and len(result.run.mean) == 1
    assert Path(result.files["predictions"]).is_file()
    loaded = segzoo.load(tmp_path / "run" / "best.pt")
    assert loaded.in_channels == 1
    from segzoo.inference import predict_files

    written = predict_files(tmp_path / "run" / "best.pt", [tmp_path / "val" / "images" / "0.png"], tmp_path / "masks")
    assert np.asarray(Image.open(written[0])).shape == (16, 16)
