"""U-Net on VGG16: parameter count by hand, the decoder against NumPy upsampling, encoder weights, export."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import assert_program_matches_eager
from support.reference_upsampling import bilinear2x
from support.tv_layout import assert_encoder_matches, random_state_dict

from segzoo import UNetVGG16

VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def _conv(cin: int, cout: int, k: int = 3, bn: bool = True) -> int:
    return cin * cout * k * k + cout + (2 * cout if bn else 0)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_parameter_count_by_hand(batch_norm):
    with torch.device("meta"):
        model = UNetVGG16(21, batch_norm=batch_norm)
    cin, encoder = 3, 0
    for w in VGG16_WIDTHS:
        encoder += _conv(cin, w, bn=batch_norm)
        cin = w
    # (input, middle, output) of the centre and the five decoder blocks; inputs: upsampled + skip
    blocks = [(512, 512, 256), (256 + 512, 512, 256), (256 + 512, 512, 256), (256 + 256, 256, 64), (64 + 128, 128, 32), (32 + 64, 32, 32)]
    decoder = sum(_conv(i, m, bn=batch_norm) + _conv(m, o, bn=batch_norm) for i, m, o in blocks)
    expected = encoder + decoder + _conv(32, 21, 1, bn=False)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert expected == (29_330_517 if batch_norm else 29_316_373)


def test_ternausnet_unet16_count():
    """TernausNet's UNet16 (no BN, one class, one conv in its finest block) has 32*32*9 + 32 fewer."""
    with torch.device("meta"):
        model = UNetVGG16(1, batch_norm=False)
    assert sum(p.numel() for p in model.parameters()) - (32 * 32 * 9 + 32) == 29_306_465


@pytest.mark.parametrize("size", [(45, 61), (33, 32)])
def test_decoder_matches_numpy_upsampling(size):
    """Skips are the pre-pool stage outputs; each block upsamples, cuts to its skip, concatenates
    [upsampled, skip] in that order and applies its convs."""
    torch.manual_seed(0)
    model = UNetVGG16(4).double().eval()
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        skips, h = [], x
        for stage in model.encoder.stages:
            h = stage(h)
            skips.append(h)
            h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        h = model.center(h)
        for block, skip in zip(model.decoder, reversed(skips)):
            up = bilinear2x(h.numpy())[..., : skip.shape[-2], : skip.shape[-1]]
            h = block(torch.cat([torch.from_numpy(np.ascontiguousarray(up)), skip], 1))
        torch.testing.assert_close(model(x), model.classifier(h), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "plain"])
def test_weights_backbone_lands_in_the_encoder(batch_norm):
    state = random_state_dict(batch_norm, seed=5, classifier=False)
    model = UNetVGG16(21, batch_norm=batch_norm, weights_backbone=state)
    assert_encoder_matches(model.encoder, state, batch_norm)


@pytest.mark.slow  # 2-3x DeepLab's export time; the default run exports DeepLab and FCN-Basic
def test_exported_program_matches_eager(model_cache):
    assert_program_matches_eager(model_cache("unet_vgg16"))


