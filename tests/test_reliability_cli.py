"""The command line keeps its promises: no run silently replaces another's checkpoints, no output
overwrites another's, and every user error (bad device, offline weights, unusable --out, a
checkpoint or layout that does not fit) exits with status 2 and one line, before any long work."""

from __future__ import annotations

import os
import time
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from support.camvid import make_tiny_camvid

import segzoo
from segzoo.cli import main
from segzoo.io.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory):
    """DATA/{train,val}/{images,masks}: 6 + 3 images of 40x48, 3 classes in row bands, 255 ignored."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            mask = np.repeat(np.arange(40) // 14, 48).reshape(40, 48).astype(np.uint8)
            mask[0, :4] = 255
            image = rng.integers(0, 50, (40, 48, 3), dtype=np.uint8) + (mask.clip(0, 2)[..., None] * 80).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{i}.png")
    return root


def _train_args(data, out, *extra):
    return [
        "train", "--model", "segnet_basic", "--data", str(data), "--num-classes", "3", "--ignore-index", "255",
        "--epochs", "1", "--batch-size", "3", "--lr", "0.01", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(folder_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(_train_args(folder_dataset, out)) == 0
    return out


def _one_line_error(capsys, *mentions, status=2, result):
    err = capsys.readouterr().err.strip()
    assert result == status, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("segzoo "), err
    for mention in mentions:
        assert mention in err, f"{mention!r} not in: {err}"
    return err


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


# ---- --out of a run that exists ----


@pytest.mark.parametrize("extra", [(), ("--num-classes", "5")])
def test_training_into_a_previous_runs_folder_is_refused(trained, capsys, extra):
    """Refused before the data is read: --data points nowhere, and the error is about --out."""
    before = _snapshot(trained)
    argv = [*_train_args("/nonexistent/data", trained), *extra]
    _one_line_error(capsys, "--resume", "--overwrite", str(trained), result=main(argv))
    assert _snapshot(trained) == before


def test_the_demo_refuses_a_previous_runs_folder_too(trained, capsys):
    before = _snapshot(trained)
    _one_line_error(capsys, "--overwrite", result=main(["demo", "--out", str(trained), "--epochs", "1", "--images", "16"]))
    assert _snapshot(trained) == before


def test_overwrite_replaces_a_run_on_purpose(folder_dataset, tmp_path, capsys):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "best.pt", segzoo.SegNetBasic(7), epoch=9)
    save_checkpoint(tmp_path / "last.pt", segzoo.SegNetBasic(7), epoch=9)
    assert main(_train_args(folder_dataset, tmp_path, "--overwrite")) == 0
    for name in ("best.pt", "last.pt"):
        checkpoint = load_checkpoint(tmp_path / name)
        assert checkpoint["epoch"] == 1 and checkpoint["model"]["config"]["num_classes"] == 3


def test_resume_needs_a_last_checkpoint(folder_dataset, tmp_path, capsys):
    _one_line_error(capsys, "last.pt", "--resume", result=main(_train_args(folder_dataset, tmp_path, "--resume")))


def test_resume_and_overwrite_exclude_each_other(folder_dataset, trained, capsys):
    _one_line_error(capsys, "--resume", "--overwrite", result=main(_train_args(folder_dataset, trained, "--resume", "--overwrite")))


# ---- --out that cannot be written ----


@pytest.mark.parametrize("command", ["train", "demo", "evaluate", "predict"])
def test_an_out_folder_that_is_a_file_is_refused_before_any_work(folder_dataset, trained, tmp_path, capsys, command):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    image = str(folder_dataset / "val" / "images" / "0.png")
    argv = {
        "train": _train_args(folder_dataset, out),
        "demo": ["demo", "--out", str(out), "--epochs", "1", "--images", "16", "--no-progress"],
        "evaluate": ["evaluate", str(trained / "best.pt"), "--data", str(folder_dataset), "--out", str(out)],
        "predict": ["predict", str(trained / "best.pt"), image, "--out", str(out)],
    }[command]
    _one_line_error(capsys, str(out), "not a folder", result=main(argv))
    assert out.read_text() == "not a folder"


def test_a_read_only_out_folder_is_refused_before_any_work(folder_dataset, tmp_path, capsys, monkeypatch):
    """Simulated with os.access, as root writes anywhere; a real read-only folder follows when not root."""
    out = tmp_path / "readonly"
    out.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if os.fspath(path) == str(out) else access(path, mode, **kw))
    _one_line_error(capsys, str(out), "not writable", result=main(_train_args("/nonexistent/data", out / "run")))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_really_read_only_out_folder(folder_dataset, tmp_path, capsys):
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    try:
        _one_line_error(capsys, "not writable", result=main(_train_args(folder_dataset, out)))
    finally:
        out.chmod(0o755)


def test_export_into_an_existing_folder_is_refused_before_exporting(trained, tmp_path, capsys, monkeypatch):
    def exported(*args, **kwargs):
        pytest.fail("the export ran")

    monkeypatch.setattr(segzoo.cli, "export_onnx", exported)
    monkeypatch.setattr(segzoo.cli, "export_program", exported)
    folder = tmp_path / "models"
    folder.mkdir()
    for fmt in ("onnx", "exported-program"):
        _one_line_error(capsys, str(folder), "folder", result=main(["export", str(trained / "best.pt"), "--format", fmt, "--out", str(folder)]))
    (tmp_path / "file").write_text("x")
    _one_line_error(capsys, "file", result=main(["export", str(trained / "best.pt"), "--out", str(tmp_path / "file" / "model.onnx")]))


# ---- predict: one output per input ----


def test_predict_writes_one_output_per_input_even_when_stems_collide(trained, folder_dataset, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    for folder in ("a", "b"):
        (inputs / folder).mkdir(parents=True)
    rng = np.random.default_rng(1)
    pictures = {name: rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for name in ("a/frame.png", "b/frame.png", "x.png", "x.jpg", "solo.png")}
    for name, pixels in pictures.items():
        Image.fromarray(pixels).save(inputs / name)
    paths = [str(inputs / name) for name in pictures] + [str(inputs / "x.png")]  # x.png given twice
    out = tmp_path / "out"
    assert main(["predict", str(trained / "best.pt"), *paths, "--out", str(out)]) == 0
    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == len(pictures), [m.name for m in masks]
    assert (out / "solo_mask.png").is_file(), "a unique stem keeps its plain name"
    names = segzoo.inference.predict.output_names(paths)
    assert len(set(names[:-1])) == len(pictures) and names[-1] == names[2]
    model = segzoo.load(trained / "best.pt")
    for path, name in zip(paths, names):
        expected = model.predict(Image.open(path))[0].numpy()
        np.testing.assert_array_equal(np.array(Image.open(out / f"{name}_mask.png")), expected)
    again = tmp_path / "again"
    assert main(["predict", str(trained / "best.pt"), *reversed(paths), "--out", str(again)]) == 0
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in out.iterdir()), "names do not depend on the order"


def test_predict_orients_phone_photos_as_shown(trained, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "phone.png", exif=exif)
    out = tmp_path / "out"
    assert main(["predict", str(trained / "best.pt"), str(tmp_path / "phone.png"), "--out", str(out)]) == 0
    mask = Image.open(out / "phone_mask.png")
    assert mask.size == (40, 48) and Image.open(out / "phone_overlay.png").size == (40, 48)
    shown = ImageOps.exif_transpose(Image.open(tmp_path / "phone.png"))
    np.testing.assert_array_equal(np.array(mask), segzoo.load(trained / "best.pt").predict(np.array(shown))[0].numpy())


def test_predict_refuses_a_checkpoint_with_non_finite_weights(trained, folder_dataset, tmp_path, capsys):
    model = segzoo.load(trained / "best.pt")
    with torch.no_grad():
        model.classifier.bias[0] = float("nan")
    checkpoint = save_checkpoint(tmp_path / "diverged.pt", model)
    out = tmp_path / "out"
    image = str(folder_dataset / "val" / "images" / "0.png")
    _one_line_error(capsys, "non-finite", "classifier.bias", result=main(["predict", str(checkpoint), image, "--out", str(out)]))
    assert not out.exists() or not any(out.iterdir())


# ---- training that would silently do nothing, or go wrong ----


def test_a_batch_larger_than_the_training_set_still_trains(folder_dataset, tmp_path):
    argv = _train_args(folder_dataset, tmp_path)
    argv[argv.index("--batch-size") + 1] = "10"  # 6 training images
    assert main(argv) == 0
    history = load_checkpoint(tmp_path / "last.pt")["history"]
    assert history[0]["train_loss"] > 0, "no step was trained"


def test_a_diverging_run_stops_with_one_line_and_saves_nothing_diverged(folder_dataset, tmp_path, capsys):
    argv = _train_args(folder_dataset, tmp_path)
    argv[argv.index("--lr") + 1] = "1e30"
    _one_line_error(capsys, "diverged", status=1, result=main(argv))
    assert not (tmp_path / "best.pt").exists()


# ---- devices ----


@pytest.mark.parametrize("device", ["cuda:99", "gpu", "tpu:0", "cuda:x"])
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_an_unusable_device_is_one_line_before_any_work(trained, folder_dataset, tmp_path, capsys, device, command):
    argv = {
        "train": _train_args("/nonexistent/data", tmp_path / "run"),
        "evaluate": ["evaluate", str(trained / "best.pt"), "--data", "/nonexistent/data"],
        "predict": ["predict", str(trained / "best.pt"), "/nonexistent.png", "--out", str(tmp_path / "out")],
    }[command]
    _one_line_error(capsys, device, result=main([*argv, "--device", device]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line_before_any_work(tmp_path, capsys):
    _one_line_error(capsys, "cuda", "not available", result=main([*_train_args("/nonexistent/data", tmp_path), "--device", "cuda"]))


# ---- offline pretrained weights ----


def test_offline_default_weights_are_one_line_before_the_data_is_read(folder_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    argv = ["train", "--model", "segnet", "--weights-backbone", "DEFAULT", "--data", "/nonexistent/data", "--num-classes", "3",
            "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    started = time.perf_counter()
    err = _one_line_error(capsys, "vgg16_bn-6c64b313.pth", str(tmp_path / "empty_torch_home"), result=main(argv))
    assert len(calls) == 1 and time.perf_counter() - started < 20, err
    assert not (tmp_path / "run").exists()


# ---- layouts that do not fit ----


def _camvid(root):
    return make_tiny_camvid(root, (8, 8))


def test_evaluating_on_camvid_a_checkpoint_with_another_ignore_label_is_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(11), metadata={"ignore_index": 255})
    _one_line_error(capsys, "ignore", "camvid", result=main(["evaluate", str(checkpoint), "--data", str(_camvid(tmp_path / "camvid")), "--layout", "camvid"]))


@pytest.mark.parametrize("extra", [("--num-classes", "5"), ("--ignore-index", "255")])
def test_training_on_camvid_refuses_class_settings_it_would_ignore(tmp_path, capsys, extra):
    argv = ["train", "--model", "segnet_basic", "--data", str(_camvid(tmp_path / "camvid")), "--layout", "camvid",
            "--out", str(tmp_path / "run"), "--no-progress", *extra]  # fmt: skip
    _one_line_error(capsys, "camvid", extra[0][2:].replace("-", "_"), result=main(argv))


# ---- checkpoints that do not fit ----


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_a_checkpoint_without_its_model_is_one_line(folder_dataset, tmp_path, capsys, command):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(3))
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["model"]
    torch.save(checkpoint, path)
    argv = {
        "evaluate": ["evaluate", str(path), "--data", str(folder_dataset)],
        "predict": ["predict", str(path), str(folder_dataset / "val" / "images" / "0.png"), "--out", str(tmp_path / "out")],
        "export": ["export", str(path), "--out", str(tmp_path / "model.onnx")],
    }[command]
    _one_line_error(capsys, str(path), "model", result=main(argv))
