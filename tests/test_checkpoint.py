"""Training checkpoints: atomic writes, safe reads, rebuilding a model from a file alone."""

import os

import pytest
import torch

import segzoo
from segzoo.checkpoint import load_checkpoint, save_atomic, save_checkpoint


@pytest.mark.parametrize("name", segzoo.list_models())
def test_every_model_round_trips(tmp_path, name):
    kwargs = {"num_classes": 3, "in_channels": 1}
    if name.startswith("fcn"):
        kwargs.update(geometry="caffe", fixed_upsampling=True, batch_norm=False)
    model = segzoo.get_model(name, **kwargs).eval()
    path = save_checkpoint(tmp_path / "model.pt", model, epoch=7)
    rebuilt = segzoo.load(path).eval()
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    x = torch.randn(1, 1, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    assert load_checkpoint(path)["epoch"] == 7


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = save_atomic({"version": 1}, tmp_path / "ckpt.pt")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"version": 2}, target)
    assert torch.load(target, weights_only=True) == {"version": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"], "the temporary file is cleaned up"


def test_not_a_segzoo_checkpoint(tmp_path):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a segzoo checkpoint"):
        segzoo.load(tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError):
        segzoo.load(tmp_path / "missing.pt")


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable segzoo checkpoint"):
        segzoo.load(path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_code_in_a_checkpoint_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "segzoo-checkpoint/1", "x": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable segzoo checkpoint"):
        segzoo.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", segzoo.SegNetBasic(2))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["classifier.weight"] = torch.zeros(5, 64, 1, 1)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="classifier.weight"):
        segzoo.load(path)
