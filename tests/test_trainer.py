"""The trainer: learning, exact resume, freezing, differential LR, accumulation, AMP, predict,
deterministic runs."""

import numpy as np
import pytest
import torch
from PIL import Image
from support.toy import toy_dataset
from torch import nn
from torch.utils.data import DataLoader, Dataset

import segzoo
from segzoo import TrainConfig, Trainer


def _trainer(model=None, epochs=3, out_dir=None, **config):
    torch.manual_seed(0)
    model = model or segzoo.SegNetBasic(3)
    data = toy_dataset()
    train = DataLoader(data, batch_size=4, shuffle=True, drop_last=True)
    val = DataLoader(data, batch_size=8)
    return Trainer(model, train, val, TrainConfig(epochs=epochs, lr=1e-2, **config), out_dir=out_dir, progress=False)


def test_loss_goes_down_and_scores_are_reported():
    history = _trainer(epochs=4).fit()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert {"val_loss", "global_accuracy", "class_accuracy", "mean_iou", "fw_iou", "lr"} <= set(history[-1])


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    uninterrupted = _trainer(epochs=3)
    uninterrupted.fit()

    interrupted = _trainer(epochs=3, out_dir=tmp_path)
    original = Trainer._train_epoch
    calls = []

    def crash_in_epoch_three(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "_train_epoch", original)

    resumed = _trainer(epochs=3, model=segzoo.SegNetBasic(3))  # fresh weights, overwritten by resume
    resumed.resume(tmp_path / "last.pt")
    assert resumed.epoch == 2
    resumed.fit()
    for (name, a), b in zip(uninterrupted.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["train_loss"] for r in resumed.history.epochs] == [r["train_loss"] for r in uninterrupted.history.epochs]


def test_freeze_encoder_keeps_weights_and_bn_statistics():
    trainer = _trainer(epochs=1, freeze_encoder=True)
    before = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    decoder_before = trainer.model.classifier.weight.clone()
    trainer.fit()
    for key, value in trainer.model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(trainer.model.classifier.weight, decoder_before)
    trainer.model.train()
    assert not trainer.model.encoder.training and trainer.model.decoder.training
    trainer.model.freeze_encoder(False)
    assert trainer.model.encoder.training and all(p.requires_grad for p in trainer.model.encoder.parameters())


def test_encoder_learning_rate_scale():
    trainer = _trainer(epochs=1, encoder_lr_scale=0.1)
    rest, encoder = trainer.optimizer.param_groups
    assert encoder["lr"] == pytest.approx(0.1 * rest["lr"])
    assert {id(p) for p in encoder["params"]} == {id(p) for p in trainer.model.encoder.parameters()}


def test_accumulation_steps_the_optimizer_once_per_group():
    trainer = _trainer(epochs=1, accumulate_steps=3)  # 4 batches -> groups of 3 and 1
    trainer.fit()
    assert trainer.scheduler.last_epoch == 2


@pytest.mark.parametrize("schedule", ["poly", "cosine", "constant"])
def test_schedules_end_where_they_should(schedule):
    trainer = _trainer(epochs=2, schedule=schedule, optimizer="sgd")
    trainer.fit()
    final = trainer.optimizer.param_groups[0]["lr"]
    assert final == pytest.approx(1e-2 if schedule == "constant" else 0.0, abs=1e-12)


@pytest.mark.isolated  # a bf16 kernel crash fails this test, not the run
def test_bf16_autocast_on_cpu_trains():
    history = _trainer(epochs=1, amp=True).fit()
    assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])


def test_checkpoints_rebuild_the_model(tmp_path):
    trainer = _trainer(epochs=2, out_dir=tmp_path)
    trainer.fit()
    best = max(trainer.history.epochs, key=lambda r: r["mean_iou"])
    checkpoint = segzoo.io.checkpoint.load_checkpoint(tmp_path / "best.pt")
    assert checkpoint["metrics"]["mean_iou"] == best["mean_iou"]
    model = segzoo.load(tmp_path / "last.pt").eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), trainer.model.eval()(x))


def test_resume_refuses_another_model(tmp_path):
    _trainer(epochs=1, out_dir=tmp_path).fit()
    other = _trainer(epochs=1, model=segzoo.SegNetBasic(3, ceil_mode=False))
    with pytest.raises(ValueError, match="config"):
        other.resume(tmp_path / "last.pt")


@pytest.mark.parametrize(("field", "value"), [("optimizer", "adam"), ("schedule", "step"), ("epochs", 0), ("lr", 0.0)])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_predict_accepts_pil_arrays_and_uint8_tensors():
    torch.manual_seed(0)
    model = segzoo.SegNetBasic(3).train()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    mean, std = torch.tensor(model.mean).view(3, 1, 1), torch.tensor(model.std).view(3, 1, 1)
    normalised = ((torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 - mean) / std).unsqueeze(0)
    expected = model.eval()(normalised).argmax(1)
    model.train()
    for images in (Image.fromarray(pixels), [Image.fromarray(pixels)], pixels, torch.from_numpy(pixels).permute(2, 0, 1)):
        labels = model.predict(images)
        assert labels.shape == (1, 20, 24)
        assert torch.equal(labels, expected)
    assert model.training, "predict restores the previous mode"
    probabilities = model.predict(pixels, return_probabilities=True)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(1, 20, 24))
    with pytest.raises(TypeError, match="uint8"):
        model.predict(torch.zeros(3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="share a size"):
        model.predict([pixels, pixels[:10]])


def test_progress_bars_show_live_loss_and_miou(capsys, monkeypatch):
    """With progress on, the bars (tqdm, on stderr here) carry the running loss and mIoU."""
    monkeypatch.setattr("segzoo.training.evaluation.interactive", lambda: True)  # as in a terminal
    trainer = _trainer(epochs=2)
    trainer.progress = True
    trainer.fit()
    err = capsys.readouterr().err
    assert "loss=" in err and "mIoU=" in err and "val_mIoU=" in err


def test_resume_with_other_steps_per_epoch_continues_the_schedule(tmp_path):
    """A checkpoint from a run with 4 steps per epoch (e.g. one process) resumed with 2 steps per
    epoch (e.g. two processes): the schedule continues from the epoch, not the saved step count."""
    data = toy_dataset(size=16)
    torch.manual_seed(0)
    first = Trainer(segzoo.SegNetBasic(3), DataLoader(data, batch_size=4), config=TrainConfig(epochs=1, lr=1e-2), out_dir=tmp_path, progress=False)
    first.fit()
    loader = DataLoader(data, batch_size=8, shuffle=True, drop_last=True)
    resumed = Trainer(segzoo.SegNetBasic(3), loader, config=TrainConfig(epochs=3, lr=1e-2), progress=False)
    resumed.resume(tmp_path / "last.pt")
    assert resumed.scheduler.last_epoch == 2
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([1e-2 * (1 - 2 / 6) ** 0.9] * 2)
    resumed.optimizer.step()
    resumed.scheduler.step()
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([1e-2 * (1 - 3 / 6) ** 0.9] * 2)


class _NoPooling(segzoo.SegmentationModel):
    """Conv-BN-ReLU stages and a 1x1 classifier: every op has a deterministic CPU kernel, which
    SegNet's max_unpool2d lacks. Records whether deterministic algorithms were on in each forward."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.encoder = segzoo.VGGEncoder(3, True, ((8,), (8,)))
        self.classifier = nn.Conv2d(8, num_classes, 1)
        self.deterministic_calls: list[bool] = []

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def forward(self, x):
        self.deterministic_calls.append(torch.are_deterministic_algorithms_enabled())
        for stage in self.encoder.stages:
            x = stage(x)
        return self.classifier(x)


class _RandomFlips(Dataset):
    """The toy task, each item flipped at random in the DataLoader worker that loads it."""

    def __init__(self) -> None:
        self.items = toy_dataset()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        image, mask = self.items[index]
        return (image.flip(-1), mask.flip(-1)) if torch.rand(()) < 0.5 else (image, mask)


def _deterministic_run(seed):
    torch.manual_seed(0)  # the same initial weights in every run
    train = DataLoader(_RandomFlips(), batch_size=4, shuffle=True, drop_last=True, num_workers=2)
    config = TrainConfig(epochs=1, lr=1e-2, seed=seed, deterministic=True)
    trainer = Trainer(_NoPooling(), train, DataLoader(toy_dataset(), batch_size=8), config, progress=False)
    trainer.fit()
    return trainer


def test_deterministic_runs_give_bitwise_identical_weights():
    first, second = _deterministic_run(seed=0), _deterministic_run(seed=0)
    assert first.model.deterministic_calls and all(first.model.deterministic_calls)
    assert not torch.are_deterministic_algorithms_enabled(), "the flag is restored after fit"
    for (key, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), key
    other = _deterministic_run(seed=1)  # negative control: other shuffles and flips, same start
    assert not all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), other.model.state_dict().values()))


def test_deterministic_flags_are_restored_even_when_fit_stops(monkeypatch):
    seen = []

    def interrupted(self):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark))
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    benchmark = torch.backends.cudnn.benchmark
    trainer = Trainer(_NoPooling(), DataLoader(toy_dataset(), batch_size=4), config=TrainConfig(deterministic=True), progress=False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = True
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer.fit()
        assert seen == [(True, False, False)]
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = benchmark


def test_segnet_basic_trains_deterministically_with_compact_unpooling():
    def run():
        trainer = _trainer(epochs=1, deterministic=True)
        trainer.fit()
        return trainer.model.state_dict()

    first, second = run(), run()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_deterministic_training_refuses_native_unpooling():
    """torch has no deterministic max_unpool2d kernel: say so before training, not deep inside it."""
    with pytest.raises(ValueError, match="unpooling='compact'"):
        _trainer(model=segzoo.SegNetBasic(3, unpooling="native"), deterministic=True)


def test_deterministic_needs_a_seed():
    with pytest.raises(ValueError, match="seed"):
        TrainConfig(deterministic=True, seed=None)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "backbone."])
def test_resume_reads_a_wrapped_models_state_dict_and_refuses_other_prefixes(tmp_path, prefix):
    """A last.pt whose weights were saved from a DDP-wrapped (module.) or compiled (_orig_mod.)
    model resumes with exactly those weights; any other prefix is refused and loads nothing."""
    saved = _trainer(epochs=1, out_dir=tmp_path)
    saved.fit()
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    checkpoint["state_dict"] = {prefix + key: value for key, value in checkpoint["state_dict"].items()}
    torch.save(checkpoint, tmp_path / "last.pt")
    resumed = _trainer(epochs=2, model=segzoo.SegNetBasic(3))
    before = {key: value.clone() for key, value in resumed.model.state_dict().items()}
    if prefix == "backbone.":
        with pytest.raises(ValueError, match=r"does not fit SegNetBasic: .*unexpected \[backbone\."):
            resumed.resume(tmp_path / "last.pt")
        expected = before
    else:
        resumed.resume(tmp_path / "last.pt")
        expected = saved.model.state_dict()
    state = resumed.model.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[key], expected[key]) for key in state)
