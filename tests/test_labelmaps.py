"""Label maps: file values -> classes, their canonical inverse, the built-in maps, parsing."""

from __future__ import annotations

import numpy as np
import pytest
from support.cityscapes import CITYSCAPES_LABELS

from segzoo.data import LabelMap


def test_binary_map_from_json_keys_decodes_and_encodes_back():
    binary = LabelMap.parse('{"0": 0, "255": 1}')
    assert binary.pairs == ((0, 0), (255, 1)) and binary.num_classes == 2 and not binary.ignores
    values = np.array([[0, 255, 255], [0, 0, 255]], dtype=np.uint8)
    labels = binary.decode(values, None, "m.png")
    assert labels.dtype == np.int64 and labels.tolist() == [[0, 1, 1], [0, 0, 1]]
    assert binary.encode(labels).tolist() == values.tolist()


def test_value_outside_the_map_names_value_file_and_pixel_count():
    binary = LabelMap.from_mapping({0: 0, 255: 1})
    values = np.array([[0, 128, 128], [7, 255, 128]], dtype=np.uint8)
    with pytest.raises(ValueError, match=r"mask a/b\.png holds values the label map does not list: 7 \(1 pixels\), 128 \(3 pixels\);"):
        binary.decode(values, None, "a/b.png")


def test_ignored_values_get_the_ignore_index_and_need_one():
    mapping = LabelMap.from_mapping({"0": 0, "128": "ignore", "255": 1})
    assert mapping.ignores and mapping.pairs[1] == (128, None)
    assert mapping.decode(np.array([0, 128, 255]), 99, "m").tolist() == [0, 99, 1]
    with pytest.raises(ValueError, match="ignores file value 128, but the dataset has no ignore_index"):
        mapping.decode(np.array([0]), None, "m")
    assert mapping.encode(np.array([1, 99, 0]), ignore_index=99).tolist() == [255, 128, 0]


def test_sixteen_bit_values():
    mapping = LabelMap.from_mapping({0: 0, 1000: 1, 65535: 2})
    values = np.array([[65535, 1000], [0, 0]], dtype=np.uint16)
    assert mapping.decode(values, None, "m").tolist() == [[2, 1], [0, 0]]
    assert mapping.encode(np.array([2, 1, 0])).tolist() == [65535, 1000, 0]


def test_cityscapes_map_is_the_published_label_id_to_train_id_table():
    cityscapes = LabelMap.named("cityscapes")
    label_ids = np.array([label_id for _, label_id, _ in CITYSCAPES_LABELS])
    expected = [train_id for _, _, train_id in CITYSCAPES_LABELS]
    assert cityscapes.decode(label_ids, 255, "m").tolist() == expected
    assert cityscapes.num_classes == 19
    # the canonical inverse: each trainId's only labelId; ignored -> the smallest ignored labelId (0, unlabeled)
    by_train_id = {train_id: label_id for _, label_id, train_id in CITYSCAPES_LABELS if train_id != 255}
    assert cityscapes.encode(np.arange(19), 255).tolist() == [by_train_id[k] for k in range(19)]
    assert cityscapes.encode(np.array([255]), 255).tolist() == [0]
    with pytest.raises(ValueError, match=r"values the label map does not list: 34 \(1 pixels\)"):
        cityscapes.decode(np.array([34, 7]), 255, "x_gtFine_labelIds.png")


def test_ade20k_reduce_zero_label():
    ade = LabelMap.named("ade20k-reduce-zero")
    values = np.array([0, 1, 2, 150])
    assert ade.decode(values, 255, "m").tolist() == [255, 0, 1, 149]
    assert ade.num_classes == 150
    assert ade.encode(np.array([0, 1, 149, 255]), 255).tolist() == [1, 2, 150, 0]


def test_parse_a_json_file_and_report_bad_text(tmp_path):
    path = tmp_path / "map.json"
    path.write_text('{"10": 0, "20": 1, "30": 2}')
    assert LabelMap.parse(str(path)).num_classes == 3
    (tmp_path / "bad.json").write_text("{10: 0")
    with pytest.raises(ValueError, match=r"label map file .*bad\.json is not valid JSON"):
        LabelMap.parse(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match=r"neither a built-in map \['cityscapes', 'ade20k-reduce-zero'\]"):
        LabelMap.parse("cityscape")
    (tmp_path / "list.json").write_text("[0, 255]")
    with pytest.raises(ValueError, match=r"list\.json must be a JSON object of file value -> class index"):
        LabelMap.parse(str(tmp_path / "list.json"))
    with pytest.raises(ValueError, match="unknown label map 'voc'"):
        LabelMap.named("voc")


@pytest.mark.parametrize(
    "mapping, match",
    [
        ({-1: 0}, r"file values must be ints in \[0, 65535\]"),
        ({70000: 0}, r"file values must be ints in \[0, 65535\]"),
        ({0: -1}, "targets must be class indices"),
        ({0: 1.5}, "targets must be class indices"),
        ({0: True}, "targets must be class indices"),
        ({"a": 0}, r"file values must be ints"),
        ({0: None}, "at least one file value to a class"),
    ],
)
def test_bad_maps_are_refused(mapping, match):
    with pytest.raises(ValueError, match=match):
        LabelMap.from_mapping(mapping)


def test_a_value_listed_twice_is_refused():
    with pytest.raises(ValueError, match=r"lists a file value twice: \[3\]"):
        LabelMap(((3, 0), (3, 1)))


def test_round_trip_through_plain_values():
    for mapping in (LabelMap.named("cityscapes"), LabelMap.from_mapping({0: 0, 9: None, 255: 1})):
        assert LabelMap.from_dict(mapping.to_dict()) == mapping
