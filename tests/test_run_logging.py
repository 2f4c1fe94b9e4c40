"""Runs you can follow: history.jsonl beside the checkpoints, early stopping on validation mIoU,
and one line per epoch instead of progress bars when stderr is not a terminal."""

import json

import pytest
import torch
from support.toy import toy_dataset
from torch.utils.data import DataLoader

import segzoo
from segzoo.io.checkpoint import load_checkpoint
from segzoo.metrics import scores_from_confusion
from segzoo.training import TrainConfig, Trainer
from segzoo.training.history import HISTORY_FILE


def _trainer(out_dir=None, epochs=3, progress=False, **config):
    torch.manual_seed(0)
    data = toy_dataset(n=8, size=16)
    return Trainer(
        segzoo.SegNetBasic(3), DataLoader(data, batch_size=4), DataLoader(data, batch_size=8),
        TrainConfig(epochs=epochs, lr=1e-2, **config), out_dir=out_dir, progress=progress,
    )  # fmt: skip


def _scripted_validation(monkeypatch, mean_ious):
    """Trainer.validate returning these mIoUs in turn (real score objects around them)."""
    scripted = iter(mean_ious)

    def validate(self, loader):
        value = next(scripted)
        scores = scores_from_confusion(torch.tensor([[1, 0], [0, 1]]))
        return 0.5, type(scores)(**{**scores.__dict__, "mean_iou": value})

    monkeypatch.setattr(Trainer, "validate", validate)


def test_history_jsonl_is_the_checkpoints_history_after_every_epoch(tmp_path):
    trainer = _trainer(tmp_path, epochs=2)
    trainer.fit()
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == load_checkpoint(tmp_path / "last.pt")["history"] == trainer.history.epochs
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    resumed = _trainer(tmp_path, epochs=3)
    resumed.resume(tmp_path / "last.pt")
    resumed.fit()
    records = [json.loads(line) for line in (tmp_path / HISTORY_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[:2] == trainer.history.epochs
    assert not list(tmp_path.glob(".*.tmp"))


def test_early_stopping_after_patience_epochs_without_a_better_miou(tmp_path, monkeypatch):
    """mIoU 0.1, 0.3, 0.2, 0.25 with patience 2: epochs 3 and 4 do not beat epoch 2, so training
    stops after epoch 4 of 6, the history records it, and a resumed run does not train again."""
    _scripted_validation(monkeypatch, [0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    trainer = _trainer(tmp_path, epochs=6, patience=2)
    history = trainer.fit()
    assert [r["mean_iou"] for r in history] == [0.1, 0.3, 0.2, 0.25]
    assert history[-1]["stopped_early"] == 1.0 and all("stopped_early" not in r for r in history[:-1])
    assert trainer.stopped_early and trainer.history.best_mean_iou == 0.3
    resumed = _trainer(tmp_path, epochs=6, patience=2)
    resumed.resume(tmp_path / "last.pt")
    weights = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    assert resumed.fit() == history
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in weights.items())


def test_without_patience_every_epoch_runs(monkeypatch):
    _scripted_validation(monkeypatch, [0.3, 0.1, 0.1, 0.1])
    assert len(_trainer(epochs=4).fit()) == 4


def test_a_tie_is_not_an_improvement(monkeypatch):
    _scripted_validation(monkeypatch, [0.3, 0.3, 0.3, 0.9, 0.9])
    assert len(_trainer(epochs=5, patience=2).fit()) == 3  # epochs 2, 3 only tie epoch 1: stop after 3 of 5


@pytest.mark.parametrize("patience", [0, -1, 1.5, True])
def test_patience_must_be_a_positive_int(patience):
    with pytest.raises((TypeError, ValueError), match="patience"):
        TrainConfig(patience=patience)


def test_without_a_terminal_progress_is_one_line_per_epoch(capsys):
    """stderr captured (not a terminal): no redrawn bars, one epoch line each, no carriage returns."""
    _trainer(epochs=2, progress=True).fit()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert all("train_loss=" in line and "mean_iou=" in line for line in lines)


def test_val_every_validates_every_nth_epoch_and_the_last(tmp_path, monkeypatch):
    """val_every=2 over 5 epochs: epochs 2, 4 and 5 (the last) are validated, 1 and 3 only trained;
    best.pt comes from a validated epoch and the history says which epochs were scored."""
    _scripted_validation(monkeypatch, [0.2, 0.4, 0.3])
    trainer = _trainer(tmp_path, epochs=5, val_every=2)
    history = trainer.fit()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert [r.get("mean_iou") for r in history] == [None, 0.2, None, 0.4, 0.3]
    assert all("val_loss" not in history[i] for i in (0, 2)) and all("train_loss" in r for r in history)
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 4 and trainer.history.best_mean_iou == 0.4


def test_val_every_keeps_its_rhythm_across_a_resume(tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.2, 0.4, 0.5])
    first = _trainer(tmp_path, epochs=3, val_every=3)
    assert [r.get("mean_iou") for r in first.fit()] == [None, None, 0.2]
    resumed = _trainer(tmp_path, epochs=7, val_every=3)
    resumed.resume(tmp_path / "last.pt")
    assert [r.get("mean_iou") for r in resumed.fit()] == [None, None, 0.2, None, None, 0.4, 0.5]


def test_patience_counts_epochs_between_validations(monkeypatch):
    """val_every=2, patience=3: after the best (epoch 2), epoch 4 is not 3 epochs later yet, epoch 6 is."""
    _scripted_validation(monkeypatch, [0.5, 0.1, 0.1, 0.9])
    history = _trainer(epochs=8, val_every=2, patience=3).fit()
    assert [r.get("mean_iou") for r in history] == [None, 0.5, None, 0.1, None, 0.1]


@pytest.mark.parametrize("val_every", [0, -2, 1.5, True])
def test_val_every_must_be_a_positive_int(val_every):
    with pytest.raises((TypeError, ValueError), match="val_every"):
        TrainConfig(val_every=val_every)
