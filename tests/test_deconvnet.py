"""DeconvNet: parameter count by hand, layers, unpooling against NumPy, ImageNet weights, export.

The full model holds 252M parameters (1 GB): structure tests build it on the meta device, forward and
export tests use a narrow copy (fc6 / fc7 / deconv-fc6 64 wide instead of 4096: the same graph), and
the tests that need the real widths go with the slow ones.
"""

import numpy as np
import pytest
import torch
from support.graphs import assert_program_matches_eager
from support.reference_pooling import pool, unpool
from support.tv_layout import assert_encoder_matches, random_state_dict
from torch import nn

from segzoo import DeconvNet
from segzoo.models.blocks import ConvBNReLU

VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
# Noh et al., Table 1: deconv5_1 .. deconv1_2, after deconv-fc6 (512 channels)
DECODER_WIDTHS = [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64, 64]


def _conv_bn(cin: int, cout: int, k: int) -> int:
    """A conv (or deconv) with bias, then BN."""
    return cin * cout * k * k + cout + 2 * cout


def _chain(widths: list[int], cin: int, k: int = 3) -> int:
    total = 0
    for w in widths:
        total += _conv_bn(cin, w, k)
        cin = w
    return total


def narrow(num_classes: int = 4, width: int = 64, **kwargs) -> DeconvNet:
    """DeconvNet with fc6 / fc7 / deconv-fc6 ``width`` wide, built without ever allocating the full one."""
    with torch.device("meta"):
        model = DeconvNet(num_classes, **kwargs)
    model.fc6 = ConvBNReLU(512, width, 7)
    model.fc7 = ConvBNReLU(width, width, 1)
    model.deconv_fc6 = ConvBNReLU(width, 512, 7, transposed=True)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def test_parameter_count_by_hand():
    with torch.device("meta"):
        model = DeconvNet(21)
    expected = (
        _chain(VGG16_WIDTHS, 3)
        + _conv_bn(512, 4096, 7)  # fc6
        + _conv_bn(4096, 4096, 1)  # fc7
        + _conv_bn(4096, 512, 7)  # deconv-fc6
        + _chain(DECODER_WIDTHS, 512)
        + 64 * 21
        + 21  # classifier
    )
    assert sum(p.numel() for p in model.parameters()) == expected == 251_805_653
    assert abs(expected / 1e6 - 252) < 0.5  # Noh et al.: 252M


def test_layers():
    with torch.device("meta"):
        model = DeconvNet(21)
    encoder = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in encoder] == VGG16_WIDTHS
    deconvs = [model.deconv_fc6.conv] + [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(isinstance(d, nn.ConvTranspose2d) for d in deconvs)
    assert [d.out_channels for d in deconvs] == [512] + DECODER_WIDTHS
    assert deconvs[0].kernel_size == (7, 7) and all(d.kernel_size == (3, 3) and d.stride == (1, 1) for d in deconvs[1:])
    assert (model.fc6.conv.kernel_size, model.fc7.conv.kernel_size) == ((7, 7), (1, 1))
    # BN and ReLU after every conv and deconv; the 1x1 classifier alone has neither
    blocks = [m for m in model.modules() if isinstance(m, ConvBNReLU)]
    assert len(blocks) == 13 + 3 + 13 and all(hasattr(b, "bn") and hasattr(b, "relu") for b in blocks)
    assert isinstance(model.classifier, nn.Conv2d) and model.classifier.kernel_size == (1, 1)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("size", [(45, 61), (1, 3)])
def test_forward_matches_numpy_pooling_and_unpooling(size):
    """Encoder, fc layers and decoder wired by hand with the NumPy reference pooling."""
    model = narrow().double().eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        positions, sizes, h = [], [], x
        for stage in model.encoder.stages:
            h = stage(h)
            sizes.append(tuple(h.shape[-2:]))
            values, where = pool(h.numpy(), ceil_mode=True)
            positions.append(where)
            h = torch.from_numpy(values)
        h = model.deconv_fc6(model.fc7(model.fc6(h)))
        for stage, where, shape in zip(model.decoder, reversed(positions), reversed(sizes)):
            h = stage(torch.from_numpy(unpool(h.numpy(), where, shape)))
        np.testing.assert_allclose(model(x).numpy(), model.classifier(h).numpy(), rtol=1e-10, atol=1e-10)


def test_native_and_compact_unpooling_agree():
    model = narrow().eval()
    native = narrow(unpooling="native").eval()
    native.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(model(x), native(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="unpooling must be one of"):
        narrow(unpooling="fast")


@pytest.mark.slow  # SegNet's export covers the unpooling, DeepLab's and FCN-Basic's the rest, in every run
def test_exported_program_matches_eager():
    # native unpooling: a third of the compact graph's export time; the ONNX test below exports compact
    assert_program_matches_eager(narrow(unpooling="native"))


@pytest.mark.slow
def test_weights_backbone_lands_encoder_fc6_fc7():
    """The full model: encoder from vgg16_bn, fc6/fc7 = the classifier reshaped; their BNs and the
    decoder keep their fresh values."""
    state = random_state_dict(True, seed=3)
    model = DeconvNet(21, weights_backbone=state)
    assert_encoder_matches(model.encoder, state, True)
    assert torch.equal(model.fc6.conv.weight, state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(model.fc7.conv.weight, state["classifier.3.weight"].reshape(4096, 4096, 1, 1))
    assert torch.equal(model.fc7.conv.bias, state["classifier.3.bias"])
    assert torch.equal(model.fc6.bn.running_var, torch.ones(4096))


