"""Images are read as a viewer shows them: EXIF orientation applied (training, validation, prediction),
16-bit images scaled to 8 bits, images without a defined range refused; the CamVid layout refuses
class settings it would ignore."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from support.camvid import make_tiny_camvid

import segzoo
from segzoo.data import CamVid, SegmentationFolder, open_split, open_splits
from segzoo.data.folder import image_to_tensor

ORIENTATION = 0x0112


def _oriented(path, pixels, orientation, **save):
    """Save ``pixels`` (H, W, 3 as stored) with an EXIF orientation tag; return what a viewer shows."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **save)
    with Image.open(path) as image:
        return np.array(ImageOps.exif_transpose(image))


def _folder(root, split, images):
    """``root/split/{images,masks}``: each image with a mask of its displayed size (class = row band)."""
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    shown = {}
    for name, (pixels, orientation) in images.items():
        path = root / split / "images" / f"{name}.png"
        if orientation is None:
            Image.fromarray(pixels).save(path)
            shown[name] = pixels
        else:
            shown[name] = _oriented(path, pixels, orientation)
        h, w = shown[name].shape[:2]
        mask = (np.arange(h)[:, None] * 3 // h).repeat(w, axis=1).astype(np.uint8)
        Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{name}.png")
    return shown


RNG = np.random.default_rng(0)
PORTRAIT_PHONE_PHOTO = RNG.integers(0, 256, (8, 12, 3), dtype=np.uint8)  # stored landscape, shown portrait


@pytest.mark.parametrize("orientation", [3, 6, 8, 5])
def test_training_and_validation_images_are_oriented_as_shown(tmp_path, orientation):
    images = {"phone": (PORTRAIT_PHONE_PHOTO, orientation), "plain": (RNG.integers(0, 256, (12, 8, 3), dtype=np.uint8), None)}
    shown = _folder(tmp_path, "train", images)
    _folder(tmp_path, "val", images)
    for dataset in open_splits(tmp_path, "folder", num_classes=3):
        for index, (image_path, _) in enumerate(dataset.samples):
            image, mask = dataset[index]
            assert torch.equal(image, torch.from_numpy(shown[image_path.stem]).permute(2, 0, 1))
            assert image.shape[1:] == mask.shape


def test_a_mask_is_compared_with_the_image_as_shown(tmp_path):
    """A mask drawn on the stored (unrotated) pixels no longer fits the rotated photo: the size check
    compares sizes after orientation."""
    _folder(tmp_path, "train", {"phone": (PORTRAIT_PHONE_PHOTO, 6)})
    Image.fromarray(np.zeros((8, 12), np.uint8), mode="L").save(tmp_path / "train" / "masks" / "phone.png")
    with pytest.raises(ValueError, match=r"8x12 but its mask .* is 12x8"):
        open_split(tmp_path, "folder", "train", num_classes=3)


def test_a_jpeg_phone_photo_is_oriented_by_image_to_tensor_and_predict(tmp_path):
    shown = _oriented(tmp_path / "photo.jpg", PORTRAIT_PHONE_PHOTO, 6, quality=95)
    with Image.open(tmp_path / "photo.jpg") as image:
        assert torch.equal(image_to_tensor(image), torch.from_numpy(shown).permute(2, 0, 1))
        torch.manual_seed(0)
        model = segzoo.SegNetBasic(3)
        assert torch.equal(model.predict(image), model.predict(shown))
        assert model.predict(image).shape == (1, 12, 8)


# ---- bit depth ----


def test_16_bit_images_are_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32767, 32768, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode == "I;16"
        pixels = image_to_tensor(image)
    expected = np.round(values / 257).astype(np.uint8)  # 0..65535 onto 0..255
    assert torch.equal(pixels, torch.from_numpy(np.repeat(expected[None], 3, axis=0)))
    assert pixels[0, 0].tolist() == [0, 1, 127, 128, 255, 4]


def test_32_bit_integer_images_within_16_bits_are_read_as_16_bit():
    image = Image.fromarray(np.array([[0, 65535, 257]], dtype=np.int32))
    assert image.mode == "I"
    assert image_to_tensor(image)[0, 0].tolist() == [0, 255, 1]


@pytest.mark.parametrize(
    ("pixels", "mention"),
    [
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "'F'"),
        (np.array([[-1, 70000]], dtype=np.int32), "'I'"),
    ],
)
def test_images_without_a_defined_range_are_refused(tmp_path, pixels, mention):
    image = Image.fromarray(pixels)
    with pytest.raises(ValueError, match=mention):
        image_to_tensor(image)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=mention):
        segzoo.SegNetBasic(3).predict(image)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image.save(tmp_path / "images" / "x.tif")
    Image.fromarray(np.zeros(pixels.shape, np.uint8), mode="L").save(tmp_path / "masks" / "x.png")
    with pytest.raises(ValueError, match=mention):
        SegmentationFolder(tmp_path / "images", tmp_path / "masks", 3)


# ---- CamVid's fixed classes ----


def _camvid(root):
    return make_tiny_camvid(root, (4, 6))


@pytest.mark.parametrize(
    ("num_classes", "ignore_index", "mention"), [(5, None, "num_classes"), (None, 255, "ignore_index"), (12, 11, "num_classes")]
)
def test_the_camvid_layout_refuses_class_settings_it_would_ignore(tmp_path, num_classes, ignore_index, mention):
    with pytest.raises(ValueError, match=mention) as info:
        open_splits(_camvid(tmp_path), "camvid", num_classes=num_classes, ignore_index=ignore_index)
    assert "camvid" in str(info.value).lower() and "\n" not in str(info.value)


def test_the_camvid_layout_accepts_its_own_settings(tmp_path):
    train, _ = open_splits(_camvid(tmp_path), "camvid", num_classes=11, ignore_index=11)
    assert isinstance(train, CamVid) and train.num_classes == 11 and train.ignore_index == 11
