"""Median-frequency class weights against a hand-worked example, on CamVid, and against the
definition under hostile input (hypothesis)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support.properties import (
    CASES,
    IGNORES,
    assert_accepted,
    assert_names_labels,
    assert_rejected,
    assert_works_or_clear_error,
    counted_labels,
    label_maps,
)

import segzoo
from segzoo.metrics.class_weights import median_frequency_weights

# Image A: three 0s and one 1; image B: two 1s, two 2s.
# pixels: c0 3, c1 3, c2 2; pixels of images containing c: c0 4 (A), c1 8 (A+B), c2 4 (B)
# freq 3/4, 3/8, 2/4; median 1/2; weights (1/2)/(3/4), (1/2)/(3/8), (1/2)/(1/2)
MASK_A = np.array([[0, 0], [0, 1]])
MASK_B = np.array([[1, 1], [2, 2]])
EXPECTED = [2 / 3, 4 / 3, 1.0]

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def test_hand_worked_example():
    weights = median_frequency_weights([MASK_A, MASK_B], num_classes=3)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx(EXPECTED)


@pytest.mark.parametrize("power", [0.5, 0.0, 0.25])
def test_power_raises_the_hand_worked_weights(power):
    """power=0.5 is the square roots of the worked weights; power=0 weighs every present class 1."""
    weights = median_frequency_weights([MASK_A, MASK_B], num_classes=4, power=power)
    assert weights.tolist() == pytest.approx([w**power for w in EXPECTED] + [0.0])


@pytest.mark.parametrize("power", [-0.5, 1.5, True, "0.5", None])
def test_power_outside_zero_to_one_is_refused(power):
    with pytest.raises(ValueError, match=rf"power must be a number in \[0, 1\], got {power!r}"):
        median_frequency_weights([MASK_A, MASK_B], num_classes=3, power=power)


def test_ignored_pixels_count_nowhere():
    b_with_void = np.array([[1, 1, 255], [2, 2, 255]])
    assert median_frequency_weights([MASK_A, b_with_void], 3, ignore_index=255).tolist() == pytest.approx(EXPECTED)


def test_dataset_pairs_and_batches_are_accepted():
    pairs = [(torch.zeros(3, 2, 2), torch.from_numpy(MASK_A)), (torch.zeros(3, 2, 2), torch.from_numpy(MASK_B))]
    assert median_frequency_weights(pairs, 3).tolist() == pytest.approx(EXPECTED)
    batch = torch.from_numpy(np.stack([MASK_A, MASK_B]))
    assert median_frequency_weights([batch], 3).tolist() == pytest.approx(EXPECTED)


def test_absent_class_gets_zero_weight_and_stays_out_of_the_median():
    assert median_frequency_weights([MASK_A, MASK_B], 4).tolist() == pytest.approx([*EXPECTED, 0.0])


def test_weights_plug_into_cross_entropy():
    weights = median_frequency_weights([MASK_A, MASK_B], 3)
    loss = torch.nn.CrossEntropyLoss(weight=weights)(torch.randn(2, 3, 2, 2), torch.from_numpy(np.stack([MASK_A, MASK_B])))
    assert torch.isfinite(loss)


def test_bad_masks():
    with pytest.raises(ValueError, match=r"labels \[3\] outside \[0, 3\)"):
        median_frequency_weights([np.array([[0, 3]])], 3)
    with pytest.raises(TypeError, match="integer"):
        median_frequency_weights([np.zeros((2, 2))], 3)
    with pytest.raises(ValueError, match="no labelled pixels"):
        median_frequency_weights([np.full((2, 2), 255)], 3, ignore_index=255)


@pytest.mark.skipif(not (CAMVID / "trainannot").is_dir(), reason="CamVid not present at ../shared/data/camvid")
def test_camvid_train_split():
    """Real data: the median class weighs 1, rare classes (pole, sign, pedestrian, bicyclist) weigh
    more than 1 and the big ones (sky, building, road) less."""
    from PIL import Image

    masks = (np.array(Image.open(p)) for p in sorted((CAMVID / "trainannot").glob("*.png")))
    weights = median_frequency_weights(masks, num_classes=11, ignore_index=11)
    assert torch.isfinite(weights).all() and (weights > 0).all()
    assert weights.median().item() == pytest.approx(1.0)
    assert all(weights[c] > 1 for c in (2, 6, 9, 10)) and all(weights[c] < 1 for c in (0, 1, 3))
    print("CamVid train median-frequency weights:", [round(w, 4) for w in weights.tolist()])


# ---- property test ----

@st.composite
def mask_collections(draw):
    """(masks, num_classes, ignore_index): single masks (H, W) and batches (N, H, W), as tensors,
    arrays or (image, mask) pairs, with out-of-range labels half the time."""
    items = []
    num_classes = draw(st.integers(1, 5))
    ignore = draw(st.sampled_from(IGNORES))
    for _ in range(draw(st.integers(1, 4))):
        _, target, _, _ = draw(label_maps(max_side=5, scores=False))
        mask = target[0] if draw(st.booleans()) and len(target) else target
        form = draw(st.sampled_from(["tensor", "array", "pair"]))
        items.append({"tensor": mask, "array": mask.numpy(), "pair": (None, mask)}[form])
    return items, num_classes, ignore


def singles(items) -> list[np.ndarray]:
    masks = [np.asarray(item[-1] if isinstance(item, tuple) else item).astype(np.int64) for item in items]
    return [m for mask in masks for m in (mask if mask.ndim == 3 else mask[None])]


@settings(max_examples=60, **CASES)
@given(case=mask_collections())
def test_median_frequency_weights_follow_the_definition_and_report_bad_labels(case):
    items, num_classes, ignore = case
    result = assert_works_or_clear_error(lambda: segzoo.median_frequency_weights(items, num_classes, ignore))
    masks = singles(items)
    counted = [m[counted_labels(m, ignore)] for m in masks]
    for labels in counted:  # masks are read in order: the first bad one is reported
        bad = set(labels[(labels < 0) | (labels >= num_classes)].tolist())
        if bad:
            assert_names_labels(result, bad)
            return
    if sum(labels.size for labels in counted) == 0:
        assert_rejected(result, ValueError, "no labelled pixels")
        return
    assert_accepted(result)
    # freq(c): pixels of c over the labelled pixels of the images holding c; weight = median(freq) / freq
    frequency = {}
    for c in range(num_classes):
        holding = [labels for labels in counted if (labels == c).any()]
        if holding:
            frequency[c] = sum((labels == c).sum() for labels in holding) / sum(labels.size for labels in holding)
    median = np.median(list(frequency.values()))
    expected = [median / frequency[c] if c in frequency else 0.0 for c in range(num_classes)]
    assert result.dtype == torch.float32
    assert result.tolist() == pytest.approx(expected, rel=1e-6)
