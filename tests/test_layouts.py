"""The Cityscapes and ADE20K layouts and the folder layout's split lists, on tiny trees in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.cityscapes import CITYSCAPES_LABELS

from segzoo.data import ADE20K, LAYOUTS, Cityscapes, LabelMap, layout_classes, open_split, open_splits


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def cityscapes_tree(root: Path, splits=("train", "val"), size=(6, 8)) -> dict[str, np.ndarray]:
    """Two cities per split, one image each; labelIds cover every published labelId (0..33) cyclically."""
    rng = np.random.default_rng(0)
    label_ids = {}
    for split in splits:
        for city in ("aachen", "bremen"):
            name = f"{city}_000000_000019"
            _save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            ids = (np.arange(size[0] * size[1]).reshape(size) + len(label_ids)) % 34
            _save(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", ids.astype(np.uint8))
            _save(root / "gtFine" / split / city / f"{name}_gtFine_color.png", np.zeros((*size, 3), np.uint8))  # never read
            label_ids[f"{split}/{name}"] = ids
    return label_ids


def ade20k_tree(root: Path, size=(6, 8)) -> None:
    rng = np.random.default_rng(1)
    base = root / "ADEChallengeData2016"
    for folder, count in (("training", 2), ("validation", 1)):
        for i in range(count):
            stem = f"ADE_{folder[:5]}_{i:08d}"
            _save(base / "images" / folder / f"{stem}.jpg", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            _save(base / "annotations" / folder / f"{stem}.png", ((np.arange(48).reshape(size) * 7 + i) % 151).astype(np.uint8))


def test_layouts_are_listed():
    assert set(LAYOUTS) == {"camvid", "folder", "voc", "cityscapes", "ade20k"}


def test_cityscapes_reads_label_ids_as_train_ids(tmp_path):
    label_ids = cityscapes_tree(tmp_path)
    train, val = open_splits(tmp_path, "cityscapes")
    assert isinstance(train, Cityscapes) and len(train) == 2 and len(val) == 2
    assert train.num_classes == 19 and train.ignore_index == 255 and train.layout == "cityscapes"
    assert train.class_names[0] == "road" and train.class_names[18] == "bicycle"
    assert train.palette[0].tolist() == [128, 64, 128] and train.palette[13].tolist() == [0, 0, 142]
    to_train_id = {label_id: train_id for _, label_id, train_id in CITYSCAPES_LABELS}
    image, mask = train[0]
    expected = np.vectorize(to_train_id.get)(label_ids["train/aachen_000000_000019"])
    assert image.shape == (3, 6, 8) and mask.tolist() == expected.tolist()
    assert train.label_map == LabelMap.named("cityscapes")


def test_cityscapes_image_without_its_gtfine_file_is_an_error_naming_it(tmp_path):
    cityscapes_tree(tmp_path)
    (tmp_path / "gtFine" / "val" / "bremen" / "bremen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(ValueError, match=r"1 Cityscapes image\(s\) have no gtFine labelIds file: .*bremen_000000_000019_leftImg8bit\.png "
                                         r"\(expected .*bremen_000000_000019_gtFine_labelIds\.png\)"):
        open_split(tmp_path, "cityscapes", "val")


def test_cityscapes_missing_split_and_bad_label_id(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Cityscapes split 'train' not found: .*splits present: \[\]"):
        Cityscapes(tmp_path)
    cityscapes_tree(tmp_path, splits=("train",))
    with pytest.raises(FileNotFoundError, match=r"splits present: \['train'\]"):
        Cityscapes(tmp_path, "val")
    _save(tmp_path / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", np.full((6, 8), 40, np.uint8))
    with pytest.raises(ValueError, match=r"aachen_000000_000019_gtFine_labelIds\.png holds values the label map does not list: 40 \(48 pixels\)"):
        Cityscapes(tmp_path)


def test_ade20k_reduces_zero_label(tmp_path):
    ade20k_tree(tmp_path)
    train, val = open_splits(tmp_path, "ade20k")
    assert isinstance(train, ADE20K) and (len(train), len(val)) == (2, 1)
    assert train.num_classes == 150 and train.ignore_index == 255 and len(set(train.class_names)) == 150
    assert train.class_names[:3] == ("wall", "building", "sky") and train.class_names[-1] == "flag"
    stored = (np.arange(48).reshape(6, 8) * 7) % 151
    expected = np.where(stored == 0, 255, stored - 1)
    assert train[0][1].tolist() == expected.tolist()
    assert len(ADE20K(tmp_path / "ADEChallengeData2016", "validation")) == 1  # the folder itself, the folder's split name


def test_ade20k_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ADE20K not found"):
        ADE20K(tmp_path)
    ade20k_tree(tmp_path)
    with pytest.raises(ValueError, match="ADE20K split must be one of"):
        ADE20K(tmp_path, "test")
    (tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) in .* have no mask <stem>\.png .*ADE_train_00000001\.jpg"):
        ADE20K(tmp_path)
    with pytest.raises(ValueError, match=r"values the label map does not list: 151"):
        _save(tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_valid_00000000.png", np.full((6, 8), 151, np.uint8))
        ADE20K(tmp_path, "val")


@pytest.mark.parametrize("layout", ["camvid", "voc", "cityscapes", "ade20k"])
def test_fixed_layouts_refuse_a_label_map_or_other_classes(layout):
    with pytest.raises(ValueError, match=f"the {layout} layout has .* not a label map"):
        layout_classes(layout, label_map=LabelMap.from_mapping({0: 0, 255: 1}))
    with pytest.raises(ValueError, match="num_classes=7"):
        layout_classes(layout, num_classes=7)


def test_folder_split_lists(tmp_path):
    rng = np.random.default_rng(2)
    for stem in ("a", "b", "c", "d"):
        _save(tmp_path / "images" / f"{stem}.jpg", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        _save(tmp_path / "masks" / f"{stem}.png", np.full((4, 4), 255 * (stem in "bd"), np.uint8))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("# training stems\na\nc.jpg\n\nd\n")
    (tmp_path / "splits" / "val.txt").write_text("b\n")
    binary = LabelMap.from_mapping({0: 0, 255: 1})
    train, val = open_splits(tmp_path, "folder", label_map=binary)
    assert [p.stem for p, _ in train.samples] == ["a", "c", "d"] and [p.stem for p, _ in val.samples] == ["b"]
    assert train[2][1].unique().tolist() == [1] and val[0][1].unique().tolist() == [1]
    (tmp_path / "splits" / "val.txt").write_text("b\nzz\n")
    with pytest.raises(ValueError, match=r"1 stem\(s\) of the split list have no image .*: zz"):
        open_split(tmp_path, "folder", "val", label_map=binary)
    (tmp_path / "splits" / "val.txt").write_text("b\nb\n")
    with pytest.raises(ValueError, match=r"val\.txt names b more than once"):
        open_split(tmp_path, "folder", "val", label_map=binary)
    (tmp_path / "val" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match="has both .*val/images and the split list .*val.txt: keep one"):
        open_split(tmp_path, "folder", "val", label_map=binary)
