"""Colour tables: RGB mask colours -> classes, the built-in tables, the JSON format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segzoo.data import ColourTable

ROAD, CAR, VOID = (128, 64, 128), (64, 0, 128), (0, 0, 0)


def _picture(rows):
    return np.array(rows, dtype=np.uint8)


def test_camvid_table_decodes_its_colours_and_ignores_black():
    camvid = ColourTable.named("camvid")
    assert camvid.num_classes == 11 and camvid.class_names[3] == "Road" and camvid.colours[3] == ROAD
    rgb = _picture([[ROAD, CAR], [VOID, (128, 128, 128)]])
    # Road is class 3, Car 8, Sky (128, 128, 128) 0 in CamVid's order; black is ignored
    assert camvid.decode(rgb, 11, "m.png").tolist() == [[3, 8], [11, 0]]


def test_unknown_colour_names_colour_file_and_pixel_count_or_is_ignored_when_asked():
    rgb = _picture([[ROAD, (1, 2, 3)], [(1, 2, 3), (9, 9, 9)]])
    with pytest.raises(ValueError, match=r"colour mask masks/a\.png holds colours that are not in the colour table 'camvid': "
                                         r"\(1, 2, 3\) \(2 pixels\), \(9, 9, 9\) \(1 pixels\)"):
        ColourTable.named("camvid").decode(rgb, 11, "masks/a.png")
    lenient = ColourTable.named("camvid", unknown_colours="ignore")
    assert lenient.decode(rgb, 255, "masks/a.png").tolist() == [[3, 255], [255, 255]]


def test_voc_table_is_the_voc_colour_map_with_the_border_ignored():
    voc = ColourTable.named("voc")
    rgb = _picture([[(0, 0, 0), (128, 0, 0), (224, 224, 192)], [(0, 128, 0), (128, 128, 0), (0, 0, 128)]])
    assert voc.decode(rgb, 255, "m").tolist() == [[0, 1, 255], [2, 3, 4]]
    assert voc.class_names[15] == "person"


def test_json_file_format(tmp_path):
    spec = {
        "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "road", "colour": list(ROAD)}],
        "ignore": [[255, 255, 255]],
        "unknown_colors": "ignore",
    }
    path = tmp_path / "table.json"
    path.write_text(json.dumps(spec))
    table = ColourTable.parse(str(path))
    assert table.class_names == ("background", "road") and table.colours == ((0, 0, 0), ROAD)
    assert table.ignore_colours == ((255, 255, 255),) and table.unknown_colours == "ignore" and table.ignores
    rgb = _picture([[ROAD, (255, 255, 255), (5, 5, 5), (0, 0, 0)]])
    assert table.decode(rgb, 7, "m").tolist() == [[1, 7, 7, 0]]
    assert ColourTable.parse(str(path), unknown_colours="error").unknown_colours == "error"  # the flag wins


def test_encode_writes_each_class_colour_and_decode_reads_it_back():
    table = ColourTable(("a", "b", "c"), ((10, 20, 30), (40, 50, 60), (70, 80, 90)), ((1, 1, 1),))
    labels = np.array([[0, 1, 2], [2, 255, 0]])
    rgb = table.encode(labels, ignore_index=255)
    assert rgb.dtype == np.uint8 and rgb[0, 1].tolist() == [40, 50, 60] and rgb[1, 1].tolist() == [1, 1, 1]
    assert table.decode(rgb, 255, "m").tolist() == labels.tolist()
    with pytest.raises(ValueError, match=r"labels \[3\] are not classes of the colour table"):
        table.encode(np.array([3]))


@pytest.mark.parametrize(
    "spec, match",
    [
        ([1, 2], "must be a JSON object with a list of classes"),
        ({"classes": [{"name": "a"}]}, "each class needs a name and a color"),
        ({"classes": [{"name": "a", "color": [0, 0]}]}, r"a colour must be \[R, G, B\]"),
        ({"classes": [{"name": "a", "color": [0, 0, 256]}]}, r"a colour must be \[R, G, B\]"),
        ({"classes": [{"name": "a", "color": [1, 1, 1]}, {"name": "b", "color": [1, 1, 1]}]}, r"\(1, 1, 1\)\] are listed twice"),
        ({"classes": [{"name": "a", "color": [1, 1, 1]}], "ignore": [[1, 1, 1]]}, "listed twice"),
        ({"classes": [{"name": "a", "color": [1, 1, 1]}], "colours": []}, r"unknown keys \['colours'\]"),
        ({"classes": [{"name": "a", "color": [1, 1, 1]}], "unknown_colors": "skip"}, "unknown_colours must be one of"),
        ({"classes": []}, "one colour per class"),
    ],
)
def test_bad_json_tables_are_refused_naming_the_file(tmp_path, spec, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=match) as info:
        ColourTable.parse(str(path))
    assert "bad.json" in str(info.value)


def test_parse_errors(tmp_path):
    with pytest.raises(ValueError, match=r"neither a built-in table \['camvid', 'voc'\] nor an existing JSON file"):
        ColourTable.parse("cityscapes")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        ColourTable.parse(str(tmp_path / "broken.json"))


def test_round_trip_through_plain_values():
    table = ColourTable.named("camvid", "ignore")
    assert ColourTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table
