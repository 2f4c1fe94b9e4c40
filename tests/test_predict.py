"""Predicting files (inference/predict.py) and scoring checkpoints with tiles, test-time
augmentation and Monte Carlo dropout, through the command line, against hand computations."""

import numpy as np
import pytest
import torch
from PIL import Image
from support.random_batch_norms import randomise_batch_norms

import segzoo
from segzoo.cli import main
from segzoo.data import DataConfig
from segzoo.inference import InferenceOptions
from segzoo.io.run_description import RunDescription
from segzoo.training import evaluate_checkpoint

IGNORE = 255


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A SegNet-Basic (3 classes, with dropout) whose labels vary across an image, saved with a run
    description that ignores 255."""
    torch.manual_seed(3)
    model = randomise_batch_norms(segzoo.SegNetBasic(3, dropout="central")).eval()
    run = RunDescription.for_model(model, data=DataConfig())
    run = RunDescription(run.class_names, run.colours, run.mean, run.std, ignore_index=IGNORE, data=run.data)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    segzoo.save_checkpoint(path, model, run=run.to_dict())
    return path, model


def _mask(path):
    with Image.open(path) as image:
        return np.array(image)


def _image(folder_dataset, index=0):
    return sorted((folder_dataset / "val" / "images").glob("*.png"))[index]


def test_a_tile_covering_the_image_writes_the_plain_mask(checkpoint, folder_dataset, tmp_path):
    path, _ = checkpoint
    image = _image(folder_dataset)
    assert main(["predict", str(path), str(image), "--out", str(tmp_path / "plain")]) == 0
    assert main(["predict", str(path), str(image), "--out", str(tmp_path / "tiled"), "--tile", "64", "64"]) == 0
    assert np.array_equal(_mask(tmp_path / "plain" / "0_mask.png"), _mask(tmp_path / "tiled" / "0_mask.png"))


def test_flip_tta_mask_is_the_argmax_of_the_mean_of_both_passes(checkpoint, folder_dataset, tmp_path):
    path, model = checkpoint
    image = _image(folder_dataset)
    assert main(["predict", str(path), str(image), "--out", str(tmp_path), "--tta", "flip"]) == 0
    x = model.prepare(Image.open(image))
    with torch.no_grad():
        mean = (model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1)) / 2
    assert np.array_equal(_mask(tmp_path / "0_mask.png"), mean.argmax(1)[0].numpy())


def test_small_tiles_with_overlap_cover_the_image(checkpoint, folder_dataset, tmp_path):
    path, model = checkpoint
    image = _image(folder_dataset)
    assert main(["predict", str(path), str(image), "--out", str(tmp_path), "--tile", "24", "32", "--overlap", "0.5"]) == 0
    mask = _mask(tmp_path / "0_mask.png")
    assert mask.shape == (40, 48) and set(np.unique(mask)) <= {0, 1, 2}


def test_tiles_tta_and_mc_compose_in_predict(checkpoint, folder_dataset, tmp_path):
    path, _ = checkpoint
    image = _image(folder_dataset)
    args = ["predict", str(path), str(image), "--out", str(tmp_path), "--mc", "2", "--tta", "flip", "--tile", "24", "32"]
    assert main(args) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"0_mask.png", "0_overlay.png", "0_entropy.png", "0_mutual_information.png"}


def test_evaluate_with_flip_tta_counts_the_averaged_prediction(checkpoint, folder_dataset):
    """The confusion matrix of ``evaluate --tta flip`` equals one counted by hand from the mean of
    the plain and mirrored passes, at every label's own resolution."""
    path, model = checkpoint
    scores, _, _ = evaluate_checkpoint(path, folder_dataset, "folder", options=InferenceOptions(flip=True))
    expected = np.zeros((3, 3), dtype=np.int64)
    for image_path in sorted((folder_dataset / "val" / "images").glob("*.png")):
        x = model.prepare(Image.open(image_path))
        with torch.no_grad():
            predicted = ((model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1)) / 2).argmax(1)[0].numpy()
        target = _mask(folder_dataset / "val" / "masks" / image_path.name)
        counted = target != IGNORE
        np.add.at(expected, (target[counted], predicted[counted]), 1)
    assert np.array_equal(scores.confusion.numpy(), expected)


def test_evaluate_command_takes_tta_and_mc(checkpoint, folder_dataset, capsys):
    path, _ = checkpoint
    assert main(["evaluate", str(path), "--data", str(folder_dataset), "--tta", "flip", "--scales", "0.75", "1", "--mc", "2"]) == 0
    assert "| global acc |" in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "message"), [(["--overlap", "1.5", "--tile", "8", "8"], "overlap"), (["--scales", "-1"], "scales")])
def test_bad_inference_settings_exit_2_with_one_line(checkpoint, folder_dataset, tmp_path, capsys, flags, message):
    path, _ = checkpoint
    assert main(["predict", str(path), str(_image(folder_dataset)), "--out", str(tmp_path / "out"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "0_mask.png").exists()


def test_a_tile_size_of_zero_is_an_argument_error(checkpoint, folder_dataset, tmp_path, capsys):
    path, _ = checkpoint
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(path), str(_image(folder_dataset)), "--out", str(tmp_path), "--tile", "0", "8"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("argument --tile: expected a positive integer, got 0")
