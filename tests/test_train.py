"""The trainer: learning, exact resume, freezing, differential LR, accumulation, AMP, predict."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import segzoo
from segzoo import TrainConfig, Trainer


def _toy(n=16, size=32, seed=0):
    """A learnable toy task: the label is a function of the first two channels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x, y)


def _trainer(model=None, epochs=3, out_dir=None, **config):
    torch.manual_seed(0)
    model = model or segzoo.SegNetBasic(3)
    data = _toy()
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


def test_bf16_autocast_on_cpu_trains():
    history = _trainer(epochs=1, amp=True).fit()
    assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])


def test_checkpoints_rebuild_the_model(tmp_path):
    trainer = _trainer(epochs=2, out_dir=tmp_path)
    trainer.fit()
    best = max(trainer.history.epochs, key=lambda r: r["mean_iou"])
    checkpoint = segzoo.checkpoint.load_checkpoint(tmp_path / "best.pt")
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


def test_progress_bars_show_live_loss_and_miou(capsys):
    """With progress on, the bars (tqdm, on stderr here) carry the running loss and mIoU."""
    trainer = _trainer(epochs=2)
    trainer.progress = True
    trainer.fit()
    err = capsys.readouterr().err
    assert "loss=" in err and "mIoU=" in err and "val_mIoU=" in err
