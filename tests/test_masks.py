"""Mask files of every kind through a dataset: modes, label maps, colour tables, and the errors
that stop a dataset at build naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segzoo.data import ColourTable, LabelMap, SegmentationFolder
from segzoo.data.masks import read_mask


def _pair(root: Path, stem: str, mask: Image.Image, rng=np.random.default_rng(0)) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (mask.height, mask.width, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
    mask.save(root / "masks" / f"{stem}.png")


def _dataset(root: Path, **kwargs) -> SegmentationFolder:
    return SegmentationFolder(root / "images", root / "masks", **kwargs)


def test_binary_0_255_masks_through_a_label_map(tmp_path):
    values = np.array([[0, 255, 255], [0, 0, 255]], dtype=np.uint8)
    _pair(tmp_path, "a", Image.fromarray(values))
    ds = _dataset(tmp_path, label_map=LabelMap.from_mapping({0: 0, 255: 1}))
    assert ds.num_classes == 2 and ds.ignore_index is None and ds.label_map.pairs == ((0, 0), (255, 1))
    assert ds[0][1].tolist() == (values // 255).tolist()


def test_one_bit_masks_read_as_0_and_255(tmp_path):
    values = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    _pair(tmp_path, "a", Image.fromarray(values))  # mode "1"
    assert Image.open(tmp_path / "masks" / "a.png").mode == "1"
    ds = _dataset(tmp_path, label_map=LabelMap.from_mapping({0: 0, 255: 1}))
    assert ds[0][1].tolist() == values.astype(int).tolist()


def test_sixteen_bit_class_index_masks(tmp_path):
    values = np.array([[0, 300, 1000], [1000, 0, 300]], dtype=np.uint16)
    _pair(tmp_path, "a", Image.fromarray(values))
    assert Image.open(tmp_path / "masks" / "a.png").mode.startswith("I")
    ds = _dataset(tmp_path, label_map=LabelMap.from_mapping({0: 0, 300: 1, 1000: 2}))
    assert ds[0][1].tolist() == [[0, 1, 2], [2, 0, 1]]
    with pytest.raises(ValueError, match=r"holds values outside \[0, 3\): 300 \(2 pixels\), 1000 \(2 pixels\)"):
        _dataset(tmp_path, num_classes=3)  # without the map, 16-bit values are class indices as they are
    Image.fromarray(values // 300).save(tmp_path / "masks" / "a.png")
    assert _dataset(tmp_path, num_classes=4)[0][1].tolist() == (values // 300).astype(int).tolist()


def test_palette_masks_use_the_index_not_the_colour(tmp_path):
    mask = Image.fromarray(np.array([[0, 1], [2, 255]], dtype=np.uint8), mode="P")
    mask.putpalette([(37 * i) % 256 for i in range(768)])
    _pair(tmp_path, "a", mask)
    assert _dataset(tmp_path, num_classes=3, ignore_index=255)[0][1].tolist() == [[0, 1], [2, 255]]


def test_rgb_colour_masks_through_a_colour_table(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (128, 64, 128)  # Road
    rgb[1, 2] = (64, 0, 128)  # Car
    _pair(tmp_path, "a", Image.fromarray(rgb))
    ds = _dataset(tmp_path, colour_table=ColourTable.named("camvid"))
    assert ds.num_classes == 11 and ds.ignore_index == 255 and ds.class_names[3] == "Road"
    assert ds.palette[3].tolist() == [128, 64, 128]
    assert ds[0][1].tolist() == [[3, 255, 255], [255, 255, 8]]


def test_unknown_colour_stops_the_build_naming_colour_file_and_count(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0] = (12, 34, 56)
    _pair(tmp_path, "road", Image.fromarray(rgb))
    with pytest.raises(ValueError, match=r"colour mask .*road\.png holds colours .* \(12, 34, 56\) \(2 pixels\)"):
        _dataset(tmp_path, colour_table=ColourTable.named("camvid"))
    ds = _dataset(tmp_path, colour_table=ColourTable.named("camvid", unknown_colours="ignore"))
    assert ds[0][1].tolist() == [[255, 255], [255, 255]]


def test_value_outside_the_label_map_stops_the_build_naming_value_file_and_count(tmp_path):
    _pair(tmp_path, "m", Image.fromarray(np.array([[0, 255, 128]], dtype=np.uint8)))
    with pytest.raises(ValueError, match=r"mask .*m\.png holds values the label map does not list: 128 \(1 pixels\)"):
        _dataset(tmp_path, label_map=LabelMap.from_mapping({0: 0, 255: 1}))
    ds = _dataset(tmp_path, label_map=LabelMap.from_mapping({0: 0, 255: 1, 128: None}))  # unless it maps to ignore
    assert ds.ignore_index == 255 and ds[0][1].tolist() == [[0, 1, 255]]


def test_mixed_mask_modes_are_an_error_naming_the_file(tmp_path):
    _pair(tmp_path, "a", Image.fromarray(np.zeros((2, 2), np.uint8)))
    _pair(tmp_path, "b", Image.fromarray(np.zeros((2, 2), np.uint8), mode="P"))
    with pytest.raises(ValueError, match=r"mask .*b\.png is palette \(P\) but .*a\.png is 8-bit grayscale \(L\): one dataset's masks must share one mode"):
        _dataset(tmp_path, num_classes=2)


@pytest.mark.parametrize(
    "mask, kwargs, match",
    [
        (Image.new("RGB", (2, 2)), {"num_classes": 2}, r"is an RGB colour mask; give a colour table"),
        (Image.new("L", (2, 2)), {"colour_table": ColourTable.named("voc")}, r"is a class-index image .*drop the colour table"),
        (Image.new("RGBA", (2, 2)), {"num_classes": 2}, r"has mode 'RGBA'; masks must be class-index images"),
        (Image.new("LA", (2, 2)), {"num_classes": 2}, r"has mode 'LA'"),
    ],
)
def test_masks_of_the_wrong_kind_are_refused_naming_the_file(tmp_path, mask, kwargs, match):
    _pair(tmp_path, "bad", mask)
    with pytest.raises(ValueError, match=r"mask .*bad\.png .*" if "colour_table" in kwargs else "bad"):
        _dataset(tmp_path, **kwargs)
    with pytest.raises(ValueError, match=match):
        _dataset(tmp_path, **kwargs)


def test_classes_and_ignore_index_resolution():
    from segzoo.data.pairs import resolve_classes

    binary = LabelMap.from_mapping({0: 0, 255: 1})
    assert resolve_classes(None, None, binary) == (2, None)
    assert resolve_classes(5, None, binary) == (5, None)
    assert resolve_classes(None, None, LabelMap.from_mapping({0: None, 1: 0})) == (1, 255)
    assert resolve_classes(None, 20, None, ColourTable.named("camvid")) == (11, 20)
    with pytest.raises(ValueError, match="label map produces class 1, more than num_classes=1"):
        resolve_classes(1, None, binary)
    with pytest.raises(ValueError, match="the colour table has 11 classes, not num_classes=12"):
        resolve_classes(12, None, None, ColourTable.named("camvid"))
    with pytest.raises(ValueError, match="ignore_index=3 is one of the 11 classes"):
        resolve_classes(None, 3, None, ColourTable.named("camvid"))
    with pytest.raises(ValueError, match="not both"):
        resolve_classes(None, None, binary, ColourTable.named("camvid"))
    with pytest.raises(ValueError, match="needs num_classes"):
        resolve_classes(None, None)


def test_read_mask_orients_like_the_image():
    mask = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8))
    exif = mask.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    mask.info["exif"] = exif.tobytes()
    import io

    buffer = io.BytesIO()
    mask.save(buffer, format="PNG", exif=exif)
    with Image.open(buffer) as reopened:
        assert read_mask(reopened).tolist() == [[0], [1], [2]]
