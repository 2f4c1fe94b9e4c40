"""DeepLab-LargeFOV: parameter count by hand, Caffe's pooling geometry, the x8 zoom, decimated ImageNet fc layers."""

import math

import pytest
import torch
from support.graphs import assert_compiled_matches_eager, assert_program_matches_eager
from support.tv_layout import assert_encoder_matches, random_state_dict
from torch import nn

from segzoo import DeepLabLargeFOV

VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def _caffe_pooled(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooling output size: ceil rounding, the last window starting inside the padded input."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    return out - 1 if (out - 1) * stride >= size + pad else out


@pytest.mark.parametrize("batch_norm", [False, True])
def test_parameter_count_by_hand(batch_norm):
    with torch.device("meta"):
        model = DeepLabLargeFOV(21, batch_norm=batch_norm)
    cin, encoder = 3, 0
    for w in VGG16_WIDTHS:
        encoder += _conv(cin, w, 3) + (2 * w if batch_norm else 0)
        cin = w
    expected = encoder + _conv(512, 1024, 3) + _conv(1024, 1024, 1) + _conv(1024, 21, 1)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert expected == (20_513_877 if batch_norm else 20_505_429)
    assert round(expected / 1e6, 1) == 20.5  # Chen et al. / the SegNet paper: 20.5M


def test_dilations_and_fc_layers():
    model = DeepLabLargeFOV(21)
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.dilation for c in convs] == [(1, 1)] * 10 + [(2, 2)] * 3
    assert all(c.padding == c.dilation for c in convs)
    assert (model.fc6.kernel_size, model.fc6.dilation, model.fc6.padding, model.fc6.out_channels) == ((3, 3), (12, 12), (12, 12), 1024)
    assert (model.fc7.kernel_size, model.fc7.out_channels, model.fc8.out_channels) == ((1, 1), 1024, 21)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2


@pytest.mark.parametrize("size", [(45, 61), (360, 480), (1, 2), (17, 16)])
def test_output_stride_8_with_caffe_pooling_and_aligned_zoom(model_cache, size):
    """fc8 works on Caffe's pooled sizes (3x3/2 pad 1 three times, then 3x3/1 pad 1); the logits at
    input pixel (8i, 8j) are fc8's score (i, j) exactly (Interp with zoom_factor 8, corners aligned)."""
    model = model_cache("deeplab_largefov").eval()
    seen = {}
    handle = model.fc8.register_forward_hook(lambda m, i, o: seen.__setitem__("fc8", o))
    try:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = model(x)
    finally:
        handle.remove()
    expected = list(size)
    for _ in range(3):
        expected = [_caffe_pooled(s, 3, 2, 1) for s in expected]
    assert tuple(seen["fc8"].shape[-2:]) == tuple(expected)
    if size == (360, 480):
        assert expected == [46, 61]
    assert out.shape[-2:] == size
    on_grid = seen["fc8"][..., : math.ceil(size[0] / 8), : math.ceil(size[1] / 8)]
    torch.testing.assert_close(out[..., ::8, ::8], on_grid, rtol=0, atol=1e-5)


def test_weights_backbone_decimates_the_imagenet_fc_layers():
    """Encoder as in vgg16; fc6 [o, c, i, j] = classifier.0 [4o, c*49 + 3i*7 + 3j], fc7 [o, c] = classifier.3 [4o, 4c]."""
    state = random_state_dict(False, seed=4)
    model = DeepLabLargeFOV(21, batch_norm=False, weights_backbone=state)
    assert_encoder_matches(model.encoder, state, False)
    fc6, fc7 = state["classifier.0.weight"], state["classifier.3.weight"]
    generator = torch.Generator().manual_seed(0)
    for o, c, i, j in zip(*(torch.randint(0, n, (200,), generator=generator).tolist() for n in (1024, 512, 3, 3))):
        assert model.fc6.weight[o, c, i, j] == fc6[4 * o, c * 49 + 3 * i * 7 + 3 * j]
    for o, c in zip(*(torch.randint(0, 1024, (200,), generator=generator).tolist() for _ in range(2))):
        assert model.fc7.weight[o, c, 0, 0] == fc7[4 * o, 4 * c]
    assert torch.equal(model.fc6.bias, state["classifier.0.bias"][::4])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"][::4])
    assert model.fc6.weight.is_contiguous()


def test_weights_backbone_on_a_one_channel_model_sums_the_rgb_filters():
    state = random_state_dict(False, seed=5)
    model = DeepLabLargeFOV(21, in_channels=1, batch_norm=False, weights_backbone=state)
    first = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    torch.testing.assert_close(first.weight, state["features.0.weight"].sum(1, keepdim=True))


def test_exported_program_matches_eager(model_cache):
    assert_program_matches_eager(model_cache("deeplab_largefov"))


@pytest.mark.slow
@pytest.mark.isolated
def test_compiled_model_matches_eager_at_two_sizes(model_cache):
    assert_compiled_matches_eager(model_cache("deeplab_largefov"))