"""Pretrained folders (io/pretrained.py): safetensors round trips, model cards, the hub, offline."""

import json
import sys
import types

import pytest
import torch
from support.random_batch_norms import randomise_batch_norms

import segzoo
from segzoo.data import DataConfig
from segzoo.io.pretrained import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE


def _run(num_classes=3):
    return segzoo.RunDescription(
        class_names=("road", "car", "sky")[:num_classes],
        colours=((128, 64, 128), (64, 0, 128), (128, 128, 128))[:num_classes],
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        ignore_index=255,
        layout="folder",
        data=DataConfig(eval_size=(24, 32)),
    )


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return randomise_batch_norms(segzoo.SegNetBasic(3, dropout="central"))


def test_round_trip_is_bitwise_and_keeps_the_run_description(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "shared", run=_run(), scores={"mean_iou": 0.5})
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, CARD_FILE])
    for source in (folder, folder / WEIGHTS_FILE):
        loaded, run = segzoo.load_run(source)
        assert type(loaded) is segzoo.SegNetBasic and loaded.config == model.config
        own = model.state_dict()
        assert loaded.state_dict().keys() == own.keys()
        assert all(torch.equal(loaded.state_dict()[k], own[k]) for k in own)
        assert run == _run()
    assert torch.equal(segzoo.from_pretrained(folder).classifier.weight, model.classifier.weight)


def test_the_weights_file_is_plain_safetensors_without_pickle(model, tmp_path):
    from safetensors.torch import load_file

    folder = model.save_pretrained(tmp_path / "m", run=_run())
    raw = (folder / WEIGHTS_FILE).read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    assert set(header) - {"__metadata__"} == set(model.state_dict())
    assert torch.equal(load_file(str(folder / WEIGHTS_FILE))["classifier.weight"], model.classifier.weight)


def test_the_model_card_names_classes_normalisation_and_scores(model, tmp_path):
    card = (model.save_pretrained(tmp_path / "m", run=_run(), scores={"mean_iou": 0.5}) / CARD_FILE).read_text()
    assert "| 1 | car | (64, 0, 128) |" in card
    assert "mean [0.5, 0.5, 0.5]" in card and "evaluated at 24x32" in card
    assert "| mean_iou |" in card and "| 50.0 |" in card and "Label 255 is ignored" in card


def test_a_pretrained_folder_works_where_a_checkpoint_path_does(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "m", run=_run())
    fresh = segzoo.SegNetBasic(3)
    segzoo.load_weights(fresh, folder)
    assert torch.equal(fresh.classifier.weight, model.classifier.weight)
    assert torch.equal(segzoo.load(folder / WEIGHTS_FILE).classifier.weight, model.classifier.weight)


def test_damaged_or_incomplete_folders_are_named(model, tmp_path):
    folder = model.save_pretrained(tmp_path / "m", run=_run())
    raw = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        segzoo.load(folder)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        segzoo.load(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a segzoo pretrained config"):
        segzoo.load(folder)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        segzoo.load(folder)


def test_a_run_description_for_other_classes_is_refused(model, tmp_path):
    with pytest.raises(ValueError, match="names 2 classes, the model has 3"):
        model.save_pretrained(tmp_path / "m", run=_run(2))
    assert not (tmp_path / "m").exists()


def _fake_hub(monkeypatch, tmp_path):
    """A stand-in for huggingface_hub that records calls and serves uploads from a folder."""
    uploads = tmp_path / "hub"
    calls = []

    class HfApi:
        def __init__(self, token=None):
            calls.append(("api", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            import shutil

            shutil.copytree(folder_path, uploads / repo_id)
            calls.append(("upload", repo_id))
            return types.SimpleNamespace(commit_url=f"https://hub/{repo_id}/commit/1")

    def snapshot_download(repo_id, allow_patterns):
        calls.append(("download", repo_id, tuple(allow_patterns)))
        if not (uploads / repo_id).is_dir():
            raise OSError("404")
        return str(uploads / repo_id)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=HfApi, snapshot_download=snapshot_download))
    return calls


def test_push_to_hub_and_load_by_hub_id(model, tmp_path, monkeypatch):
    calls = _fake_hub(monkeypatch, tmp_path)
    url = segzoo.push_to_hub(model, "me/segnet-basic", run=_run(), token="t")
    assert url == "https://hub/me/segnet-basic/commit/1"
    assert ("create", "me/segnet-basic", False, True) in calls and ("upload", "me/segnet-basic") in calls
    loaded = segzoo.from_pretrained("me/segnet-basic")
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)
    assert calls[-1] == ("download", "me/segnet-basic", (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE))
    with pytest.raises(ValueError, match="neither a local path nor a downloadable"):
        segzoo.from_pretrained("me/missing")


def test_without_the_hub_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r'pip install "segzoo\[hub\]"'):
        segzoo.from_pretrained("me/anything")
