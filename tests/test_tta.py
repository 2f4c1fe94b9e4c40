"""Test-time augmentation (inference/tta.py): flips and scales, against hand computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segzoo.inference.tta import augmented


def _conv_model(symmetric: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1)).eval()
    if symmetric:  # kernels mirrored left-right: the model commutes with horizontal flips
        with torch.no_grad():
            for conv in (model[0], model[2]):
                conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    return model


def _softmax(model):
    return lambda x: model(x).softmax(1)


def test_flip_tta_of_a_flip_symmetric_model_changes_nothing():
    model = _conv_model(symmetric=True)
    x = torch.randn(2, 3, 11, 14)
    with torch.no_grad():
        plain = model(x).softmax(1)
    torch.testing.assert_close(augmented(_softmax(model), flip=True)(x), plain, atol=1e-6, rtol=0)


def test_flip_tta_is_the_mean_of_both_passes_and_flip_equivariant():
    model = _conv_model(symmetric=False)
    x = torch.randn(1, 3, 9, 13)
    tta = augmented(_softmax(model), flip=True)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1)) / 2
    out = tta(x)
    assert torch.equal(out, expected)
    assert not torch.allclose(out, model(x).softmax(1).detach(), atol=1e-3)  # the model is not symmetric
    assert torch.equal(tta(x.flip(-1)), out.flip(-1))


def test_scales_resize_in_and_back_and_average():
    model = _conv_model(symmetric=False)
    x = torch.randn(1, 3, 12, 16)
    out = augmented(_softmax(model), flip=False, scales=(0.5, 1.0, 1.5))(x)
    with torch.no_grad():
        expected = []
        for scale in (0.5, 1.0, 1.5):
            size = (round(12 * scale), round(16 * scale))
            scaled = x if scale == 1.0 else F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1)
            p = model(scaled).softmax(1)
            expected.append(p if scale == 1.0 else F.interpolate(p, size=(12, 16), mode="bilinear"))
    torch.testing.assert_close(out, sum(expected) / 3, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 12, 16), atol=1e-5, rtol=0)


@pytest.mark.parametrize("scales", [(), (0.0,), (-1.0,), ("1",), "1", (True,)])
def test_bad_scales_are_refused(scales):
    with pytest.raises(ValueError, match="scales"):
        augmented(lambda x: x, scales=scales)
