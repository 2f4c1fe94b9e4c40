"""Boundary F1 against hand-counted boundaries and a brute-force pairwise-distance reference, also
under hostile input (hypothesis)."""

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from support.properties import (
    CASES,
    assert_accepted,
    assert_names_labels,
    assert_rejected,
    assert_works_or_clear_error,
    label_maps,
    label_problems,
)
from support.reference_boundary import reference_bf

import segzoo
from segzoo.labels import PAD_LABEL
from segzoo.metrics.boundary import BoundaryF1, boundary_f1

NAN = float("nan")


def square(size: int, top: int, left: int, side: int, label: int = 1, background: int = 0) -> torch.Tensor:
    labels = torch.full((size, size), background)
    labels[top : top + side, left : left + side] = label
    return labels


def assert_scores(actual: torch.Tensor, expected: list) -> None:
    assert actual.dtype == torch.float64
    assert torch.allclose(actual, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15, equal_nan=True), actual


# 20x20 at the default tolerance: theta = 0.0075 * sqrt(800) = 0.21 < 1, only exact positions match.
# Target: a 4x4 square of class 1 at rows 5-8, cols 5-8; prediction: the same square one column right.
# Class 1 boundary: the 12 ring pixels of each square. Rows 5 and 8 share cols 6-8 (3 + 3); on rows 6-7
# the target ring has cols 5, 8 and the prediction cols 6, 9: none shared. P = R = 6/12, F1 = 1/2.
# Class 0 boundary: the 16 background pixels 4-adjacent to each square (4 per side; the image border is
# no boundary). Above and below, cols 6-8 are shared (3 + 3); the side columns (4, 9 vs 5, 10) are not.
# P = R = 6/16, F1 = 3/8. Image BF = (1/2 + 3/8) / 2 = 7/16.
SHIFT_TARGET, SHIFT_PREDICTION = square(20, 5, 5, 4), square(20, 5, 6, 4)

# Class 2 in the target is predicted as class 1, which the target lacks. Class 0's boundary (16 pixels
# around the square) is the same in both: F1 = 1. Class 2 has no predicted boundary: F1 = 0. Class 1 is
# not scored. Image BF = (1 + 0) / 2 = 1/2.
SWAP_TARGET, SWAP_PREDICTION = square(20, 5, 5, 4, label=2), square(20, 5, 5, 4, label=1)


def test_identical_maps_score_one():
    target = torch.randint(0, 3, (2, 5, 7), generator=torch.Generator().manual_seed(0))
    target = target.repeat_interleave(4, 1).repeat_interleave(4, 2)
    image_bf, class_f1 = boundary_f1(target, target, num_classes=4)
    assert image_bf.tolist() == [1.0, 1.0]
    assert ((class_f1 == 1) | class_f1.isnan()).all() and (class_f1 == 1).any()


def test_one_pixel_shift_within_tolerance_scores_one():
    """200x200: theta = 0.0075 * sqrt(2) * 200 = 2.12, and every boundary pixel has its twin 1 pixel away."""
    image_bf, class_f1 = boundary_f1(square(200, 50, 50, 40, label=1)[None], square(200, 50, 51, 40, label=1)[None], 2)
    assert_scores(image_bf, [1.0])
    assert_scores(class_f1, [[1.0, 1.0]])


def test_one_pixel_shift_below_one_pixel_tolerance_hand_counted():
    image_bf, class_f1 = boundary_f1(SHIFT_PREDICTION[None], SHIFT_TARGET[None], num_classes=2)
    assert_scores(class_f1, [[3 / 8, 1 / 2]])
    assert_scores(image_bf, [7 / 16])
    # tolerance 0 means exact positions too; theta = 1.5 pixels forgives the shift
    assert_scores(boundary_f1(SHIFT_PREDICTION[None], SHIFT_TARGET[None], 2, tolerance=0.0)[0], [7 / 16])
    assert_scores(boundary_f1(SHIFT_PREDICTION[None], SHIFT_TARGET[None], 2, tolerance=1.5 / math.sqrt(800))[0], [1.0])


def test_class_never_predicted_is_zero_and_class_only_predicted_is_not_scored():
    image_bf, class_f1 = boundary_f1(SWAP_PREDICTION[None], SWAP_TARGET[None], num_classes=3)
    assert_scores(class_f1, [[1.0, NAN, 0.0]])
    assert_scores(image_bf, [1 / 2])


def test_class_filling_the_image():
    """Empty boundaries in both maps give 1; empty in the target only gives 0 (the class is still present)."""
    full = torch.ones(1, 20, 20, dtype=torch.long)
    assert_scores(boundary_f1(full, full, 2)[1], [[NAN, 1.0]])
    image_bf, class_f1 = boundary_f1(square(20, 5, 5, 4, label=0, background=1)[None], full, 2)
    assert_scores(class_f1, [[NAN, 0.0]])
    assert_scores(image_bf, [0.0])


def test_all_ignore_image_is_skipped_and_not_counted():
    void = torch.full((1, 20, 20), 255)
    batch_prediction = torch.stack([SHIFT_PREDICTION, torch.zeros(20, 20, dtype=torch.long)])
    batch_target = torch.cat([SHIFT_TARGET[None], void])
    image_bf, class_f1 = boundary_f1(batch_prediction, batch_target, 2, ignore_index=255)
    assert_scores(image_bf, [7 / 16, NAN])
    assert class_f1[1].isnan().all()
    acc = BoundaryF1(2, ignore_index=255)
    acc.update(batch_prediction, batch_target)
    scores = acc.compute()
    assert scores.images == 1 and scores.bf_score == pytest.approx(7 / 16, abs=1e-15)


def test_void_edges_are_boundaries_in_both_maps_and_errors_under_void_are_free():
    """Rows 0-4 void. The class-0 pixels of row 5 (20) border the void in both maps, so they are boundary
    pixels and all match. Class 0: 20 + 16 around the square, 20 + 6 shared: P = R = F1 = 26/36 = 13/18.
    Class 1 as in the shift example: 1/2. Image BF = (13/18 + 1/2) / 2 = 11/18."""
    target, prediction = SHIFT_TARGET.clone(), SHIFT_PREDICTION.clone()
    target[5:], prediction[5:] = SHIFT_TARGET[:15].clone(), SHIFT_PREDICTION[:15].clone()
    target[:5] = 255
    prediction[:5] = 1  # wrong under the void: must cost nothing
    image_bf, class_f1 = boundary_f1(prediction[None], target[None], 2, ignore_index=255)
    assert_scores(class_f1, [[13 / 18, 1 / 2]])
    assert_scores(image_bf, [11 / 18])
    garbage = prediction.clone()
    garbage[:5] = torch.randint(0, 2, (5, 20))
    garbage[0, :3] = 99  # labels under the void are not even range-checked, as in ConfusionMatrix
    again = boundary_f1(garbage[None], target[None], 2, ignore_index=255)
    assert torch.equal(again[0], image_bf) and torch.equal(again[1], class_f1)


def test_image_mean_over_scored_classes_and_dataset_mean_over_images():
    """Images: shift (classes 3/8, 1/2, -> 7/16) and swap (1, unscored, 0 -> 1/2), plus an all-void one.
    Dataset BF = (7/16 + 1/2) / 2 = 15/32; per class: (3/8 + 1) / 2 = 11/16, 1/2, 0."""
    prediction = torch.stack([SHIFT_PREDICTION, SWAP_PREDICTION, SWAP_PREDICTION])
    target = torch.stack([SHIFT_TARGET, SWAP_TARGET, torch.full((20, 20), -1)])
    image_bf, class_f1 = boundary_f1(prediction, target, 3, ignore_index=-1)
    assert_scores(image_bf, [7 / 16, 1 / 2, NAN])
    assert_scores(class_f1, [[3 / 8, 1 / 2, NAN], [1.0, NAN, 0.0], [NAN, NAN, NAN]])
    acc = BoundaryF1(3, ignore_index=-1)
    acc.update(prediction, target)
    scores = acc.compute()
    assert scores.images == 2
    assert scores.bf_score == pytest.approx(15 / 32, abs=1e-15)
    assert_scores(scores.per_class, [11 / 16, 1 / 2, 0.0])


def random_blocky(seed: int, n: int, num_classes: int, h: int = 37, w: int = 53, ignore_index: int = 255):
    """Blocky targets with void patches, and predictions that shift, relabel and speckle them.
    Labels are drawn from a palette holding the top bit of each word width (7, 15, 31, 63) and classes past
    the first 64; with 4, 8, 16, 32 and 70 classes every word size, its sign bit and two words are exercised."""
    rng = np.random.default_rng(seed)
    palette = np.array([c for c in (0, 1, 2, 3, 7, 8, 15, 31, 62, 63, 64, 69) if c < num_classes])
    rows, cols = np.arange(h) * 7 // h, np.arange(w) * 9 // w
    target = rng.choice(palette, (n, 7, 9))[:, rows][:, :, cols]
    prediction = np.roll(target, rng.integers(-2, 3, size=2), axis=(1, 2))
    relabel = rng.random((n, 7, 9))[:, rows][:, :, cols] < 0.2
    prediction = np.where(relabel, rng.choice(palette, (n, h, w)), prediction)
    prediction = np.where(rng.random((n, h, w)) < 0.03, rng.choice(palette, (n, h, w)), prediction)
    for i in range(n):
        top, left = rng.integers(0, h - 8), rng.integers(0, w - 8)
        target[i, top : top + rng.integers(1, 9), left : left + rng.integers(1, 9)] = ignore_index
    return torch.from_numpy(prediction), torch.from_numpy(target)


@pytest.mark.parametrize("ignore", [None, 255])
def test_a_padded_image_is_scored_on_its_own_pixels_with_its_own_tolerance(ignore):
    """Each image framed differently by pad pixels (-1), garbage predicted under the pad: the scores
    are those of the unpadded images, whose tolerance (0.05 of 37x53's diagonal: 3.2 pixels, not
    that of the padded 48x60) and border (no boundary) they keep; an all-pad image is skipped."""
    prediction, target = random_blocky(seed=5, n=3, num_classes=8, ignore_index=ignore if ignore is not None else 0)
    padded_target = torch.full((4, 48, 60), PAD_LABEL)
    padded_prediction = torch.randint(0, 99, (4, 48, 60), generator=torch.Generator().manual_seed(0))
    for i, (top, left) in enumerate([(0, 0), (5, 2), (11, 7)]):
        padded_target[i, top : top + 37, left : left + 53] = target[i]
        padded_prediction[i, top : top + 37, left : left + 53] = prediction[i]
    image_bf, class_f1 = boundary_f1(padded_prediction, padded_target, 8, ignore_index=ignore, tolerance=0.05)
    expected_image, expected_class = reference_bf(prediction, target, 8, ignore, 0.05)
    assert np.allclose(image_bf.numpy()[:3], expected_image, rtol=0, atol=1e-12, equal_nan=True)
    assert np.allclose(class_f1.numpy()[:3], expected_class, rtol=0, atol=1e-12, equal_nan=True)
    assert image_bf[3].isnan() and class_f1[3].isnan().all()
    unpadded = boundary_f1(prediction, target, 8, ignore_index=ignore, tolerance=0.05)
    assert torch.equal(image_bf[:3], unpadded[0]) and torch.equal(class_f1[:3].isnan(), unpadded[1].isnan())


@pytest.mark.parametrize("num_classes", [4, 8, 16, 32, 70])
@pytest.mark.parametrize("tolerance", [0.0075, 0.03, 0.05, 0.1])
def test_matches_brute_force_reference(num_classes, tolerance):
    """37x53: theta = 0.48, 1.94, 3.23, 6.47 pixels."""
    prediction, target = random_blocky(seed=num_classes * 1000 + int(tolerance * 1e4), n=3, num_classes=num_classes)
    image_bf, class_f1 = boundary_f1(prediction, target, num_classes, ignore_index=255, tolerance=tolerance)
    expected_image, expected_class = reference_bf(prediction, target, num_classes, 255, tolerance)
    assert np.allclose(class_f1.numpy(), expected_class, rtol=0, atol=1e-12, equal_nan=True)
    assert np.allclose(image_bf.numpy(), expected_image, rtol=0, atol=1e-12, equal_nan=True)
    assert not np.isnan(expected_image).any() and 0 < np.nanmin(expected_class) < 1  # a non-trivial case


def test_logits_are_reduced_by_argmax():
    prediction, target = random_blocky(seed=1, n=2, num_classes=4)
    logits = torch.nn.functional.one_hot(prediction, 4).permute(0, 3, 1, 2).float() * 3 - 1
    for got, want in zip(boundary_f1(logits, target, 4, 255, 0.05), boundary_f1(prediction, target, 4, 255, 0.05)):
        assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())


def test_batches_and_merge_equal_one_shot():
    prediction, target = random_blocky(seed=2, n=6, num_classes=8)
    target[5] = 255  # one skipped image
    image_bf, class_f1 = boundary_f1(prediction, target, 8, ignore_index=255, tolerance=0.05)
    batched, first, second = (BoundaryF1(8, ignore_index=255, tolerance=0.05) for _ in range(3))
    for part in (slice(0, 2), slice(2, 5), slice(5, 6)):
        batched.update(prediction[part], target[part])
    first.update(prediction[:4], target[:4])
    second.update(prediction[4:], target[4:])
    first.merge(second)
    for scores in (batched.compute(), first.compute()):
        assert scores.images == 5
        assert scores.bf_score == pytest.approx(float(image_bf.nanmean()), abs=1e-12)
        assert torch.allclose(scores.per_class, class_f1.nanmean(0), rtol=0, atol=1e-12, equal_nan=True)
    batched.reset()
    empty = batched.compute()
    assert empty.images == 0 and math.isnan(empty.bf_score) and empty.per_class.isnan().all()
    with pytest.raises(ValueError, match="cannot merge"):
        first.merge(BoundaryF1(8, tolerance=0.01))


def test_all_reduce_sums_every_accumulated_tensor(monkeypatch):
    """Stand in for a second rank with the same data: a SUM all-reduce then doubles every sum and count,
    which leaves the scores as they were and doubles the image count."""
    import torch.distributed as dist

    def fake_all_reduce(tensor, op, group=None):
        assert op == dist.ReduceOp.SUM
        tensor.mul_(2)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    acc = BoundaryF1(3, ignore_index=-1)
    acc.update(torch.stack([SHIFT_PREDICTION, SWAP_PREDICTION]), torch.stack([SHIFT_TARGET, SWAP_TARGET]))
    acc.all_reduce()
    scores = acc.compute()
    assert scores.images == 4 and scores.bf_score == pytest.approx(15 / 32, abs=1e-15)
    assert_scores(scores.per_class, [11 / 16, 1 / 2, 0.0])


def _all_reduce_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    acc = BoundaryF1(3)
    pair = (SHIFT_PREDICTION, SHIFT_TARGET) if rank == 0 else (SWAP_PREDICTION, SWAP_TARGET)
    acc.update(pair[0][None], pair[1][None])
    acc.all_reduce()
    torch.save(acc.compute(), f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_over_two_gloo_processes(tmp_path):
    mp.spawn(_all_reduce_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        scores = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert scores.images == 2 and scores.bf_score == pytest.approx(15 / 32, abs=1e-15)
        assert_scores(scores.per_class, [11 / 16, 1 / 2, 0.0])


def test_bad_inputs():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"target holds labels \[3, 7\] outside \[0, 3\) or ignore_index=255"):
        boundary_f1(labels, torch.tensor([[[3, 7, 255, 0]]]).expand(1, 4, 4), 3, ignore_index=255)
    with pytest.raises(ValueError, match=r"prediction holds labels \[5\]"):
        boundary_f1(labels + 5, labels, 3)
    with pytest.raises(TypeError, match="integer"):
        boundary_f1(labels.float(), labels, 3)
    with pytest.raises(ValueError, match="do not match"):
        boundary_f1(labels[:, :3], labels, 3)
    with pytest.raises(ValueError, match="expected num_classes=3"):
        boundary_f1(torch.zeros(1, 4, 4, 4), labels, 3)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        boundary_f1(labels[0], labels[0], 3)
    with pytest.raises(TypeError, match="tensors"):
        boundary_f1(labels.numpy(), labels, 3)
    with pytest.raises(ValueError, match="tolerance"):
        BoundaryF1(3, tolerance=-0.1)
    with pytest.raises(ValueError, match="num_classes"):
        boundary_f1(labels, labels, 0)
    acc = BoundaryF1(3)
    with pytest.raises(ValueError, match="outside"):
        acc.update(labels + 3, labels)
    assert acc.images == 0 and acc.class_count.sum() == 0, "a rejected batch must not be half counted"


# ---- property test ----

@settings(max_examples=60, **CASES)
@given(case=label_maps(), tolerance=st.sampled_from([0.0, 0.0075, 0.1, 0.5]))
def test_boundary_f1_matches_the_brute_force_reference_and_reports_bad_labels(case, tolerance):
    prediction, target, num_classes, ignore = case
    result = assert_works_or_clear_error(lambda: segzoo.boundary_f1(prediction, target, num_classes, ignore, tolerance))
    if prediction.is_floating_point() and not torch.isfinite(prediction).all():
        assert_rejected(result, ValueError, "non-finite")
        return
    bad_target, bad_prediction = label_problems(prediction, target, num_classes, ignore)
    if bad_target or bad_prediction:
        assert_names_labels(result, bad_target or bad_prediction)
        return
    assert_accepted(result)
    image_bf, class_f1 = result
    labels = prediction.argmax(1) if prediction.is_floating_point() else prediction
    expected_image, expected_class = reference_bf(labels.long(), target.long(), num_classes, ignore, tolerance)
    assert np.allclose(class_f1.numpy(), expected_class, rtol=0, atol=1e-12, equal_nan=True)
    assert np.allclose(image_bf.numpy(), expected_image, rtol=0, atol=1e-12, equal_nan=True)
    assert ((image_bf >= 0) & (image_bf <= 1) | image_bf.isnan()).all()
    # a perfect prediction scores 1 on every image that has a labelled pixel
    perfect, _ = segzoo.boundary_f1(target, target, num_classes, ignore, tolerance)
    assert torch.equal(perfect.isnan(), image_bf.isnan()) and (perfect[~perfect.isnan()] == 1).all()
    accumulator = segzoo.BoundaryF1(num_classes, ignore, tolerance)
    accumulator.update(prediction, target)
    scores = accumulator.compute()
    assert scores.images == int((~image_bf.isnan()).sum())
    assert scores.bf_score == pytest.approx(float(image_bf.nanmean()), nan_ok=True, abs=1e-12)
