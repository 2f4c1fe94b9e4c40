"""The losses against hand-worked cases and numpy references written here (Lovasz: the extension
brute-forced as an integral over thresholds), the ignore and pad rule, empty batches, gradients,
specs; and a padded crop end to end: loss and metrics see only the image's own pixels."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segzoo
from segzoo.labels import PAD_LABEL
from segzoo.losses import (
    LOSSES,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    WeightedSum,
    format_loss_spec,
    get_loss,
    parse_loss_spec,
)
from segzoo.metrics import SegmentationMetrics

NAMES = list(LOSSES)


def batch(seed=0, n=2, classes=3, h=5, w=6, ignore=None, pad=True, dtype=torch.float64):
    """Random logits and labels, with PAD_LABEL pixels (and ``ignore`` pixels, when given)."""
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(n, classes, h, w, generator=g)).to(dtype)
    target = torch.randint(0, classes, (n, h, w), generator=g)
    if pad:
        target[:, -1] = PAD_LABEL
    if ignore is not None:
        target[:, :, 0] = ignore
    return logits, target


def flat(logits, target, ignore=None):
    """numpy (P, C) logits and (P,) labels of the counted pixels."""
    counted = (target != PAD_LABEL) & (target != ignore if ignore is not None else True)
    return logits.permute(0, 2, 3, 1)[counted].detach().numpy(), target[counted].numpy()


def log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def reference_ce(x, y, weight=None, smoothing=0.0):
    classes = x.shape[1]
    w = np.ones(classes) if weight is None else weight
    log_p = log_softmax(x)
    per_pixel = (1 - smoothing) * w[y] * -log_p[np.arange(len(y)), y] + smoothing / classes * (w * -log_p).sum(1)
    return per_pixel.sum() / w[y].sum()


def reference_focal(x, y, gamma, weight=None):
    w = np.ones(x.shape[1]) if weight is None else weight
    p_true = np.exp(log_softmax(x))[np.arange(len(y)), y]
    return (w[y] * -((1 - p_true) ** gamma) * np.log(p_true)).sum() / w[y].sum()


def class_mean(losses, present, weight):
    w = (np.ones(len(losses)) if weight is None else weight) * present
    return (losses * w).sum() / w.sum() if w.sum() > 0 else 0.0


def reference_dice(x, y, weight=None):
    p = np.exp(log_softmax(x))
    onehot = np.eye(x.shape[1])[y]
    dice = 2 * (p * onehot).sum(0) / np.maximum(p.sum(0) + onehot.sum(0), 1e-300)
    return class_mean(1 - dice, onehot.sum(0) > 0, weight)


def jaccard_loss_of_set(wrong, truth):
    """|wrong| / |truth or wrong|: the Jaccard loss when exactly the pixels ``wrong`` are mispredicted."""
    return wrong.sum() / (truth | wrong).sum() if wrong.any() else 0.0


def lovasz_extension_by_thresholds(errors, truth):
    """The Lovasz extension of the Jaccard loss at ``errors`` in [0, 1], as the integral over t in
    [0, 1] of the set function at the level set {errors >= t} (piecewise constant between values)."""
    levels = np.unique(np.concatenate([errors, [0.0]]))[::-1]  # decreasing, ending at 0
    return sum((high - low) * jaccard_loss_of_set(errors >= high, truth) for high, low in zip(levels[:-1], levels[1:]))


def reference_lovasz(x, y, weight=None):
    p = np.exp(log_softmax(x))
    classes = x.shape[1]
    losses = np.array([lovasz_extension_by_thresholds(np.abs((y == c) - p[:, c]), y == c) for c in range(classes)])
    return class_mean(losses, np.array([(y == c).any() for c in range(classes)]), weight)


REFERENCES = {
    "ce": reference_ce,
    "focal": lambda x, y, weight=None: reference_focal(x, y, 2.0, weight),
    "dice": reference_dice,
    "lovasz": reference_lovasz,
}


# ---- hand-worked cases ----


def test_dice_by_hand():
    """Pixel A: p = (3/4, 1/4), label 0; B: (1/2, 1/2), label 1; C padded, D ignored (their logits are
    anything). Class 0: 2 * 3/4 / (5/4 + 1) = 2/3; class 1: 2 * 1/2 / (3/4 + 1) = 4/7;
    loss = 1 - (2/3 + 4/7) / 2 = 8/21."""
    logits = torch.tensor([[math.log(3), 0.0], [0.0, 0.0], [9.0, -9.0], [-4.0, 4.0]]).T.reshape(1, 2, 1, 4)
    target = torch.tensor([[[0, 1, PAD_LABEL, 255]]])
    assert DiceLoss(ignore_index=255)(logits, target).item() == pytest.approx(8 / 21, abs=1e-7)
    # class weights (1, 3): (1/3 + 3 * 3/7) / 4
    weighted = DiceLoss(ignore_index=255, weight=torch.tensor([1.0, 3.0]))(logits, target)
    assert weighted.item() == pytest.approx((1 / 3 + 3 * 3 / 7) / 4, abs=1e-7)


def test_lovasz_of_a_hard_prediction_is_one_minus_the_mean_iou_by_hand():
    """Labels 0 0 1 1, prediction 0 1 1 1 (confident): IoU_0 = 1/2, IoU_1 = 2/3, loss = 1 - 7/12."""
    predicted = torch.tensor([0, 1, 1, 1])
    logits = (F.one_hot(predicted, 2).T.double() * 60 - 30).reshape(1, 2, 1, 4)
    loss = LovaszSoftmaxLoss()(logits, torch.tensor([[[0, 0, 1, 1]]]))
    assert loss.item() == pytest.approx(5 / 12, abs=1e-12)


def test_focal_by_hand_and_gamma_zero_is_cross_entropy():
    """Two classes, equal logits: p = 1/2, focal = -(1/2)^2 log(1/2) = ln(2) / 4."""
    logits, target = torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, dtype=torch.long)
    assert FocalLoss()(logits, target).item() == pytest.approx(math.log(2) / 4, rel=1e-6)
    logits, target = batch(ignore=255)
    weight = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(FocalLoss(255, weight, gamma=0.0)(logits, target), CrossEntropyLoss(255, weight)(logits, target))


def test_cross_entropy_equals_torchs_on_the_counted_pixels():
    logits, target = batch(ignore=255, dtype=torch.float32)
    weight = torch.tensor([0.5, 1.0, 2.0])
    ours = CrossEntropyLoss(255, weight, label_smoothing=0.1)(logits, target)
    x, y = flat(logits, target, 255)
    theirs = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)(torch.from_numpy(x), torch.from_numpy(y))
    torch.testing.assert_close(ours, theirs)


# ---- every loss against its numpy reference ----


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("weighted", [False, True])
def test_each_loss_matches_its_numpy_reference(name, ignore, weighted):
    logits, target = batch(seed=len(name), ignore=ignore)
    weight = torch.tensor([0.5, 0.0, 2.0], dtype=torch.float64) if weighted else None
    loss = get_loss(name, ignore_index=ignore, class_weights=weight)
    x, y = flat(logits, target, ignore)
    expected = REFERENCES[name](x, y, weight.numpy() if weighted else None)
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_label_smoothing_matches_the_numpy_reference():
    logits, target = batch(ignore=255)
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    loss = get_loss("ce", ignore_index=255, class_weights=weight, label_smoothing=0.2)
    x, y = flat(logits, target, 255)
    assert loss(logits, target).item() == pytest.approx(reference_ce(x, y, weight.numpy(), 0.2), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_lovasz_equals_the_threshold_integral_with_ties_and_absent_classes(seed):
    """Four classes on 7 pixels, some absent; coarse logits make tied errors."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(-2, 3, (1, 4, 1, 7), generator=g).double()
    target = torch.randint(0, 2, (1, 1, 7), generator=g) * (seed % 3)
    x, y = flat(logits, target)
    assert LovaszSoftmaxLoss()(logits, target).item() == pytest.approx(reference_lovasz(x, y), abs=1e-12)


def test_dice_leaves_absent_classes_out_of_the_mean():
    logits, target = batch(classes=4)
    target[target == 3] = 0  # class 3 absent
    x, y = flat(logits, target)
    p = np.exp(log_softmax(x))
    onehot = np.eye(4)[y]
    dice = 2 * (p * onehot).sum(0) / (p.sum(0) + onehot.sum(0))
    assert DiceLoss()(logits, target).item() == pytest.approx(1 - dice[:3].mean(), rel=1e-12)


def test_a_weighted_sum_is_the_sum_of_its_terms_each_with_its_own_weight():
    logits, target = batch(ignore=255)
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    combined = get_loss("0.5*ce+2*dice+lovasz", ignore_index=255, class_weights=weight)
    assert isinstance(combined, WeightedSum) and combined.coefficients == (0.5, 2.0, 1.0)
    x, y = flat(logits, target, 255)
    w = weight.numpy()
    expected = 0.5 * reference_ce(x, y, w) + 2 * reference_dice(x, y, w) + reference_lovasz(x, y, w)
    assert combined(logits, target).item() == pytest.approx(expected, rel=1e-10)
    sums, weights = combined.summed(logits, target)
    assert sums.shape == weights.shape == (3,)
    assert weights[0].item() == pytest.approx(w[y].sum()) and weights[1].item() == weights[2].item() == len(y)


# ---- the ignore and pad rule, empty batches, gradients ----


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ignore", [None, 255])
def test_ignored_and_padded_pixels_do_not_count_whatever_their_logits(name, ignore):
    logits, target = batch(ignore=ignore)
    loss = get_loss(name, ignore_index=ignore)
    skipped = (target == PAD_LABEL) | (target == ignore)
    changed = torch.where(skipped[:, None], 100 * torch.randn_like(logits), logits)
    torch.testing.assert_close(loss(changed, target), loss(logits, target), rtol=1e-12, atol=1e-12)
    # the counted pixels alone, as a (1, C, 1, P) image, give the same loss
    x, y = flat(logits, target, ignore)
    alone = loss(torch.from_numpy(x).T.reshape(1, -1, 1, len(y)), torch.from_numpy(y).reshape(1, 1, -1))
    torch.testing.assert_close(loss(logits, target), alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [*NAMES, "ce+dice+focal+lovasz"])
@pytest.mark.parametrize("fill", [PAD_LABEL, 255])
def test_a_batch_with_no_counted_pixel_is_a_zero_loss_with_zero_gradients(name, fill):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = get_loss(name, ignore_index=255)(logits, torch.full((2, 4, 4), fill))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name):
    logits, target = batch(n=1, h=3, w=4, ignore=255)
    loss = get_loss(name, ignore_index=255, class_weights=torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: loss(x, target), logits.requires_grad_())


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_for_confident_logits_and_half_precision(name):
    logits, target = batch(dtype=torch.float32)
    logits = (logits * 100).requires_grad_()  # saturated softmax: p_y rounds to 1 or 0
    for loss in (get_loss(name), FocalLoss(gamma=0.5)):
        value = loss(logits, target)
        (grad,) = torch.autograd.grad(value, logits)
        assert value.isfinite() and grad.isfinite().all() and grad.abs().sum() > 0
    half = get_loss(name)(logits.detach().bfloat16(), target)
    assert half.isfinite()


# ---- bad input ----


@pytest.mark.parametrize("name", NAMES)
def test_bad_labels_and_shapes_are_refused_with_a_clear_error(name):
    loss = get_loss(name, ignore_index=255)
    logits = torch.randn(1, 3, 2, 2)
    with pytest.raises(ValueError, match=r"labels \[-2, 3\] outside \[0, 3\), ignore_index=255 and the pad label -1"):
        loss(logits, torch.tensor([[[0, 3], [-2, PAD_LABEL]]]))
    with pytest.raises(ValueError, match="expected logits"):
        loss(logits, torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer labels"):
        loss(logits, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="2 class weights given for logits of 3 classes"):
        get_loss(name, class_weights=torch.ones(2))(logits, torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative"):
        get_loss(name, class_weights=torch.tensor([1.0, -1.0, 1.0]))


# ---- specs ----


def test_specs_are_parsed_and_written_the_short_way():
    assert parse_loss_spec(" 0.5 * ce + dice+2*lovasz") == ((0.5, "ce"), (1.0, "dice"), (2.0, "lovasz"))
    assert format_loss_spec(parse_loss_spec("1*ce+1.0*dice")) == "ce+dice"
    assert format_loss_spec(parse_loss_spec("0.25*focal+3*lovasz")) == "0.25*focal+3*lovasz"
    assert type(get_loss("ce")) is CrossEntropyLoss and type(get_loss("1*dice")) is DiceLoss
    assert isinstance(get_loss("2*ce"), WeightedSum)
    assert set(LOSSES) == {"ce", "dice", "focal", "lovasz"}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("crossentropy", "unknown loss 'crossentropy'.*ce, dice, focal, lovasz"),
        ("ce+", "cannot read the loss spec.*names ce, dice, focal, lovasz"),
        ("", "cannot read"),
        ("0*dice", "positive"),
        ("-1*dice", "positive"),
        ("nan*dice", "positive"),
        ("x*dice", "not a number"),
        ("ce+dice+ce", "twice"),
    ],
)
def test_bad_specs_name_the_valid_losses(spec, message):
    with pytest.raises(ValueError, match=message):
        get_loss(spec)


def test_label_smoothing_needs_a_ce_term_and_a_value_below_one():
    assert get_loss("dice+0.5*ce", label_smoothing=0.1).losses[1].label_smoothing == 0.1
    with pytest.raises(ValueError, match="no ce term"):
        get_loss("dice", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        get_loss("ce", label_smoothing=1.0)


# ---- a padded crop end to end ----


def test_a_padded_crop_counts_only_the_images_own_pixels_in_every_loss_and_score():
    """A random crop larger than the image pads it (image with 0, mask with PAD_LABEL; built here
    as the train transform pads). The model sees the padded image, and the loss and every score
    equal those of the unpadded pixels of its logits, computed independently."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 11, 13, generator=g)
    mask = torch.randint(0, 3, (2, 11, 13), generator=g)
    mask[0, :2] = 255
    top, left, height, width = 3, 2, 16, 18  # the crop: 16x18 around the 11x13 image
    padded_image = torch.zeros(2, 3, height, width)
    padded_image[:, :, top : top + 11, left : left + 13] = image
    padded_mask = torch.full((2, height, width), PAD_LABEL)
    padded_mask[:, top : top + 11, left : left + 13] = mask
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3).eval()
    with torch.no_grad():
        logits = model(padded_image).double()
    inside = logits[:, :, top : top + 11, left : left + 13]
    x, y = flat(inside, mask, 255)
    for name, reference in REFERENCES.items():
        loss = get_loss(name, ignore_index=255)(logits, padded_mask)
        assert loss.item() == pytest.approx(reference(x, y), rel=1e-9), name
    padded_scores, own_scores = (SegmentationMetrics(3, 255, boundary=True, calibration=True) for _ in range(2))
    padded_scores.update(logits, padded_mask)
    own_scores.update(inside, mask)
    padded, own = padded_scores.compute(), own_scores.compute()
    assert torch.equal(padded.confusion, own.confusion) and int(own.confusion.sum()) == int((mask != 255).sum())
    assert padded.bf_score == own.bf_score and padded.ece == pytest.approx(own.ece, rel=1e-6)  # float32 softmax
    torch.testing.assert_close(padded.per_class_bf, own.per_class_bf, equal_nan=True)
