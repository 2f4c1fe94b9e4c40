"""The one evaluation loop (``evaluate``): the loss as one pixel mean over the whole set, the
detailed scores, and what it refuses; and a saved checkpoint scored on a dataset split
(``evaluate_checkpoint``)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from support.toy import toy_dataset
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import segzoo
from segzoo import RunDescription, save_checkpoint
from segzoo.losses import DiceLoss, get_loss
from segzoo.training import evaluate, evaluate_checkpoint


def test_evaluate_loss_is_the_pixel_mean_of_the_whole_set_however_batched():
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3).eval()
    images, masks = toy_dataset(n=7).tensors
    masks = masks.clone()
    masks[:, 0, :5] = 255
    criterion = nn.CrossEntropyLoss(weight=torch.tensor([0.5, 1.0, 2.0]), ignore_index=255)
    with torch.no_grad():
        expected = criterion(model(images), masks).item()
    loss, _ = evaluate(model, DataLoader(TensorDataset(images, masks), batch_size=3), 255, criterion)  # 3 + 3 + 1
    assert loss == pytest.approx(expected, rel=1e-6)


def test_a_combined_loss_keeps_each_terms_average_across_batches():
    """ce+dice in batches of 3 + 3 + 1: cross-entropy stays the pixel mean of the whole set, Dice is
    the batches' values weighted by their counted pixels."""
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3).eval()
    images, masks = toy_dataset(n=7).tensors
    masks = masks.clone()
    masks[:, 0, :5] = 255
    masks[6] = 255  # the last batch counts no pixel
    loss, _ = evaluate(model, DataLoader(TensorDataset(images, masks), batch_size=3), 255, get_loss("ce+dice", ignore_index=255))
    with torch.no_grad():
        logits = model(images)
    ce = nn.CrossEntropyLoss(ignore_index=255)(logits, masks).item()
    parts = [(DiceLoss(255)(logits[s], masks[s]).item(), int((masks[s] != 255).sum())) for s in (slice(0, 3), slice(3, 6))]
    dice = sum(value * pixels for value, pixels in parts) / sum(pixels for _, pixels in parts)
    assert loss == pytest.approx(ce + dice, rel=1e-6)


def test_detailed_evaluation_adds_bf_and_ece_of_the_whole_set():
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3).eval()
    images, masks = toy_dataset(n=5).tensors
    masks = masks.clone()
    masks[:, :3] = 255
    _, plain = evaluate(model, DataLoader(TensorDataset(images, masks), batch_size=2), 255)
    _, detailed = evaluate(model, DataLoader(TensorDataset(images, masks), batch_size=2), 255, detailed=True)
    assert plain.bf_score is None and plain.ece is None and list(plain.summary()) == ["global_accuracy", "class_accuracy", "mean_iou", "fw_iou"]
    with torch.no_grad():
        logits = model(images)
    image_bf, class_f1 = segzoo.boundary_f1(logits, masks, 3, ignore_index=255)
    assert detailed.bf_score == pytest.approx(image_bf.nanmean().item(), abs=1e-12)
    torch.testing.assert_close(detailed.per_class_bf, class_f1.nanmean(0), equal_nan=True)
    assert detailed.ece == pytest.approx(segzoo.expected_calibration_error(logits.softmax(1), masks, ignore_index=255), abs=1e-9)
    assert list(detailed.summary()) == ["global_accuracy", "class_accuracy", "mean_iou", "bf_score", "fw_iou", "ece"]
    assert detailed.mean_iou == plain.mean_iou


def test_evaluation_refuses_distributed_sampler_which_pads():
    data = TensorDataset(torch.zeros(5, 3, 8, 8), torch.zeros(5, 8, 8, dtype=torch.long))
    loader = DataLoader(data, sampler=DistributedSampler(data, num_replicas=2, rank=0))
    with pytest.raises(ValueError, match="ShardSampler"):
        evaluate(segzoo.SegNetBasic(2), loader)


@pytest.mark.usefixtures("one_thread")  # tiny images: threads only spin
def test_evaluate_checkpoint_returns_the_checkpoints_run_description(folder_dataset, tmp_path):
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3)
    colours = ((10, 20, 30), (40, 50, 60), (70, 80, 90))
    run = RunDescription(("sky", "road", "car"), colours, model.mean, model.std, ignore_index=255, layout="folder")
    path = save_checkpoint(tmp_path / "model.pt", model, run=run.to_dict())
    scores, returned, files = evaluate_checkpoint(path, folder_dataset, "folder", "val", out_dir=tmp_path / "out")
    assert returned == run and returned.class_names == ("sky", "road", "car")  # not the folder's "0", "1", "2"
    # every labelled pixel of the 3 validation masks (40x48; 2, 3 and 4 ignored), BF and ECE included
    assert int(scores.confusion.sum()) == 3 * 40 * 48 - (2 + 3 + 4)
    assert scores.bf_score is not None and scores.ece is not None
    assert files["predictions"] == tmp_path / "out" / "predictions.png" and files["predictions"].is_file()


def test_evaluate_checkpoint_takes_camvids_ignore_label_when_the_run_has_none(tmp_path):
    model = segzoo.SegNetBasic(11)
    run = RunDescription.for_model(model)
    path = save_checkpoint(tmp_path / "model.pt", model, run=run.to_dict())
    labels = np.arange(64, dtype=np.uint8).reshape(8, 8) % 12  # 5 pixels of label 11, CamVid's void
    for folder, pixels in (("val", np.zeros((8, 8, 3), np.uint8)), ("valannot", labels)):
        (tmp_path / "camvid" / folder).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "camvid" / folder / "0001.png")
    scores, returned, files = evaluate_checkpoint(path, tmp_path / "camvid", "camvid", "val")
    assert run.ignore_index is None and returned == replace(run, ignore_index=11)
    assert int(scores.confusion.sum()) == 64 - 5 and files == {}
