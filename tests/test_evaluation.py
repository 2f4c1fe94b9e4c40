"""The one evaluation loop (``evaluate``): the loss as one pixel mean over the whole set, the
detailed scores, and what it refuses."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import segzoo
from segzoo.training import evaluate
from support.toy import toy_dataset


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
