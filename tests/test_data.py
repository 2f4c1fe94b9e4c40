"""segzoo.data: folder datasets and their build-time checks, CamVid, VOC, synthetic shapes, transforms
(also under hostile input, with hypothesis)."""

import importlib.util
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from support.properties import CASES, assert_accepted, assert_rejected, assert_works_or_clear_error, one_thread

from segzoo.data import (
    CamVid,
    SegmentationFolder,
    SyntheticShapes,
    VOCSegmentation,
    denormalize,
    eval_transforms,
    train_transforms,
)
from segzoo.labels import PAD_LABEL

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision not installed")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _rgb(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


def _palette_mask(labels: np.ndarray) -> Image.Image:
    mask = Image.fromarray(labels.astype(np.uint8), mode="P")
    # a palette that maps indices to unrelated colours, so reading colours instead of indices would show
    mask.putpalette([(7 * i) % 256 for i in range(768)])
    return mask


def _files(root: Path, images: list[str], masks: list[str], seed: int) -> None:
    """Random 4x4 RGB images and all-zero masks under ROOT/images and ROOT/masks, by file name."""
    rng = np.random.default_rng(seed)
    for name in images:
        _save(root / "images" / name, _rgb(rng, 4, 4))
    for name in masks:
        _save(root / "masks" / name, np.zeros((4, 4), np.uint8))


def _folder(tmp_path, pairs, num_classes=4, **kwargs):
    """Write ``(image_name, image_array, mask_array)`` triples (masks as <stem>.png) and build the dataset."""
    for image_name, image, mask in pairs:
        _save(tmp_path / "images" / image_name, image)
        _save(tmp_path / "masks" / (Path(image_name).stem + ".png"), mask)
    return SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=num_classes, **kwargs)


# ---- SegmentationFolder: happy path ----------------------------------------------------------------


def test_folder_round_trips_values_and_pairs_by_stem_in_sorted_order(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    # lossless formats with mixed, upper-case extensions; written out of order on purpose
    for stem, ext, (height, width) in [("c", ".BMP", (10, 14)), ("a", ".png", (12, 9)), ("b", ".tif", (8, 8))]:
        image, mask = _rgb(rng, height, width), rng.integers(0, 5, (height, width), dtype=np.uint8)
        _save(tmp_path / "images" / f"{stem}{ext}", image)
        _save(tmp_path / "masks" / f"{stem}.png", mask)
        written[stem] = (image, mask)
    (tmp_path / "images" / "notes.txt").write_text("not an image, ignored")
    ds = SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=5)

    assert len(ds) == 3
    assert [image.stem for image, _ in ds.samples] == ["a", "b", "c"]
    assert [mask.name for _, mask in ds.samples] == ["a.png", "b.png", "c.png"]
    for i, stem in enumerate("abc"):
        image, mask = ds[i]
        assert image.dtype == torch.uint8 and mask.dtype == torch.int64
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), written[stem][0])
        np.testing.assert_array_equal(mask.numpy(), written[stem][1])
    assert ds.num_classes == 5 and ds.ignore_index is None and ds.class_names == ("0", "1", "2", "3", "4")


def test_folder_jpeg_image_with_png_mask(tmp_path):
    image = np.full((16, 20, 3), (200, 40, 90), dtype=np.uint8)
    mask = np.zeros((16, 20), dtype=np.uint8)
    mask[4:10, 5:15] = 2
    ds = _folder(tmp_path, [("x.jpg", image, mask)], num_classes=3)
    got_image, got_mask = ds[0]
    assert ds.samples[0][0].name == "x.jpg"
    assert got_image.shape == (3, 16, 20)
    assert (got_image.int() - torch.tensor([200, 40, 90]).view(3, 1, 1)).abs().max() <= 3  # JPEG is lossy
    np.testing.assert_array_equal(got_mask.numpy(), mask)


def test_folder_converts_gray_and_rgba_images_to_rgb(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    rgba = np.dstack([_rgb(np.random.default_rng(1), 6, 8), np.full((6, 8), 128, np.uint8)])
    _save(tmp_path / "images" / "gray.png", gray)
    _save(tmp_path / "images" / "rgba.png", rgba)
    for stem in ("gray", "rgba"):
        _save(tmp_path / "masks" / f"{stem}.png", np.zeros((6, 8), np.uint8))
    ds = SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=1)
    gray_image, _ = ds[0]
    rgba_image, _ = ds[1]
    assert gray_image.shape == rgba_image.shape == (3, 6, 8)
    for channel in gray_image:
        np.testing.assert_array_equal(channel.numpy(), gray)
    np.testing.assert_array_equal(rgba_image.permute(1, 2, 0).numpy(), rgba[..., :3])


def test_folder_reads_palette_masks_as_indices_and_keeps_ignore_index(tmp_path):
    labels = np.array([[0, 1, 2, 255], [2, 2, 255, 1]], dtype=np.uint8)
    _save(tmp_path / "images" / "p.png", _rgb(np.random.default_rng(2), 2, 4))
    (tmp_path / "masks").mkdir()
    _palette_mask(labels).save(tmp_path / "masks" / "p.png")
    ds = SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=3, ignore_index=255)
    np.testing.assert_array_equal(ds[0][1].numpy(), labels)


def test_folder_applies_transforms(tmp_path):
    ds = _folder(tmp_path, [("a.png", _rgb(np.random.default_rng(3), 4, 4), np.ones((4, 4), np.uint8))], num_classes=2)
    flipped = SegmentationFolder(ds.images_dir, ds.masks_dir, num_classes=2, transforms=lambda i, m: (i.flip(-1), m + 1))
    image, mask = ds[0]
    t_image, t_mask = flipped[0]
    assert torch.equal(t_image, image.flip(-1)) and torch.equal(t_mask, mask + 1)


# ---- SegmentationFolder: every build-time error names the file --------------------------------------


def test_folder_missing_folders(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="images folder .*nope"):
        SegmentationFolder(tmp_path / "nope", tmp_path / "images", num_classes=2)
    with pytest.raises(FileNotFoundError, match="masks folder .*gone"):
        SegmentationFolder(tmp_path / "images", tmp_path / "gone", num_classes=2)


def test_folder_no_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found in .*images"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)


def test_folder_image_without_mask_and_mask_without_image(tmp_path):
    _files(tmp_path, images=["both.png", "lonely.jpg"], masks=["both.png"], seed=4)
    with pytest.raises(ValueError, match=r"1 image\(s\) in .* have no mask .*lonely\.jpg"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)
    (tmp_path / "images" / "lonely.jpg").unlink()
    _save(tmp_path / "masks" / "stray.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"mask\(s\) in .* have no image .*stray\.png"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)


def test_folder_lists_only_a_few_unmatched_files(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(9):
        _save(tmp_path / "images" / f"img{i}.png", _rgb(rng, 2, 2))
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match=r"9 image\(s\).*img0\.png, img1\.png.*\(4 more\)") as info:
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)
    assert "img8.png" not in str(info.value)


def test_folder_duplicate_stems_are_ambiguous(tmp_path):
    _files(tmp_path, images=["a.png", "a.jpg"], masks=["a.png"], seed=6)
    with pytest.raises(ValueError, match=r"a\.jpg and .*a\.png share the stem 'a'"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)


@pytest.mark.parametrize("corrupt", ["garbage", "truncated"])
def test_folder_unreadable_image(tmp_path, corrupt):
    rng = np.random.default_rng(7)
    _folder(tmp_path, [("good.png", _rgb(rng, 16, 16), np.zeros((16, 16), np.uint8))], num_classes=2)
    bad = _save(tmp_path / "images" / "bad.png", _rgb(rng, 16, 16))
    bad.write_bytes(b"this is not an image" if corrupt == "garbage" else bad.read_bytes()[:-40])
    _save(tmp_path / "masks" / "bad.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match=r"(?s)1 of 2 .*cannot read image .*bad\.png"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)


def test_folder_unreadable_mask(tmp_path):
    _folder(tmp_path, [("m.png", _rgb(np.random.default_rng(8), 4, 4), np.zeros((4, 4), np.uint8))], num_classes=2)
    (tmp_path / "masks" / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=r"cannot read mask .*m\.png"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)


def test_folder_size_mismatch_names_both_sizes(tmp_path):
    rng = np.random.default_rng(9)
    _save(tmp_path / "images" / "s.png", _rgb(rng, 24, 32))
    _save(tmp_path / "masks" / "s.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(ValueError, match=r"image .*s\.png is 32x24 but its mask .*s\.png is 16x12"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=2)


def test_folder_mask_values_out_of_range(tmp_path):
    mask = np.array([[0, 1, 7], [3, 255, 9]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"mask .*v\.png holds values outside \[0, 4\) or ignore_index=255: 7 \(1 pixels\), 9 \(1 pixels\)$"):
        _folder(tmp_path, [("v.png", _rgb(np.random.default_rng(10), 2, 3), mask)], num_classes=4, ignore_index=255)
    with pytest.raises(ValueError, match=r"holds values outside \[0, 4\): 7 \(1 pixels\), 9 \(1 pixels\), 255 \(1 pixels\)"):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", num_classes=4)


def test_folder_rejects_rgb_masks(tmp_path):
    colour_mask = np.zeros((4, 4, 3), np.uint8)
    colour_mask[:2] = (128, 64, 128)  # a CamVid-style colour-coded label
    with pytest.raises(ValueError, match=r"mask .*road\.png is an RGB colour mask; give a colour table \(--palette"):
        _folder(tmp_path, [("road.png", _rgb(np.random.default_rng(11), 4, 4), colour_mask)], num_classes=2)


def test_folder_reports_every_bad_pair_at_once(tmp_path):
    rng = np.random.default_rng(12)
    pairs = [(f"{i}.png", _rgb(rng, 4, 4), np.full((4, 4), 9 if i % 2 else 0, np.uint8)) for i in range(4)]
    with pytest.raises(ValueError, match=r"2 of 4 image/mask pairs") as info:
        _folder(tmp_path, pairs, num_classes=2)
    assert "1.png" in str(info.value) and "3.png" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 0}, ValueError, "num_classes must be an int >= 1"),
        ({"num_classes": 2, "class_names": ["a"]}, ValueError, "class_names has 1 entries, expected num_classes=2"),
        ({"num_classes": 2, "ignore_index": 1.5}, TypeError, "ignore_index must be an int or None"),
        ({"num_classes": 2, "transforms": "flip"}, TypeError, "transforms must be a callable"),
    ],
)
def test_folder_argument_errors(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        SegmentationFolder(tmp_path, tmp_path, **kwargs)


# ---- CamVid --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid data not found at {CAMVID}")
def test_camvid_real_data():
    train, val = CamVid(CAMVID, "train"), CamVid(CAMVID, split="val")
    assert (len(train), len(val)) == (367, 101)
    assert train.num_classes == 11 and train.ignore_index == 11
    assert train.class_names == (
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
        "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    )  # fmt: skip
    for ds, index in ((train, 0), (val, 100)):
        image, mask = ds[index]
        assert image.shape == (3, 360, 480) and image.dtype == torch.uint8
        assert mask.shape == (360, 480) and mask.dtype == torch.int64
        assert 0 <= int(mask.min()) and int(mask.max()) <= 11
        assert ds.samples[index][0].name == ds.samples[index][1].name
    with pytest.raises(ValueError, match=r"split 'test' not found .*splits present: \['train', 'val'\]"):
        CamVid(CAMVID, "test")


def test_camvid_layout_and_errors(tmp_path):
    rng = np.random.default_rng(13)
    _save(tmp_path / "train" / "f1.png", _rgb(rng, 6, 8))
    _save(tmp_path / "trainannot" / "f1.png", np.array([[0, 11, 10, 3] * 2] * 6, np.uint8))
    image, mask = CamVid(tmp_path)[0]
    assert image.shape == (3, 6, 8) and set(mask.unique().tolist()) == {0, 3, 10, 11}
    with pytest.raises(ValueError, match=r"split 'val' not found .*val/ and valannot/.*\['train'\]"):
        CamVid(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match="CamVid root .*missing"):
        CamVid(tmp_path / "missing")


# ---- transforms -------------------------------------------------------------------------------------


def _blocky_pair(generator, height=96, width=128, block=16, labels=12):
    """A mask of constant blocks and an image whose channel 0 encodes the label as label * 20."""
    coarse = torch.randint(0, labels, (height // block, width // block), generator=generator)
    mask = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)
    image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
    image[0] = (mask * 20).to(torch.uint8)
    return image, mask


def _interior(mask, radius):
    """Pixels whose (2 radius + 1)^2 neighbourhood holds one label, away from resampling blur."""
    padded = torch.nn.functional.pad(mask[None, None].float(), (radius,) * 4, mode="replicate")
    window = 2 * radius + 1
    high = torch.nn.functional.max_pool2d(padded, window, stride=1)[0, 0]
    low = -torch.nn.functional.max_pool2d(-padded, window, stride=1)[0, 0]
    return high == low


@needs_torchvision
def test_train_transforms_never_interpolate_labels():
    generator = torch.Generator().manual_seed(0)
    # 20 labels with gaps between them, so an interpolated label would be a value not in the input
    labels = torch.arange(0, 250, 13)
    mask = labels[torch.randint(0, len(labels), (50, 70), generator=generator)]  # every pixel a boundary
    image = torch.randint(0, 256, (3, 50, 70), generator=generator, dtype=torch.uint8)
    transform = train_transforms((64, 64), MEAN, STD, scale=(0.5, 2.0))
    torch.manual_seed(0)
    seen_padding = False
    for _ in range(10):
        _, out = transform(image, mask)
        values = set(out.unique().tolist())
        assert values <= set(mask.unique().tolist()) | {PAD_LABEL}
        seen_padding |= PAD_LABEL in values
    assert seen_padding  # scales below 64/70 leave the crop partly padded with PAD_LABEL


@needs_torchvision
@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.5, 2.0)])
def test_train_transforms_move_image_and_mask_together(scale):
    torch.manual_seed(1)
    transform = train_transforms((80, 80), MEAN, STD, scale=scale)
    checked = 0
    for seed in range(8):
        image, mask = _blocky_pair(torch.Generator().manual_seed(seed))
        out_image, out_mask = transform(image, mask)
        encoded = denormalize(out_image, MEAN, STD)[0].long()
        labelled = out_mask != PAD_LABEL
        if scale == (1.0, 1.0):
            check = labelled  # no resampling: every pixel must match
        else:
            # resampling blurs the image (bilinear) but not the mask (nearest), so only block interiors compare
            check = labelled & _interior(torch.where(labelled, out_mask, -1), radius=2)
        assert torch.equal(encoded[check], out_mask[check] * 20)
        checked += int(check.sum())
    assert checked > 8 * 80 * 80 // 4


@needs_torchvision
def test_train_transforms_pad_masks_with_pad_label_never_a_class():
    """A crop larger than the image: the padded area is exactly PAD_LABEL (-1) and black, the rest is
    the original labels and pixels, at the offset the crop chose (found from the image)."""
    image = torch.full((3, 10, 10), 200, dtype=torch.uint8)
    mask = torch.arange(100).view(10, 10) % 7  # class 0 appears: padding must never read as it
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out_mask = train_transforms((20, 16), (0.0,) * 3, (1.0,) * 3, scale=(1.0, 1.0), hflip=False)(image, mask)
        inside = out_image[0] > 0.5  # the image's own pixels (200 / 255), the padding is 0
        rows, cols = inside.any(1).nonzero().flatten(), inside.any(0).nonzero().flatten()
        top, left = int(rows[0]), int(cols[0])
        assert (len(rows), len(cols)) == (10, 10)
        assert torch.equal(out_mask[top : top + 10, left : left + 10], mask)
        assert bool((out_mask[~inside] == PAD_LABEL).all()) and int((out_mask == PAD_LABEL).sum()) == 20 * 16 - 100
        assert torch.equal(out_image[:, ~inside], torch.zeros(3, 20 * 16 - 100))


@needs_torchvision
def test_transforms_output_types_and_shapes():
    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)
    mask = torch.randint(0, 5, (37, 53)) * 50  # gaps between labels expose any interpolation
    outputs = {
        "train": (train_transforms((32, 48), MEAN, STD)(image, mask), (32, 48)),
        "eval": (eval_transforms(MEAN, STD)(image, mask), (37, 53)),
        "eval_resized": (eval_transforms(MEAN, STD, size=(20, 30), resize_mask=True)(image, mask), (20, 30)),
    }
    for name, ((out_image, out_mask), size) in outputs.items():
        assert type(out_image) is torch.Tensor and type(out_mask) is torch.Tensor, name
        assert out_image.dtype == torch.float32 and out_image.shape == (3, *size), name
        assert out_mask.dtype == torch.int64 and out_mask.shape == size, name
    assert torch.equal(eval_transforms(MEAN, STD, size=(20, 30))(image, mask)[1], mask), "labels keep their resolution"
    resized_mask = outputs["eval_resized"][0][1]
    assert set(resized_mask.unique().tolist()) <= set(mask.unique().tolist())


@needs_torchvision
def test_eval_transforms_normalise_like_an_independent_computation():
    image = torch.randint(0, 256, (3, 9, 11), dtype=torch.uint8)
    mask = torch.randint(0, 3, (9, 11))
    out_image, out_mask = eval_transforms(MEAN, STD)(image, mask)
    expected = (image.double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        STD, dtype=torch.float64
    ).view(3, 1, 1)
    torch.testing.assert_close(out_image.double(), expected, rtol=0, atol=1e-5)
    assert torch.equal(out_mask, mask)


@needs_torchvision
def test_denormalize_inverts_normalisation():
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    normalised, _ = eval_transforms(MEAN, STD)(image, torch.zeros(16, 16, dtype=torch.int64))
    restored = denormalize(normalised, MEAN, STD)
    assert restored.dtype == torch.uint8 and restored.shape == image.shape
    assert (restored.int() - image.int()).abs().max() <= 1
    batch = denormalize(normalised[None].repeat(2, 1, 1, 1), MEAN, STD)
    assert torch.equal(batch[1], restored)


def test_denormalize_clamps_and_checks_input():
    out = denormalize(torch.tensor([-10.0, 0.5, 10.0]).view(3, 1, 1), (0.5,) * 3, (0.5,) * 3)
    assert out.flatten().tolist() == [0, 191, 255]
    with pytest.raises(TypeError, match="float image"):
        denormalize(torch.zeros(3, 2, 2, dtype=torch.uint8), MEAN, STD)
    with pytest.raises(ValueError, match="3 values"):
        denormalize(torch.zeros(3, 2, 2), (0.5, 0.5), STD)


@needs_torchvision
def test_transforms_pickle_for_dataloader_workers():
    image, mask = _blocky_pair(torch.Generator().manual_seed(0))
    transform = train_transforms((64, 64), MEAN, STD)
    copy = pickle.loads(pickle.dumps(transform))
    torch.manual_seed(5)
    expected = transform(image, mask)
    torch.manual_seed(5)
    got = copy(image, mask)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@needs_torchvision
def test_transform_argument_errors():
    with pytest.raises(ValueError, match="crop_size must be"):
        train_transforms(64, MEAN, STD)
    with pytest.raises(ValueError, match="scale must be"):
        train_transforms((64, 64), MEAN, STD, scale=(2.0, 0.5))
    with pytest.raises(ValueError, match="std must be positive"):
        eval_transforms(MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(TypeError, match="image must be uint8"):
        eval_transforms(MEAN, STD)(torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="mask must be"):
        eval_transforms(MEAN, STD)(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(4, 5, dtype=torch.int64))


# ---- SyntheticShapes ----------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed_and_index():
    first, second = SyntheticShapes(16, seed=3), SyntheticShapes(16, seed=3)
    forward = [first[i] for i in range(16)]
    backward = [second[i] for i in reversed(range(16))][::-1]
    for (image_a, mask_a), (image_b, mask_b) in zip(forward, backward):
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    assert torch.equal(first[-1][0], forward[15][0])
    assert not torch.equal(SyntheticShapes(16, seed=4)[0][0], forward[0][0])
    assert not torch.equal(forward[0][1], forward[1][1])


def test_synthetic_contract():
    ds = SyntheticShapes(5, size=(48, 80))
    assert len(ds) == 5
    assert ds.num_classes == 4 and ds.ignore_index is None
    assert ds.class_names == ("background", "disc", "square", "triangle")
    image, mask = ds[4]
    assert image.shape == (3, 48, 80) and image.dtype == torch.uint8
    assert mask.shape == (48, 80) and mask.dtype == torch.int64
    assert 0 <= int(mask.min()) and int(mask.max()) <= 3
    with pytest.raises(IndexError):
        ds[5]
    assert len(list(ds)) == 5  # iteration stops at IndexError
    transformed = SyntheticShapes(5, size=(48, 80), transforms=lambda i, m: (i.float(), m.flip(0)))[4]
    assert torch.equal(transformed[0], image.float()) and torch.equal(transformed[1], mask.flip(0))


@pytest.mark.parametrize(
    "kwargs", [{"num_images": 0}, {"size": (8, 64)}, {"size": 64}, {"seed": -1}, {"num_images": 2.5}]
)
def test_synthetic_argument_errors(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SyntheticShapes(**kwargs)


def test_synthetic_every_class_appears_and_most_images_hold_all():
    masks = [SyntheticShapes(16)[i][1] for i in range(16)]
    assert set(torch.cat([m.flatten() for m in masks]).unique().tolist()) == {0, 1, 2, 3}
    assert sum(len(m.unique()) == 4 for m in masks) >= 10
    foreground = torch.stack([(m > 0).float().mean() for m in masks])
    assert 0.1 < float(foreground.mean()) < 0.6  # shapes are large enough to learn, background still dominant


def test_synthetic_class_is_not_predictable_from_colour():
    ds = SyntheticShapes(48, seed=1)
    colours, labels = [], []
    for i in range(len(ds)):
        image, mask = ds[i]
        shape = mask > 0
        colours.append(image[:, shape].T.float())
        labels.append(mask[shape])
    # per image, the mean colour of one class varies as much as uniformly random colours would
    for label in (1, 2, 3):
        means = torch.stack([c[y == label].mean(0) for c, y in zip(colours, labels) if (y == label).any()])
        assert float(means.std(0).min()) > 45
    # a nearest-centroid colour classifier fit on half the images is near chance on the other half
    fit_colours, fit_labels = torch.cat(colours[:24]), torch.cat(labels[:24])
    centroids = torch.stack([fit_colours[fit_labels == label].mean(0) for label in (1, 2, 3)])
    test_colours, test_labels = torch.cat(colours[24:]), torch.cat(labels[24:])
    predicted = torch.cdist(test_colours, centroids).argmin(1) + 1
    majority = float(torch.bincount(test_labels).max()) / len(test_labels)
    assert float((predicted == test_labels).float().mean()) < majority + 0.1


# ---- VOCSegmentation ----------------------------------------------------------------------------------


@needs_torchvision
def test_voc_wraps_torchvision_layout(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    labels = np.zeros((20, 30), np.uint8)
    labels[2:8, 3:12] = 15
    labels[10:18, 14:28] = 7
    labels[1, :] = 255
    image = np.full((20, 30, 3), 128, np.uint8)
    _save(voc / "JPEGImages" / "x.jpg", image)
    (voc / "SegmentationClass").mkdir(parents=True)
    _palette_mask(labels).save(voc / "SegmentationClass" / "x.png")
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("x\n")

    ds = VOCSegmentation(tmp_path, transforms=lambda i, m: (i, m))
    assert len(ds) == 1 and ds.num_classes == 21 and ds.ignore_index == 255
    assert len(ds.class_names) == 21 and ds.class_names[0] == "background" and ds.class_names[15] == "person"
    got_image, got_mask = ds[0]
    assert got_image.shape == (3, 20, 30) and got_image.dtype == torch.uint8
    assert (got_image.int() - 128).abs().max() <= 2
    assert got_mask.dtype == torch.int64
    np.testing.assert_array_equal(got_mask.numpy(), labels)
    with pytest.raises(FileNotFoundError, match=r"split list .*val\.txt not found; image sets present: \['train'\]"):
        VOCSegmentation(tmp_path, image_set="val")


@needs_torchvision
def test_voc_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOCdevkit folder in .*segzoo does not download it"):
        VOCSegmentation(tmp_path)


# ---- optional torchvision ---------------------------------------------------------------------------


def test_datasets_import_and_work_without_torchvision(tmp_path):
    _folder(tmp_path, [("a.png", _rgb(np.random.default_rng(14), 5, 6), np.ones((5, 6), np.uint8))], num_classes=2)
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torchvision"] = None  # any import of torchvision now raises ImportError
        import segzoo
        import segzoo.data
        image, mask = segzoo.data.SyntheticShapes(4)[3]
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
        image, mask = segzoo.data.SegmentationFolder(sys.argv[1], sys.argv[2], num_classes=2)[0]
        assert image.shape == (3, 5, 6) and int(mask.sum()) == 30
        try:
            segzoo.data.train_transforms((4, 4), (0.5,) * 3, (0.5,) * 3)
        except ImportError:
            print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "images"), str(tmp_path / "masks")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_synthetic_class_textures_mark_only_the_shapes_with_their_class_pattern():
    """class_textures adds one square-wave pattern per class inside shapes, nothing elsewhere,
    and leaves the random layout (masks) unchanged."""
    plain, textured = SyntheticShapes(8, (64, 64), seed=3), SyntheticShapes(8, (64, 64), seed=3, class_textures=True)
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    wave = lambda t: torch.where((t.floor() % 4) < 2, 1.0, -1.0)  # noqa: E731
    patterns = {1: wave(xs) * wave(ys), 2: wave(xs + ys), 3: wave(xs)}
    for i in range(8):
        (image, mask), (image_t, mask_t) = plain[i], textured[i]
        assert torch.equal(mask, mask_t)
        difference = image_t.float() - image.float()
        assert torch.equal(difference[:, mask == 0], torch.zeros_like(difference[:, mask == 0]))
        for label, pattern in patterns.items():
            inside = mask == label
            if inside.sum() < 20:
                continue
            moved = difference.mean(0)[inside]
            agrees = (moved.sign() == pattern[inside]).float()[moved != 0]  # clamped pixels do not move
            assert agrees.mean() > 0.95, (i, label)


# ---- property tests: transforms ----

@one_thread
@settings(max_examples=15, **CASES)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    crop=st.tuples(st.integers(1, 14), st.integers(1, 14)),
    seed=st.integers(0, 2**31),
)
def test_train_transforms_move_image_and_mask_together_and_invent_nothing(h, w, crop, seed):
    """Without rescaling, every output (pixel, label) pair is an input pair or padding: the crop and
    flip move both alike, no label is invented, and denormalize undoes the normalisation exactly."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)
    mask = torch.randint(0, 4, (h, w), generator=generator)
    torch.manual_seed(seed)  # the transforms draw from the global generator
    out_image, out_mask = train_transforms(crop, tuple(MEAN), tuple(STD), scale=(1.0, 1.0))(image, mask)
    assert out_image.shape == (3, *crop) and out_mask.shape == crop
    assert (out_image.dtype, out_mask.dtype) == (torch.float32, torch.int64)
    pixels = denormalize(out_image, MEAN, STD)
    pairs = lambda img, labels: set(zip(map(tuple, img.flatten(1).T.tolist()), labels.flatten().tolist()))  # noqa: E731
    padding = {((0, 0, 0), PAD_LABEL)}
    assert pairs(pixels, out_mask) <= pairs(image, mask) | padding


@one_thread
@settings(max_examples=15, **CASES)
@given(
    image=st.sampled_from(["float", "5-channel", "grey", "array"]),
    mask=st.sampled_from(["ok", "float", "wrong size"]),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
)
def test_transforms_refuse_what_is_not_a_uint8_image_and_integer_mask(image, mask, h, w):
    images = {
        "float": torch.zeros(3, h, w),
        "5-channel": torch.zeros(5, h, w, dtype=torch.uint8),
        "grey": torch.zeros(h, w, dtype=torch.uint8),
        "array": np.zeros((3, h, w), np.uint8),
    }
    masks = {
        "ok": torch.zeros(h, w, dtype=torch.int64),
        "float": torch.zeros(h, w),
        "wrong size": torch.zeros(h + 1, w, dtype=torch.int64),
    }
    transform = train_transforms((2, 2), tuple(MEAN), tuple(STD))
    result = assert_works_or_clear_error(lambda: transform(images[image], masks[mask]))
    assert isinstance(result, (TypeError, ValueError)), "no hostile pair may pass"
    denormalized = assert_works_or_clear_error(lambda: denormalize(torch.as_tensor(images[image]), MEAN, STD))
    if image == "float":
        assert_accepted(denormalized)
    else:
        assert_rejected(denormalized, TypeError, "float")
