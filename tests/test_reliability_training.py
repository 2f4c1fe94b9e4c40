"""The trainer never silently trains nothing, never lets a progress bar change the weights, never
saves a diverged model, and keeps best.pt and last.pt consistent."""

from __future__ import annotations

import dataclasses
import math
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


# ---- no step trained is an error, and the only batch is never dropped ----


@pytest.mark.parametrize(("items", "batch_size", "batches"), [(6, 8, 1), (6, 6, 1), (7, 3, 2), (1, 4, 1)])
def test_the_training_loader_never_drops_its_only_batch(items, batch_size, batches):
    """A partial last batch is dropped only when a full one exists (BatchNorm then never sees a
    lone remainder); a training set smaller than the batch is one batch, not none."""
    loader = make_loader(_toy(items), batch_size, shuffle=True)
    assert len(loader) == batches == len(list(loader))


def test_a_trainer_with_no_training_batch_refuses_to_start():
    empty = DataLoader(_toy(3), batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match="no training batch"):
        Trainer(segzoo.SegNetBasic(3), empty, config=TrainConfig(epochs=1), device="cpu", progress=False)


# ---- progress bars leave the global RNG alone ----


def _train_flips(progress, stop_after=2, out_dir=None, resume_from=None):
    """Two epochs (an interrupted run stops after ``stop_after``) of the flipped toy task."""
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3)
    config = TrainConfig(epochs=2, lr=0.05, seed=0, deterministic=True)
    loader = make_loader(_RandomFlips(), 4, shuffle=True, seed=0)
    trainer = Trainer(model, loader, DataLoader(_toy(), batch_size=8), config, device="cpu", out_dir=out_dir, progress=progress)
    if resume_from is not None:
        trainer.resume(resume_from)
    trainer.config.epochs = stop_after  # the schedule was built for two epochs
    trainer.fit()
    return trainer.model.state_dict()


def _assert_bitwise_equal(first, second):
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_progress_bars_do_not_change_the_trained_weights():
    """tqdm's constructor used to start an iteration of the DataLoader, which draws from the global
    RNG: the shuffle and the augmentations, so the weights, depended on --no-progress."""
    _assert_bitwise_equal(_train_flips(progress=False), _train_flips(progress=True))


def test_resuming_across_progress_on_and_off_equals_an_uninterrupted_run(tmp_path):
    uninterrupted = _train_flips(progress=False)
    _train_flips(progress=True, stop_after=1, out_dir=tmp_path)
    _assert_bitwise_equal(uninterrupted, _train_flips(progress=False, resume_from=tmp_path / "last.pt"))


def test_the_training_order_does_not_depend_on_the_global_rng():
    """make_loader's shuffle comes from its own generator, seeded from (seed, epoch)."""
    loader = make_loader(TensorDataset(torch.arange(32)), 4, shuffle=True, seed=3)
    torch.manual_seed(0)
    first = [batch[0].tolist() for batch in loader]
    torch.manual_seed(1)
    again = [batch[0].tolist() for batch in loader]
    assert first != again, "a new order every epoch (iteration)"
    loader.sampler.set_epoch(0)
    torch.manual_seed(2)
    assert [batch[0].tolist() for batch in loader] == first
    other = make_loader(TensorDataset(torch.arange(32)), 4, shuffle=True, seed=4)
    assert [batch[0].tolist() for batch in other] != first


# ---- a diverged run stops and is never saved as best ----


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    data = _toy()
    torch.manual_seed(0)
    trainer = Trainer(
        segzoo.SegNetBasic(3), DataLoader(data, batch_size=4), DataLoader(data, batch_size=8),
        TrainConfig(epochs=3, lr=0.01), device="cpu", out_dir=tmp_path, progress=False,
    )  # fmt: skip
    original = Trainer._train_epoch

    def poisoned_second_epoch(self):
        if self.epoch == 1:
            data.tensors[0][5, 0, 3, 3] = float("nan")
        return original(self)

    trainer._train_epoch = poisoned_second_epoch.__get__(trainer)
    with pytest.raises(FloatingPointError, match=r"epoch 2.*(nan|not finite).*last\.pt") as info:
        trainer.fit()
    assert "\n" not in str(info.value)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(tmp_path / name)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), name


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_non_finite_weights_are_never_saved(tmp_path):
    """The epoch's one step has a finite loss but leaves a non-finite weight (as an overflowing
    update does): validating that model and saving it as best.pt is what must not happen."""
    data = _toy()
    torch.manual_seed(0)
    trainer = Trainer(
        segzoo.SegNetBasic(3), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8),
        TrainConfig(epochs=2, lr=0.01), device="cpu", out_dir=tmp_path, progress=False,
    )  # fmt: skip
    step = trainer.optimizer.step

    def overflowing_step(*args, **kwargs):
        result = step(*args, **kwargs)
        with torch.no_grad():
            trainer.model.classifier.bias[1] = float("inf")
        return result

    trainer.optimizer.step = overflowing_step
    with pytest.raises(FloatingPointError, match="epoch 1.*classifier.bias") as info:
        trainer.fit()
    assert "\n" not in str(info.value)
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()


def test_a_batch_with_every_pixel_ignored_trains_nothing_and_is_no_divergence():
    """Its mean loss is 0 / 0: as NaN it made every weight NaN; it now contributes no gradient."""
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = torch.full((4, 16, 16), 255, dtype=torch.int64)
    masks[2:] = 1
    torch.manual_seed(0)
    trainer = Trainer(
        segzoo.SegNetBasic(3), DataLoader(TensorDataset(x, masks), batch_size=2), config=TrainConfig(epochs=1, lr=0.01, ignore_index=255),
        device="cpu", progress=False,
    )  # fmt: skip
    history = trainer.fit()
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values() if v.is_floating_point())
    assert math.isfinite(history[0]["train_loss"])


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
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "history.jsonl", "last.pt"]

