"""Sliding-window inference (inference/tiling.py) against whole-image predictions and by hand."""

import pytest
import torch
from torch import nn

import segzoo
from segzoo.inference.tiling import sliding_window, tile_starts, tile_weights


def _pixelwise(num_classes: int = 4, channels: int = 3) -> nn.Module:
    """A model whose output at a pixel depends on that pixel alone: tiles cannot change it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 8, 1), nn.ReLU(), nn.Conv2d(8, num_classes, 1)).eval()


def _softmax(model: nn.Module):
    return lambda x: model(x).softmax(1)


@pytest.mark.parametrize(
    ("length", "tile", "stride", "expected"),
    [(10, 4, 3, [0, 3, 6]), (10, 4, 2, [0, 2, 4, 6]), (11, 4, 3, [0, 3, 6, 7]), (4, 4, 1, [0]), (3, 5, 2, [0])],
)
def test_tile_starts_cover_every_pixel_flush_with_the_end(length, tile, stride, expected):
    starts = tile_starts(length, tile, stride)
    assert starts == expected
    covered = {p for s in starts for p in range(s, min(s + tile, length))}
    assert covered == set(range(length))


def test_gaussian_weights_peak_in_the_centre_and_stay_positive():
    weight = tile_weights(9, 7, "gaussian")
    assert weight.shape == (9, 7) and weight.max() == 1.0 and weight[4, 3] == 1.0
    assert (weight > 0).all()
    assert torch.equal(weight, weight.flip(0)) and torch.equal(weight, weight.flip(1))
    # separable Gaussian with sigma = side / 8, by hand at a corner
    expected = torch.exp(torch.tensor(-0.5 * ((4 / (9 / 8)) ** 2 + (3 / (7 / 8)) ** 2))).item()
    assert weight[0, 0].item() == pytest.approx(max(expected, 1e-6), rel=1e-5)
    assert torch.equal(tile_weights(3, 2, "mean"), torch.ones(3, 2))


def test_a_tile_covering_the_image_is_the_whole_image_prediction():
    model = segzoo.SegNetBasic(3).eval()
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        whole = model(x).softmax(1)
    assert torch.equal(sliding_window(_softmax(model), x, (64, 64)), whole)
    assert torch.equal(sliding_window(_softmax(model), x, (37, 45), overlap=0.5), whole)


@pytest.mark.parametrize("blend", ["gaussian", "mean"])
@pytest.mark.parametrize(("tile", "overlap", "batch"), [((8, 8), 0.25, 4), ((5, 7), 0.5, 3), ((16, 3), 0.0, 1)])
def test_tiles_of_a_pixelwise_model_leave_no_seam(blend, tile, overlap, batch):
    """Every pixel's blended output equals the whole-image output: no seam anywhere."""
    model = _pixelwise()
    x = torch.randn(2, 3, 23, 29)
    with torch.no_grad():
        whole = model(x).softmax(1)
    tiled = sliding_window(_softmax(model), x, tile, overlap, blend, batch)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def test_blending_is_the_weighted_mean_of_overlapping_tiles():
    """A predictor that outputs each tile's index everywhere: the blend is worked out by hand."""
    calls = []

    def tile_index(crops):
        out = []
        for _ in crops:
            out.append(torch.full((1, *crops.shape[-2:]), float(len(calls))))
            calls.append(None)
        return torch.stack(out)

    x = torch.zeros(1, 1, 1, 6)
    out = sliding_window(tile_index, x, (1, 4), overlap=0.5, blend="mean", batch_size=1)
    # tiles start at 0 and 2 (stride 2): pixels 0-1 see tile 0, 2-3 both, 4-5 tile 1
    assert out.flatten().tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": (0, 4)}, "tile"),
        ({"tile": 8}, "tile"),
        ({"tile": (4, 4), "overlap": 1.0}, "overlap"),
        ({"tile": (4, 4), "blend": "max"}, "blend"),
        ({"tile": (4, 4), "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sliding_window(_softmax(_pixelwise()), torch.zeros(1, 3, 8, 8), **kwargs)
