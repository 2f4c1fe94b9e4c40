"""The trainer never silently trains nothing, never lets a progress bar change the weights, never
saves a diverged model, and keeps best.pt and last.pt consistent."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import segzoo
from segzoo import TrainConfig, Trainer
from segzoo.io.checkpoint import load_checkpoint
from segzoo.training import make_loader


def _toy(n=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())


class _RandomFlips(Dataset):
    """Items flipped at random with the global RNG, as augmentations draw it."""

    def __init__(self, n=8) -> None:
        self.items = _toy(n)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        image, mask = self.items[index]
        return (image.flip(-1), mask.flip(-1)) if torch.rand(()) < 0.5 else (image, mask)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- best.pt and last.pt ----


def test_best_is_written_before_last(tmp_path, monkeypatch):
    """last.pt records the best score: written after best.pt, a kill in between leaves a last.pt
    from the epoch before, whose resumed run writes best.pt again (see tests/test_kill.py)."""
    written = []
    save = Trainer.save

    def recording_save(self, path):
        written.append(os.path.basename(path))
        return save(self, path)

    monkeypatch.setattr(Trainer, "save", recording_save)
    torch.manual_seed(0)
    trainer = Trainer(
        segzoo.SegNetBasic(3), DataLoader(_toy(), batch_size=8), DataLoader(_toy(), batch_size=8),
        TrainConfig(epochs=1, lr=0.01), device="cpu", out_dir=tmp_path, progress=False,
    )  # fmt: skip
    trainer.fit()
    assert written == ["best.pt", "last.pt"]


def test_a_killed_best_writes_leftover_goes_even_if_best_never_improves_again(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(
        segzoo.SegNetBasic(3), DataLoader(_toy(), batch_size=8), DataLoader(_toy(), batch_size=8),
        TrainConfig(epochs=2, lr=0.01), device="cpu", out_dir=tmp_path, progress=False,
    )  # fmt: skip
    validate, scores = trainer.validate, iter([0.5, 0.4])

    def worse_every_epoch(loader):
        loss, result = validate(loader)
        return loss, dataclasses.replace(result, mean_iou=next(scores))

    trainer.validate = worse_every_epoch
    trainer.config = dataclasses.replace(trainer.config, epochs=1)
    trainer.fit()
    leftover = tmp_path / ".best.pt.0123abcd.tmp"  # as a writer killed mid-write leaves it (unlocked)
    leftover.write_bytes(b"")
    trainer.config = dataclasses.replace(trainer.config, epochs=2)
    trainer.fit()
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]
