"""TensorBoard logging (segzoo.training.tensorboard): the event files read back with TensorBoard's own
reader and compared with history.jsonl, the prediction grid's pixels, resume without duplicated
steps, rank 0 alone writing, and the one-line refusal without the tensorboard package."""

import io
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from support.toy import toy_dataset
from torch.utils.data import DataLoader

import segzoo
from segzoo import TrainConfig, Trainer
from segzoo.cli import main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

# history.jsonl keys and the tags they are logged under; every other number but the flags is a score
TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "seconds": "time/epoch_seconds", "lr": "lr/decoder"}


def _trainer(out_dir, epochs, **kwargs):
    torch.manual_seed(0)
    data = toy_dataset(n=8, size=24)
    train = DataLoader(data, batch_size=4, shuffle=True, drop_last=True)
    val = DataLoader(toy_dataset(n=5, size=24, seed=1), batch_size=5)
    config = TrainConfig(epochs=epochs, lr=1e-2, encoder_lr_scale=0.1)
    return Trainer(segzoo.SegNetBasic(3), train, val, config, out_dir=out_dir, progress=False, **kwargs)


def _events(log_dir):
    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def _history(out_dir):
    return [json.loads(line) for line in (out_dir / "history.jsonl").read_text().splitlines()]


def test_scalars_equal_the_history_and_the_grid_shows_the_validation_images(tmp_path):
    trainer = _trainer(tmp_path, epochs=2, tensorboard=tmp_path / "tb")
    trainer.fit()
    history, events = _history(tmp_path), _events(tmp_path / "tb")
    expected = {TAGS.get(key, f"val/{key}") for key in history[0] if key not in ("epoch", "stopped_early")}
    assert {"val/mean_iou", "val/global_accuracy", "val/class_accuracy", "val/fw_iou"} <= expected
    tags = set(events.Tags()["scalars"])
    assert tags - expected == {"lr/encoder"} | {f"val_iou/{i}" for i in range(3) if f"val_iou/{i}" in tags}
    assert expected <= tags
    for key, tag in {key: TAGS.get(key, f"val/{key}") for key in history[0] if key not in ("epoch", "stopped_early")}.items():
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2], tag
        assert [e.value for e in logged] == pytest.approx([r[key] for r in history], rel=1e-6), tag  # float32 in the file
    assert [e.value for e in events.Scalars("lr/encoder")] == pytest.approx([0.1 * r["lr"] for r in history], rel=1e-6)
    # per-class IoU of the last epoch's model, scored again here
    _, scores = segzoo.training.evaluate(segzoo.load(tmp_path / "last.pt"), trainer.val_loader)
    for index, iou in enumerate(scores.per_class_iou.tolist()):
        if not np.isnan(iou):
            assert events.Scalars(f"val_iou/{index}")[-1].value == pytest.approx(iou, rel=1e-6)

    images = events.Images("predictions")
    assert [e.step for e in images] == [1, 2]
    grid = np.array(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    rows, size, gap = 4, 24, 4  # the first 4 of 5 validation images, 24x24, 4-pixel white gaps
    assert grid.shape == (rows * size + (rows - 1) * gap, 3 * size + 2 * gap, 3)
    image, mask = trainer.val_loader.dataset[0]
    colours = trainer.run.palette.numpy()
    picture = ((image * torch.tensor(trainer.run.std).view(3, 1, 1) + torch.tensor(trainer.run.mean).view(3, 1, 1)) * 255)
    assert np.array_equal(grid[:size, :size], picture.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())
    assert np.array_equal(grid[:size, size + gap : 2 * size + gap], colours[mask.numpy()])  # ground truth in the run's colours
    prediction = grid[:size, 2 * (size + gap) :].reshape(-1, 3)
    assert all(any((colour == c).all() for c in colours) for colour in np.unique(prediction, axis=0))


def test_a_resumed_run_appends_without_duplicating_steps(tmp_path):
    """Epoch 3 logged, then the run killed before its last.pt was written: the resumed run logs
    epoch 3 again, and the log keeps one epoch 3 (purge_step)."""
    _trainer(tmp_path, epochs=2, tensorboard=tmp_path / "tb").fit()
    shutil.copy(tmp_path / "last.pt", tmp_path / "epoch2.pt")
    resumed = _trainer(tmp_path, epochs=3, tensorboard=tmp_path / "tb")
    resumed.resume(tmp_path / "last.pt")
    resumed.fit()
    shutil.copy(tmp_path / "epoch2.pt", tmp_path / "last.pt")  # as if killed between the log and last.pt
    again = _trainer(tmp_path, epochs=3, tensorboard=tmp_path / "tb")
    again.resume(tmp_path / "last.pt")
    again.fit()
    events = _events(tmp_path / "tb")
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 3
    for tag in ("loss/train", "val/mean_iou", "lr/decoder"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3], tag
    assert [e.value for e in events.Scalars("val/mean_iou")] == pytest.approx([r["mean_iou"] for r in _history(tmp_path)], rel=1e-6)
    assert [e.step for e in events.Images("predictions")] == [1, 2, 3]


def test_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(segzoo.training.distributed, "is_main", lambda: False)
    _trainer(None, epochs=1, tensorboard=tmp_path / "tb").fit()
    assert not (tmp_path / "tb").exists()


def test_segzoo_train_tensorboard_defaults_to_the_runs_folder(folder_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "segnet_basic", "--data", str(folder_dataset), "--num-classes", "3",
                 "--ignore-index", "255", "--epochs", "1", "--batch-size", "3", "--out", str(out), "--tensorboard", "--no-progress"]) == 0  # fmt: skip
    events = _events(out / "tensorboard")
    assert events.Scalars("val/mean_iou")[0].value == pytest.approx(_history(out)[0]["mean_iou"], rel=1e-6)
    assert [e.step for e in events.Images("predictions")] == [1]


def test_without_tensorboard_the_run_is_refused_before_it_starts(folder_dataset, tmp_path, monkeypatch, capsys):
    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    out = tmp_path / "run"
    assert main(["train", "--model", "segnet_basic", "--data", str(folder_dataset), "--num-classes", "3",
                 "--out", str(out), "--tensorboard", str(tmp_path / "tb")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "segzoo[tensorboard]"' in err[0] and err[0].startswith("segzoo train: error:")
    assert not out.exists() and not (tmp_path / "tb").exists()
    with pytest.raises(ImportError, match=r'pip install "segzoo\[tensorboard\]"'):
        _trainer(None, epochs=1, tensorboard=tmp_path / "tb")
