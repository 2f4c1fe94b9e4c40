"""``time_limit_minutes`` / ``--time-limit``: stop at an epoch boundary when the next epoch would not
fit, resume later, and end exactly where an uninterrupted run ends. A fake clock stands in for
waiting: each training epoch takes 60 "seconds"."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import segzoo
from segzoo.training import TrainConfig, Trainer
from segzoo.training import trainer as trainer_module

EPOCH_SECONDS = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch) -> FakeClock:
    """Replace the trainer's clock; every training epoch advances it by EPOCH_SECONDS."""
    fake = FakeClock()
    monkeypatch.setattr(trainer_module, "_now", fake)
    original = Trainer._train_epoch

    def timed(self):
        fake.now += EPOCH_SECONDS
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", timed)
    return fake


def _trainer(epochs: int, out_dir=None, minutes: float | None = None) -> Trainer:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    torch.manual_seed(0)
    config = TrainConfig(epochs=epochs, lr=1e-2, time_limit_minutes=minutes)
    train = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, drop_last=True)
    return Trainer(segzoo.SegNetBasic(3), train, DataLoader(TensorDataset(x, y), batch_size=8), config, out_dir=out_dir, progress=False)


def _without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path, clock):
    uninterrupted = _trainer(epochs=3)
    uninterrupted.fit()
    assert not uninterrupted.time_limit_reached

    # 2.5 minutes: epoch 1 ends at 60 s, epoch 2 (60 s more) ends at 120 s, epoch 3 would end at 180 s
    first = _trainer(epochs=3, out_dir=tmp_path, minutes=2.5)
    history = first.fit()
    assert first.time_limit_reached and first.epoch == 2 and len(history) == 2
    assert segzoo.io.checkpoint.load_checkpoint(tmp_path / "last.pt")["epoch"] == 2

    resumed = _trainer(epochs=3, out_dir=tmp_path, minutes=2.5)
    resumed.resume(tmp_path / "last.pt")
    resumed.fit()
    assert not resumed.time_limit_reached and resumed.epoch == 3
    for (key, a), b in zip(uninterrupted.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key
    for a, b in zip(uninterrupted.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert _without_timing(resumed.history.epochs) == _without_timing(uninterrupted.history.epochs)
    assert resumed.history.best_mean_iou == uninterrupted.history.best_mean_iou


def test_the_first_epoch_always_runs_and_a_resumed_run_estimates_from_its_history(tmp_path, clock):
    trainer = _trainer(epochs=2, out_dir=tmp_path, minutes=0.5)  # shorter than one epoch
    trainer.fit()
    assert trainer.epoch == 1 and trainer.time_limit_reached
    resumed = _trainer(epochs=2, out_dir=tmp_path, minutes=0.5)
    resumed.resume(tmp_path / "last.pt")
    resumed.history.epochs[-1]["seconds"] = EPOCH_SECONDS  # the recorded epoch length (real time in the test)
    resumed.fit()
    assert resumed.epoch == 1 and resumed.time_limit_reached, "a recorded 60 s epoch does not fit in 30 s"


def test_a_generous_limit_changes_nothing(clock):
    trainer = _trainer(epochs=2, minutes=10)
    trainer.fit()
    assert trainer.epoch == 2 and not trainer.time_limit_reached


@pytest.mark.parametrize("minutes", [0, -1, math.nan])
def test_bad_limits_are_refused(minutes):
    with pytest.raises(ValueError, match="time_limit_minutes"):
        TrainConfig(time_limit_minutes=minutes)


def _folder(root) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(count):
            mask = (np.arange(16)[:, None] // 6 + np.zeros(20, dtype=int)).astype(np.uint8)
            image = (rng.integers(0, 60, (16, 20, 3)) + mask[..., None] * 80).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{i}.png")
    return str(root)


def test_segzoo_train_time_limit_exits_0_and_prints_the_resume_command(tmp_path, clock, capsys):
    import shlex

    from segzoo.cli import main
    from segzoo.io.checkpoint import load_checkpoint

    data = _folder(tmp_path / "data")
    common = ["train", "--model", "segnet_basic", "--data", data, "--num-classes", "3", "--epochs", "2",
              "--batch-size", "2", "--lr", "0.01", "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()

    assert main([*common, "--out", str(tmp_path / "split"), "--time-limit", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "time limit of 1.5 min: stopped after epoch 1/2" in out
    (resume,) = [line.removeprefix("resume with: segzoo ") for line in out.splitlines() if line.startswith("resume with:")]
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    assert main(shlex.split(resume)) == 0  # the printed command
    assert "validation scores of the best checkpoint" in capsys.readouterr().out

    whole, split = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert split["epoch"] == whole["epoch"] == 2
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, split["state_dict"][key]), key
    assert _without_timing(split["history"]) == _without_timing(whole["history"])


def test_the_time_limit_message_names_only_the_checkpoints_written(tmp_path, clock, capsys):
    """Stopped before any validation (every 2nd epoch here), a run has last.pt and no best.pt; the
    message said "last.pt and best.pt are in" all the same."""
    from segzoo.cli import main

    data = _folder(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["train", "--model", "segnet_basic", "--data", data, "--num-classes", "3", "--epochs", "4", "--batch-size", "2",
                 "--val-every", "2", "--no-progress", "--out", str(out), "--time-limit", "1.5"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "stopped after epoch 1/4" in printed and (out / "last.pt").exists() and not (out / "best.pt").exists()
    assert f"last.pt is in {out}" in printed and "best.pt" not in printed
