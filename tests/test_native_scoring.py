"""Scores at each label's own resolution (the papers' protocol), checked against numpy.

The model sees images resized to ``eval_size``; its logits are upsampled bilinearly
(``align_corners=False``) to the label's size, and only then counted: confusion matrix, loss, BF,
ECE. The reference below does each step in numpy (float64), independently of segzoo and torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import segzoo
from segzoo.data import SegmentationFolder, eval_transforms
from segzoo.training import evaluate, evaluate_dataset, make_loader

IGNORE = 255
NUM_CLASSES = 3
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


class PixelLinear(segzoo.SegmentationModel):
    """Logits = a fixed 1x1 convolution of the normalised image: every output is known in numpy."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Identity()
        self.head = nn.Conv2d(3, NUM_CLASSES, 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[2.0, -0.6, -0.4], [-0.5, 2.2, -0.6], [-0.4, -0.5, 1.9]]).view(3, 3, 1, 1))
            self.head.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def in_channels(self) -> int:
        return 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def numpy_logits(self, image: np.ndarray) -> np.ndarray:
        weight = self.head.weight.detach().double().numpy()[:, :, 0, 0]
        bias = self.head.bias.detach().double().numpy()
        return np.einsum("kc,chw->khw", weight, image) + bias[:, None, None]


def np_bilinear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (C, H, W), bilinear with half-pixel centres (``align_corners=False``): output
    pixel i samples input coordinate (i + 0.5) * in / out - 0.5, clamped at the borders."""

    def axis(out: int, inp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.maximum((np.arange(out) + 0.5) * inp / out - 0.5, 0.0)
        low = np.minimum(np.floor(source).astype(int), inp - 1)
        return low, np.minimum(low + 1, inp - 1), source - low

    y0, y1, wy = axis(size[0], values.shape[1])
    x0, x1, wx = axis(size[1], values.shape[2])
    top = values[:, y0][:, :, x0] * (1 - wx) + values[:, y0][:, :, x1] * wx
    bottom = values[:, y1][:, :, x0] * (1 - wx) + values[:, y1][:, :, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def np_confusion(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    counted = target != IGNORE
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (target[counted], prediction[counted]), 1)
    return matrix


def np_mean_iou(matrix: np.ndarray) -> float:
    tp = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def np_loss_sum(logits: np.ndarray, target: np.ndarray) -> tuple[float, int]:
    """Summed cross-entropy over counted pixels and their number."""
    shifted = logits - logits.max(0)
    log_probs = shifted - np.log(np.exp(shifted).sum(0))
    counted = target != IGNORE
    rows, cols = np.nonzero(counted)
    return float(-log_probs[target[counted], rows, cols].sum()), int(counted.sum())


def np_ece(probabilities: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    confidence = probabilities.max(0)
    correct = probabilities.argmax(0) == target
    counted = target != IGNORE
    confidence, correct = confidence[counted], correct[counted]
    index = np.maximum(np.ceil(confidence * bins).astype(int) - 1, 0)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        total += abs(correct[in_bin].sum() - confidence[in_bin].sum())
    return total / counted.sum()


def write_folder(root, sizes: list[tuple[int, int]], seed: int = 0) -> SegmentationFolder:
    """Images whose class changes every few pixels (fine structure a nearest resize destroys)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        rows, cols = np.mgrid[0:h, 0:w]
        mask = ((rows // 2 + cols // 3 + i) % NUM_CLASSES).astype(np.uint8)
        mask[rng.random((h, w)) < 0.1] = IGNORE
        colours = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [128, 128, 128]], dtype=np.int64)
        image = colours[np.minimum(mask, NUM_CLASSES)] + rng.integers(-30, 30, (h, w, 3))
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{i}.png")
    return SegmentationFolder(root / "images", root / "masks", NUM_CLASSES, IGNORE)


def reference(model: PixelLinear, dataset: SegmentationFolder, eval_size: tuple[int, int]) -> dict:
    """Both protocols in numpy: at the label's resolution (``native``) and the old one, which
    resized the labels to ``eval_size`` with nearest neighbour (``resized_labels``)."""
    transform = eval_transforms(MEAN, STD, eval_size)
    native = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    resized = np.zeros_like(native)
    loss, pixels, probabilities, targets = 0.0, 0, [], []
    raw = SegmentationFolder(dataset.images_dir, dataset.masks_dir, NUM_CLASSES, IGNORE)
    for index in range(len(raw)):
        image, mask = raw[index]
        model_input, _ = transform(image, mask)
        low = model.numpy_logits(model_input.double().numpy())
        target = mask.numpy()
        logits = np_bilinear(low, target.shape)
        native += np_confusion(logits.argmax(0), target)
        item_loss, item_pixels = np_loss_sum(logits, target)
        loss, pixels = loss + item_loss, pixels + item_pixels
        exp = np.exp(logits - logits.max(0))
        probabilities.append((exp / exp.sum(0)).reshape(NUM_CLASSES, -1))
        targets.append(target.reshape(-1))
        # the old protocol: nearest-neighbour labels at eval_size, logits left at eval_size
        h, w = target.shape
        rows = np.floor(np.arange(eval_size[0]) * h / eval_size[0]).astype(int)
        cols = np.floor(np.arange(eval_size[1]) * w / eval_size[1]).astype(int)
        resized += np_confusion(low.argmax(0), target[rows][:, cols])
    ece = np_ece(np.concatenate(probabilities, 1)[:, None], np.concatenate(targets)[None])
    return {"native": native, "resized_labels": resized, "loss": loss / pixels, "ece": ece}


@pytest.fixture()
def model() -> PixelLinear:
    return PixelLinear().eval()


def test_eval_transforms_resize_the_image_and_keep_the_label(tmp_path):
    image = torch.randint(0, 256, (3, 12, 16), dtype=torch.uint8)
    mask = torch.randint(0, 3, (12, 16))
    out_image, out_mask = eval_transforms(MEAN, STD, (6, 8))(image, mask)
    assert out_image.shape == (3, 6, 8) and out_image.dtype == torch.float32
    assert torch.equal(out_mask, mask), "the label keeps its own resolution"
    both_image, both_mask = eval_transforms(MEAN, STD, (6, 8), resize_mask=True)(image, mask)
    assert torch.equal(both_image, out_image) and both_mask.shape == (6, 8)
    assert set(both_mask.unique().tolist()) <= set(mask.unique().tolist())


def test_evaluate_scores_logits_upsampled_to_the_label_like_numpy(tmp_path, model):
    dataset = write_folder(tmp_path, [(12, 16)] * 5)
    eval_size = (6, 8)
    expected = reference(model, dataset, eval_size)
    # the case tells the protocols apart: counting at eval_size gives other numbers
    assert expected["native"].sum() > 3 * expected["resized_labels"].sum()
    assert abs(np_mean_iou(expected["native"]) - np_mean_iou(expected["resized_labels"])) > 0.02

    dataset.transforms = eval_transforms(MEAN, STD, eval_size)
    loss, scores = evaluate(model, make_loader(dataset, 2, shuffle=False), IGNORE, detailed=True)  # batches 2 + 2 + 1
    np.testing.assert_array_equal(scores.confusion.numpy(), expected["native"])
    assert scores.mean_iou == pytest.approx(np_mean_iou(expected["native"]), abs=1e-12)
    assert loss == pytest.approx(expected["loss"], rel=1e-5)
    assert scores.ece == pytest.approx(expected["ece"], abs=1e-5)


def test_boundary_f1_is_scored_at_the_label_resolution(tmp_path, model):
    dataset = write_folder(tmp_path, [(12, 16)] * 3)
    raw = [dataset[i] for i in range(len(dataset))]
    dataset.transforms = eval_transforms(MEAN, STD, (6, 8))
    _, scores = evaluate(model, make_loader(dataset, 3, shuffle=False), IGNORE, detailed=True)
    upsampled, masks = [], []
    for image, mask in raw:
        low = model.numpy_logits(eval_transforms(MEAN, STD, (6, 8))(image, mask)[0].double().numpy())
        upsampled.append(torch.from_numpy(np_bilinear(low, tuple(mask.shape))))
        masks.append(mask)
    image_bf, _ = segzoo.boundary_f1(torch.stack(upsampled), torch.stack(masks), NUM_CLASSES, ignore_index=IGNORE)
    assert scores.bf_score == pytest.approx(image_bf.nanmean().item(), abs=1e-9)


def test_images_of_different_sizes_are_scored_each_at_its_own_size(tmp_path, model):
    """Mixed sizes need no padding and no batch size of 1: the evaluation loader keeps the labels
    as a list when their sizes differ, and each is scored at its own size."""
    dataset = write_folder(tmp_path, [(12, 16), (10, 14), (12, 16), (9, 20)])
    expected = reference(model, dataset, (6, 8))
    dataset.transforms = eval_transforms(MEAN, STD, (6, 8))
    loss, scores = evaluate(model, make_loader(dataset, 3, shuffle=False), IGNORE)
    np.testing.assert_array_equal(scores.confusion.numpy(), expected["native"])
    assert loss == pytest.approx(expected["loss"], rel=1e-5)
    # without eval_size the images differ too: each is run through the model on its own
    dataset.transforms = eval_transforms(MEAN, STD)
    _, full = evaluate(model, make_loader(dataset, 4, shuffle=False), IGNORE)
    total = sum(np_confusion(
        model.numpy_logits(dataset[i][0].double().numpy()).argmax(0), dataset[i][1].numpy()) for i in range(len(dataset))
    )  # fmt: skip
    np.testing.assert_array_equal(full.confusion.numpy(), total)


def test_segmentation_metrics_upsample_logits_to_the_labels(model):
    torch.manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 5, 7, dtype=torch.float64)
    masks = torch.randint(0, NUM_CLASSES, (2, 11, 13))
    metrics = segzoo.SegmentationMetrics(NUM_CLASSES, calibration=True)
    metrics.update(logits, masks)
    upsampled = np.stack([np_bilinear(item, (11, 13)) for item in logits.numpy()])
    expected = sum(np_confusion(u.argmax(0), m) for u, m in zip(upsampled, masks.numpy()))
    np.testing.assert_array_equal(metrics.compute().confusion.numpy(), expected)
    with pytest.raises(ValueError, match="labels"):
        metrics.update(logits.argmax(1), masks)  # labels cannot be interpolated


def test_evaluate_dataset_draws_predictions_at_the_label_resolution(tmp_path, model):
    dataset = write_folder(tmp_path / "data", [(12, 16)] * 2)
    dataset.transforms = eval_transforms(MEAN, STD, (6, 8))
    run = segzoo.io.run_description.RunDescription.for_model(model, dataset)
    scores, files = evaluate_dataset(model, dataset, run, tmp_path / "out", batch_size=2)
    assert scores.confusion.sum() == 2 * 12 * 16 - sum(int((dataset[i][1] == IGNORE).sum()) for i in range(2))
    gap = segzoo.viz._GAP
    with Image.open(files["predictions"]) as grid:
        assert grid.size == (3 * 16 + 2 * gap, 2 * 12 + gap)  # tiles drawn at the labels' 12x16, not 6x8


def test_predicted_masks_upsample_logits_like_the_scores(tmp_path):
    """``segzoo predict`` on a checkpoint trained at a reduced eval_size: the mask is the argmax of
    the logits upsampled bilinearly to the image (numpy), not a nearest-neighbour label map."""
    from segzoo.inference import predict_files
    from segzoo.io.checkpoint import save_checkpoint
    from segzoo.io.run_description import RunDescription

    torch.manual_seed(1)  # a model whose labels change across the image
    model = segzoo.SegNetBasic(NUM_CLASSES).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.fill_(0.05)  # sharper logits than a fresh model's
    run = RunDescription.for_model(model, data=segzoo.data.DataConfig(eval_size=(6, 8)))
    save_checkpoint(tmp_path / "model.pt", model, run=run.to_dict())
    image = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    predict_files(tmp_path / "model.pt", [tmp_path / "photo.png"], tmp_path / "out")
    resized = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(6, 8), mode="bilinear", antialias=True
    ).round().clamp(0, 255).to(torch.uint8)
    with torch.no_grad():
        low = model(model.prepare(resized))[0].double().numpy()
    expected = np_bilinear(low, (13, 17)).argmax(0)
    nearest = low.argmax(0)[np.arange(13) * 6 // 13][:, np.arange(17) * 8 // 17]
    assert (expected != nearest).sum() > 10, "the case tells bilinear logits from nearest labels"
    with Image.open(tmp_path / "out" / "photo_mask.png") as written:
        np.testing.assert_array_equal(np.array(written), expected)
