"""Confusion-matrix scores and the expected calibration error against hand-computed examples, and
against their definitions under hostile input (hypothesis)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.properties import (
    CASES,
    DEVICES,
    assert_accepted,
    assert_names_labels,
    assert_rejected,
    assert_works_or_clear_error,
    label_maps,
    label_problems,
)

import segzoo
from segzoo.metrics import (
    BoundaryF1,
    CalibrationError,
    ConfusionMatrix,
    SegmentationMetrics,
    SegmentationScores,
    expected_calibration_error,
    scores_from_confusion,
)

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


def test_scores_keep_their_confusion_matrix_while_counting_goes_on():
    """Scores are a snapshot: later updates and a reset of the accumulator leave them alone."""
    cm = ConfusionMatrix(3)
    cm.update(PREDICTION, TARGET)
    scores = cm.compute()
    cm.update(TARGET, TARGET)
    assert scores.confusion.tolist() == MATRIX
    cm.reset()
    assert scores.confusion.tolist() == MATRIX and scores.mean_iou == pytest.approx(1 / 2)


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


def test_table_hand_worked_in_percent_with_na_for_undefined():
    """MATRIX plus a class 3 that never occurs (IoU and accuracy 0/0): G 4/6, C 2/3, mIoU 1/2,
    fwIoU (1/3 + 2/3 + 1/2) / 3 = 1/2; per class IoU 1/3, 2/3, 1/2 and recall 1/2, 1, 1/2."""
    cm = ConfusionMatrix(4)
    cm.update(PREDICTION, TARGET)
    assert cm.compute().table(["sky", "road", "car", "void"]) == "\n".join(
        [
            "| global acc | class avg acc | mIoU | fwIoU |",
            "|---:|---:|---:|---:|",
            "| 66.7 | 66.7 | 50.0 | 50.0 |",
            "",
            "| class | IoU | accuracy |",
            "|---|---:|---:|",
            "| sky | 33.3 | 50.0 |",
            "| road | 66.7 | 100.0 |",
            "| car | 50.0 | 50.0 |",
            "| void | n/a | n/a |",
        ]
    )


def test_table_adds_bf_and_ece_in_the_papers_order_and_names_classes_by_index():
    cm = ConfusionMatrix(4)
    cm.update(PREDICTION, TARGET)
    scores = replace(cm.compute(), bf_score=0.4, per_class_bf=torch.tensor([0.25, 0.5, math.nan, math.nan], dtype=torch.float64), ece=0.05)
    lines = scores.table().split("\n")
    assert lines[:3] == [
        "| global acc | class avg acc | mIoU | BF | fwIoU | ECE |",
        "|---:|---:|---:|---:|---:|---:|",
        "| 66.7 | 66.7 | 50.0 | 40.0 | 50.0 | 5.0 |",
    ]
    assert lines[4:] == [
        "| class | IoU | accuracy | BF |",
        "|---|---:|---:|---:|",
        "| 0 | 33.3 | 50.0 | 25.0 |",
        "| 1 | 66.7 | 100.0 | 50.0 |",
        "| 2 | 50.0 | 50.0 | n/a |",
        "| 3 | n/a | n/a | n/a |",
    ]


def test_table_refuses_a_wrong_number_of_class_names():
    scores = scores_from_confusion(torch.tensor(MATRIX))
    with pytest.raises(ValueError, match="class_names has 2 entries for 3 classes"):
        scores.table(["sky", "road"])
    with pytest.raises(ValueError, match="class_names has 4 entries for 3 classes"):
        scores.table(["sky", "road", "car", "void"])


def test_merge_refuses_another_accumulator_type_even_with_equal_settings():
    class Relabelled(ConfusionMatrix):
        """A confusion matrix with the same settings, but another type."""

    matrix, other = ConfusionMatrix(3), Relabelled(3)
    other.update(PREDICTION, TARGET)
    with pytest.raises(ValueError, match=r"cannot merge a Relabelled\(num_classes=3, ignore_index=None\) into a ConfusionMatrix\(num_classes=3, ignore_index=None\)"):
        matrix.merge(other)
    with pytest.raises(ValueError, match="cannot merge a ConfusionMatrix"):
        other.merge(matrix)
    with pytest.raises(ValueError, match="cannot merge a CalibrationError"):
        matrix.merge(CalibrationError())
    assert matrix.matrix.sum() == 0 and other.matrix.tolist() == MATRIX


# ---- expected calibration error ----

# Five pixels, three classes, 2 bins: (0, 1/2] and (1/2, 1]. Rows are class probabilities.
#   pixel  probabilities              label  confidence  argmax  correct  bin
#   a      3/8, 5/16, 5/16            0      3/8         0       1        0
#   b      1/4, 1/2, 1/4              0      1/2         1       0        0  (on the edge: (0, 1/2] holds it)
#   c      7/8, 1/16, 1/16            0      7/8         0       1        1
#   d      1/8, 3/4, 1/8              2      3/4         1       0        1
#   e      1/4, 1/8, 5/8              2      5/8         2       1        1
# bin 0: n = 2, confidence sum 7/8, correct 1 -> mean confidence 7/16, accuracy 1/2, |1 - 7/8| = 1/8
# bin 1: n = 3, confidence sum 9/4, correct 2 -> mean confidence 3/4, accuracy 2/3, |2 - 9/4| = 1/4
# ECE = (2/5)|1/2 - 7/16| + (3/5)|2/3 - 3/4| = (1/8 + 1/4) / 5 = 3/40
ECE_PROBABILITIES = torch.tensor(
    [[3 / 8, 5 / 16, 5 / 16], [1 / 4, 1 / 2, 1 / 4], [7 / 8, 1 / 16, 1 / 16], [1 / 8, 3 / 4, 1 / 8], [1 / 4, 1 / 8, 5 / 8]]
).T.reshape(1, 3, 1, 5)
ECE_TARGET = torch.tensor([[[0, 0, 0, 2, 2]]])


def test_ece_hand_worked_two_bins():
    ece = CalibrationError(num_bins=2)
    ece.update(ECE_PROBABILITIES, ECE_TARGET)
    assert ece.compute() == pytest.approx(3 / 40, rel=1e-15)
    count, confidence, accuracy = ece.bins()
    assert count.tolist() == [2, 3]
    assert confidence.tolist() == pytest.approx([7 / 16, 3 / 4], rel=1e-15)
    assert accuracy.tolist() == pytest.approx([1 / 2, 2 / 3], rel=1e-15)
    assert expected_calibration_error(ECE_PROBABILITIES, ECE_TARGET, num_bins=2) == pytest.approx(3 / 40, rel=1e-15)


def test_ece_bin_edges():
    """Bin b holds (b/B, (b+1)/B]: with 4 bins, 1/4 -> 0, 1/2 -> 1, 3/4 -> 2, 1 -> 3, just above 1/2 -> 2, 0 -> 0."""
    confidence = torch.tensor([1 / 4, 1 / 2, 3 / 4, 1.0, 0.5 + 2**-20, 0.0], dtype=torch.float64)
    probabilities = torch.stack([confidence, confidence / 2]).reshape(1, 2, 1, 6)  # class 0 is the argmax
    ece = CalibrationError(num_bins=4)
    ece.update(probabilities, torch.zeros(1, 1, 6, dtype=torch.long))
    count, mean_confidence, accuracy = ece.bins()
    assert count.tolist() == [2, 1, 2, 1]
    assert mean_confidence.tolist() == pytest.approx([1 / 8, 1 / 2, (3 / 4 + 0.5 + 2**-20) / 2, 1.0], rel=1e-15)
    assert accuracy.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_ece_is_zero_when_calibrated():
    """8 pixels at each confidence k/8 (k = 5..8, two classes), of which exactly k are right:
    every bin's accuracy equals its mean confidence."""
    confidence = torch.tensor([k / 8 for k in range(5, 9) for _ in range(8)])
    probabilities = torch.stack([confidence, 1 - confidence]).reshape(1, 2, 1, 32)
    target = torch.tensor([int(i >= k) for k in range(5, 9) for i in range(8)]).reshape(1, 1, 32)  # first k right
    assert expected_calibration_error(probabilities, target) == pytest.approx(0, abs=1e-15)
    assert expected_calibration_error(probabilities, 1 - target) > 0.5  # the same pixels all but inverted


def test_ece_ignore_batches_merge_and_empty():
    void = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).reshape(1, 3, 1, 2)  # wrong and confident
    probabilities = torch.cat([ECE_PROBABILITIES, void], dim=3)
    target = torch.cat([ECE_TARGET, torch.full((1, 1, 2), 255)], dim=2)
    assert expected_calibration_error(probabilities, target, 2, ignore_index=255) == pytest.approx(3 / 40, rel=1e-15)
    batched, first, second = (CalibrationError(2, ignore_index=255) for _ in range(3))
    for part in (slice(0, 2), slice(2, 5), slice(5, 7)):
        batched.update(probabilities[..., part], target[..., part])
    first.update(probabilities[..., :3], target[..., :3])
    second.update(probabilities[..., 3:], target[..., 3:])
    first.merge(second)
    for ece in (batched, first):
        assert ece.compute() == pytest.approx(3 / 40, rel=1e-15) and ece.bins()[0].tolist() == [2, 3]
    with pytest.raises(ValueError, match="merge"):
        first.merge(CalibrationError(3))
    batched.reset()
    assert math.isnan(batched.compute()) and batched.bins()[1].isnan().all()


def test_ece_all_reduce_sums_every_bin_tensor(monkeypatch):
    """Stand in for a second rank with the same pixels: a SUM all-reduce doubles the counts, not the ECE."""
    import torch.distributed as dist

    def fake_all_reduce(tensor, op, group=None):
        assert op == dist.ReduceOp.SUM
        tensor.mul_(2)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    ece = CalibrationError(2)
    ece.update(ECE_PROBABILITIES, ECE_TARGET)
    ece.all_reduce()
    count, confidence, accuracy = ece.bins()
    assert count.tolist() == [4, 6] and ece.compute() == pytest.approx(3 / 40, rel=1e-15)
    assert confidence.tolist() == pytest.approx([7 / 16, 3 / 4]) and accuracy.tolist() == pytest.approx([1 / 2, 2 / 3])


def test_ece_bad_inputs():
    ece = CalibrationError(2, ignore_index=255)
    with pytest.raises(ValueError, match=r"target holds labels \[3\] outside \[0, 3\) or ignore_index=255"):
        ece.update(ECE_PROBABILITIES, torch.tensor([[[0, 0, 3, 255, 2]]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece.update(ECE_PROBABILITIES * 2, ECE_TARGET)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece.update(ECE_PROBABILITIES.log(), ECE_TARGET)
    with pytest.raises(TypeError, match="float probabilities"):
        ece.update(ECE_PROBABILITIES.long(), ECE_TARGET)
    with pytest.raises(TypeError, match="integer labels"):
        ece.update(ECE_PROBABILITIES, ECE_TARGET.float())
    with pytest.raises(ValueError, match=r"expected \(1, 1, 5\)"):
        ece.update(ECE_PROBABILITIES, ECE_TARGET[..., :4])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ece.update(ECE_PROBABILITIES[0], ECE_TARGET[0])
    with pytest.raises(ValueError, match="num_bins"):
        CalibrationError(0)
    assert ece.count.sum() == 0, "a rejected batch must not be half counted"


# ---- SegmentationMetrics: every score from logits in one update ----


def _logit_batches(seed: int = 0, batches: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(logits (2, 4, 24, 32), masks (2, 24, 32)) pairs of 4x4 blobs, the logits noisy, with a void
    (255) patch in every mask: boundaries, errors and confidences of every kind."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(batches):
        logits = torch.randn(2, 4, 6, 8, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)
        logits += 0.5 * torch.randn(logits.shape, generator=g)
        masks = torch.randint(0, 4, (2, 6, 8), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
        masks[:, :3, :5] = 255
        pairs.append((logits, masks))
    return pairs


def _assert_same_scores(actual: SegmentationScores, expected: SegmentationScores, tolerance: float = 0.0) -> None:
    """Equal confusion matrices, and every score equal up to ``tolerance`` (NaN where NaN)."""
    assert torch.equal(actual.confusion, expected.confusion)
    assert actual.summary() == pytest.approx(expected.summary(), rel=0, abs=tolerance, nan_ok=True)
    for name in ("per_class_iou", "per_class_accuracy", "per_class_bf"):
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name), rtol=0, atol=tolerance, equal_nan=True)


def test_segmentation_metrics_equal_the_three_accumulators_run_separately():
    metrics = SegmentationMetrics(4, 255, boundary=True, calibration=True)
    confusion, boundary, calibration = ConfusionMatrix(4, 255), BoundaryF1(4, 255), CalibrationError(ignore_index=255)
    for logits, masks in _logit_batches():
        metrics.update(logits, masks)
        confusion.update(logits, masks)
        boundary.update(logits, masks)
        calibration.update(logits.softmax(1), masks)
    scores, expected, boundaries = metrics.compute(), confusion.compute(), boundary.compute()
    expected = replace(expected, bf_score=boundaries.bf_score, per_class_bf=boundaries.per_class, ece=calibration.compute())
    _assert_same_scores(scores, expected)
    assert 0 < scores.bf_score < 1 and 0 < scores.ece < 1 and 0 < scores.mean_iou < 1  # a case that tells them apart
    assert list(scores.summary()) == ["global_accuracy", "class_accuracy", "mean_iou", "bf_score", "fw_iou", "ece"]


def test_segmentation_metrics_default_is_the_confusion_scores_alone():
    """From one-hot logits of PREDICTION the hand-worked MATRIX: mIoU 1/2, and no BF or ECE."""
    metrics = SegmentationMetrics(3)
    metrics.update(torch.nn.functional.one_hot(PREDICTION, 3).permute(0, 3, 1, 2).float(), TARGET)
    scores = metrics.compute()
    assert scores.confusion.tolist() == MATRIX and scores.mean_iou == pytest.approx(1 / 2)
    assert scores.bf_score is None and scores.per_class_bf is None and scores.ece is None
    assert list(scores.summary()) == ["global_accuracy", "class_accuracy", "mean_iou", "fw_iou"]
    assert (metrics.boundary, metrics.calibration, metrics.num_classes, metrics.ignore_index) == (None, None, 3, None)


def test_segmentation_metrics_merged_halves_equal_the_whole():
    whole, first, second = (SegmentationMetrics(4, 255, boundary=True, calibration=True) for _ in range(3))
    for i, (logits, masks) in enumerate(_logit_batches(seed=1, batches=4)):
        whole.update(logits, masks)
        (first if i < 2 else second).update(logits, masks)
    first.merge(second)
    _assert_same_scores(first.compute(), whole.compute(), tolerance=1e-12)  # the same sums, added in another order


@pytest.mark.parametrize(
    "settings",
    [
        {"num_classes": 3, "boundary": True, "calibration": True},
        {"num_classes": 4, "calibration": True},
        {"num_classes": 4, "boundary": True},
        {"num_classes": 4},
    ],
    ids=["classes", "no boundary", "no calibration", "neither"],
)
def test_segmentation_metrics_merge_refuses_other_settings(settings):
    metrics, other = SegmentationMetrics(4, 255, boundary=True, calibration=True), SegmentationMetrics(ignore_index=255, **settings)
    logits, masks = _logit_batches(batches=1)[0]
    metrics.update(logits, masks)
    other.update(logits[:, : settings["num_classes"]], masks.clamp(max=settings["num_classes"] - 1))
    before = metrics.compute()
    with pytest.raises(ValueError, match="cannot merge"):
        metrics.merge(other)
    with pytest.raises(ValueError, match="cannot merge a ConfusionMatrix"):
        metrics.merge(ConfusionMatrix(4, 255))
    _assert_same_scores(metrics.compute(), before)


def test_segmentation_metrics_reset_starts_over():
    (first, first_masks), (second, second_masks) = _logit_batches(seed=2, batches=2)
    metrics, fresh = (SegmentationMetrics(4, 255, boundary=True, calibration=True) for _ in range(2))
    metrics.update(first, first_masks)
    metrics.reset()
    empty = metrics.compute()
    assert empty.confusion.sum() == 0 and all(math.isnan(value) for value in empty.summary().values())
    metrics.update(second, second_masks)
    fresh.update(second, second_masks)
    _assert_same_scores(metrics.compute(), fresh.compute())


def test_segmentation_metrics_all_reduce_is_a_no_op_without_a_process_group():
    import torch.distributed as dist

    assert not dist.is_initialized()
    metrics = SegmentationMetrics(4, 255, boundary=True, calibration=True)
    for logits, masks in _logit_batches(seed=3, batches=2):
        metrics.update(logits, masks)
    before = metrics.compute()
    metrics.all_reduce()
    _assert_same_scores(metrics.compute(), before)


def test_segmentation_metrics_all_reduce_sums_every_part(monkeypatch):
    """Stand in for a second rank with the same pixels: the counts double, the scores stay."""
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op, group=None: tensor.mul_(2))
    metrics = SegmentationMetrics(4, 255, boundary=True, calibration=True)
    logits, masks = _logit_batches(seed=4, batches=1)[0]
    metrics.update(logits, masks)
    before = metrics.compute()
    metrics.all_reduce()
    after = metrics.compute()
    assert torch.equal(after.confusion, 2 * before.confusion)
    assert metrics.boundary.images == 2 * len(masks) and metrics.calibration.count.sum() == 2 * (masks != 255).sum()
    _assert_same_scores(replace(after, confusion=before.confusion), before, tolerance=1e-12)


# ---- property tests: confusion matrix, label checks, calibration ----

# uint8 255 must not pass for ignore_index -1: labels are compared as integers, not wrapped to the dtype
WRAPPING = (torch.zeros(1, 1, 2, dtype=torch.uint8), torch.tensor([[[255, 0]]], dtype=torch.uint8), 1, -1)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60, **CASES)
@given(case=label_maps())
@example(case=WRAPPING)
def test_confusion_matrix_counts_every_non_ignored_pixel_and_reports_bad_labels(device, case):
    prediction, target, num_classes, ignore = case
    matrix = segzoo.ConfusionMatrix(num_classes, ignore, device=device)
    result = assert_works_or_clear_error(lambda: matrix.update(prediction.to(device), target.to(device)))
    if prediction.is_floating_point() and not torch.isfinite(prediction).all():  # argmax would count NaN as a class
        assert_rejected(result, ValueError, "non-finite")
        assert matrix.matrix.sum() == 0
        return
    bad_target, bad_prediction = label_problems(prediction, target, num_classes, ignore)
    if bad_target or bad_prediction:
        assert_names_labels(result, bad_target or bad_prediction)
        assert matrix.matrix.sum() == 0
        return
    assert_accepted(result)
    t = target.long().numpy()
    p = prediction.numpy().argmax(1) if prediction.is_floating_point() else prediction.long().numpy()
    counted = t != ignore if ignore is not None else np.ones(t.shape, bool)
    expected = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(expected, (t[counted], p[counted]), 1)
    assert matrix.matrix.device.type == device
    assert np.array_equal(matrix.matrix.cpu().numpy(), expected)
    assert int(matrix.matrix.sum()) == int(counted.sum())


PAIR_CLASSES = 3


@st.composite
def mismatched_pairs(draw):
    """(prediction, target, error type) that no metric may accept."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    labels = torch.zeros(shape, dtype=torch.int64)
    other = (shape[0], shape[1] + 1, shape[2])
    cases = [
        (labels, torch.zeros(other, dtype=torch.int64), ValueError),
        (labels, labels.float(), TypeError),
        (labels.float(), labels, TypeError),
        (labels.numpy(), labels.numpy(), TypeError),
        (torch.zeros(shape[0], PAIR_CLASSES + 1, *shape[1:]), labels, ValueError),
    ]
    return cases[draw(st.integers(0, len(cases) - 1))]


@settings(max_examples=20, **CASES)
@given(case=mismatched_pairs())
def test_label_metrics_refuse_mismatched_shapes_float_labels_and_non_tensors(case):
    prediction, target, error = case
    for update in (
        segzoo.ConfusionMatrix(PAIR_CLASSES).update,
        segzoo.BoundaryF1(PAIR_CLASSES).update,
        lambda p, t: segzoo.boundary_f1(p, t, PAIR_CLASSES),
    ):
        assert_rejected(assert_works_or_clear_error(lambda: update(prediction, target)), error)  # noqa: B023


@st.composite
def probability_maps(draw):
    """(probabilities (N, C, H, W) from a softmax, target, ignore_index) with bad labels half the time."""
    _, target, num_classes, ignore = draw(label_maps(max_side=6, scores=False))
    temperature = draw(st.sampled_from([0.0, 0.3, 1.0, 5.0, 50.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    logits = torch.randn(target.shape[0], num_classes, *target.shape[1:], generator=generator, dtype=torch.float64)
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64]))
    return (temperature * logits).softmax(1).to(dtype), target, ignore


def independent_ece(probabilities: torch.Tensor, target: torch.Tensor, ignore, bins: int) -> float:
    """sum over bins b = (k/B, (k+1)/B] of |correct - confidence| summed in the bin, over the pixel count."""
    p = probabilities.double().numpy()
    confidence, predicted = p.max(1), p.argmax(1)
    t = target.long().numpy()
    keep = t != ignore if ignore is not None else np.ones(t.shape, bool)
    confidence, correct = confidence[keep], (predicted == t)[keep]
    if confidence.size == 0:
        return math.nan
    index = np.clip(np.ceil(confidence * bins) - 1, 0, bins - 1)
    return sum(abs(correct[index == b].sum() - confidence[index == b].sum()) for b in range(bins)) / confidence.size


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50, **CASES)
@given(case=probability_maps(), bins=st.integers(1, 20))
@example(case=(torch.full((1, 1, 1, 2), 1.0), WRAPPING[1], -1), bins=15)
def test_calibration_error_is_in_0_1_matches_its_definition_and_reports_bad_labels(device, case, bins):
    probabilities, target, ignore = case
    calibration = segzoo.CalibrationError(bins, ignore, device=device)
    result = assert_works_or_clear_error(lambda: calibration.update(probabilities.to(device), target.to(device)))
    bad_target, _ = label_problems(probabilities.float(), target, probabilities.shape[1], ignore)
    if bad_target:
        assert_names_labels(result, bad_target)
        return
    assert_accepted(result)
    ece, expected = calibration.compute(), independent_ece(probabilities, target, ignore, bins)
    if math.isnan(expected):
        assert math.isnan(ece)
    else:
        assert 0 <= ece <= 1
        assert ece == pytest.approx(expected, abs=1e-12)


@settings(max_examples=20, **CASES)
@given(
    shape=st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3)),
    fill=st.sampled_from([math.nan, -0.5, 1.5, math.inf]),
)
def test_calibration_error_refuses_what_is_not_probabilities(shape, fill):
    target = torch.zeros(shape[0], *shape[2:], dtype=torch.int64)
    result = assert_works_or_clear_error(lambda: segzoo.CalibrationError().update(torch.full(shape, fill), target))
    if shape[1] == 0:
        assert_rejected(result, ValueError, "C >= 1")
    elif shape[0] > 0:
        assert_rejected(result, ValueError, "must lie in [0, 1]")
    else:
        assert_accepted(result)  # no pixel to check


@pytest.mark.parametrize(
    "make",
    [
        lambda ignore: ConfusionMatrix(4, ignore),
        lambda ignore: BoundaryF1(4, ignore),
        lambda ignore: CalibrationError(ignore_index=ignore),
        lambda ignore: SegmentationMetrics(4, ignore, boundary=True, calibration=True),
    ],
    ids=["confusion", "boundary", "calibration", "collection"],
)
@pytest.mark.parametrize("theirs", [0, None], ids=["other label", "none"])
def test_merge_refuses_another_ignore_index(make, theirs):
    """Counts kept with another void label counted other pixels: adding them would mix two protocols."""
    logits, masks = _logit_batches(batches=1)[0]
    mine, other = make(255), make(theirs)
    for accumulator, labels in ((mine, masks), (other, masks.clamp(max=3))):
        if isinstance(accumulator, CalibrationError):
            accumulator.update(logits.softmax(1), labels)
        else:
            accumulator.update(logits, labels)
    before = [tensor.clone() for tensor in mine._state()]
    with pytest.raises(ValueError, match=rf"cannot merge .*ignore_index={theirs}.* into .*ignore_index=255"):
        mine.merge(other)
    assert all(torch.equal(a, b) for a, b in zip(mine._state(), before))  # nothing half-merged
