"""Confusion-matrix scores against hand-computed examples."""

import math

import pytest
import torch
import torch.multiprocessing as mp

from segzoo.metrics import ConfusionMatrix, scores_from_confusion

# rows: ground truth, columns: prediction (worked by hand in the docstrings below)
TARGET = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
PREDICTION = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
MATRIX = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_hand_worked_three_classes():
    """hits 1+2+1 of 6; recalls 1/2, 2/2, 1/2; IoUs 1/3, 2/3, 1/2; every class labels 2 of 6 pixels."""
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION, TARGET)
    assert cm.matrix.tolist() == MATRIX
    s = cm.compute()
    assert s.global_accuracy == pytest.approx(4 / 6)
    assert s.per_class_accuracy.tolist() == pytest.approx([1 / 2, 1, 1 / 2])
    assert s.class_accuracy == pytest.approx(2 / 3)
    assert s.per_class_iou.tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert s.mean_iou == pytest.approx(1 / 2)
    assert s.fw_iou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert list(s.summary()) == ["global_accuracy", "class_accuracy", "mean_iou", "fw_iou"]


def test_logits_are_reduced_by_argmax():
    logits = torch.nn.functional.one_hot(PREDICTION, 3).permute(0, 3, 1, 2).float() * 5 - 1
    cm = ConfusionMatrix(3)
    cm.update(logits, TARGET)
    assert cm.matrix.tolist() == MATRIX


def test_ignore_index_pixels_are_not_counted():
    target = torch.cat([TARGET, torch.full((1, 2, 2), 255)], dim=2)
    prediction = torch.cat([PREDICTION, torch.tensor([[[2, 0], [1, 1]]])], dim=2)
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(prediction, target)
    assert cm.matrix.tolist() == MATRIX


def test_class_absent_everywhere_is_nan_and_left_out_of_means():
    cm = ConfusionMatrix(4)
    cm.update(PREDICTION, TARGET)
    s = cm.compute()
    assert math.isnan(s.per_class_iou[3]) and math.isnan(s.per_class_accuracy[3])
    assert s.mean_iou == pytest.approx(1 / 2) and s.class_accuracy == pytest.approx(2 / 3)


def test_class_predicted_but_never_labelled_counts_zero_iou_and_no_accuracy():
    """Class 2 is only predicted: IoU 0/1 = 0 enters the mean; its accuracy 0/0 is NaN."""
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]]))
    s = cm.compute()
    assert s.per_class_iou.tolist()[:3] == pytest.approx([1, 1 / 2, 0])
    assert s.mean_iou == pytest.approx(1 / 2)
    assert math.isnan(s.per_class_accuracy[2]) and s.class_accuracy == pytest.approx(3 / 4)
    assert s.fw_iou == pytest.approx(1 / 3 * 1 + 2 / 3 * 1 / 2)


def test_empty_matrix_gives_nan():
    s = ConfusionMatrix(2).compute()
    assert math.isnan(s.global_accuracy) and math.isnan(s.mean_iou)


def test_batches_and_merge_add_up():
    whole = ConfusionMatrix(3)
    whole.update(torch.cat([PREDICTION, TARGET]), torch.cat([TARGET, TARGET]))
    first, second = ConfusionMatrix(3), ConfusionMatrix(3)
    first.update(PREDICTION, TARGET)
    second.update(TARGET, TARGET)
    first.merge(second)
    assert torch.equal(first.matrix, whole.matrix)
    assert scores_from_confusion(first.matrix).mean_iou == whole.compute().mean_iou
    assert torch.equal(whole.compute().confusion, whole.matrix)
    with pytest.raises(ValueError, match="merge"):
        first.merge(ConfusionMatrix(4))


def test_bad_inputs():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(ValueError, match=r"labels \[3, 7\] outside \[0, 3\) or ignore_index=255"):
        cm.update(torch.tensor([[0, 0, 0]]), torch.tensor([[3, 7, 255]]))
    with pytest.raises(ValueError, match="prediction holds labels"):
        cm.update(torch.tensor([[5, 0]]), torch.tensor([[0, 0]]))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="do not match"):
        cm.update(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="expected num_classes=3"):
        cm.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    assert cm.matrix.sum() == 0, "a rejected batch must not be half counted"


def _all_reduce_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION if rank == 0 else TARGET, TARGET)
    cm.all_reduce()
    torch.save(cm.matrix, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_all_reduce_sums_over_processes(tmp_path):
    """Two gloo processes, each with half the data, end with the single-process matrix."""
    mp.spawn(_all_reduce_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = ConfusionMatrix(3)
    single.update(torch.cat([PREDICTION, TARGET]), torch.cat([TARGET, TARGET]))
    for rank in range(2):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), single.matrix)
