"""Prepacked convolutions: each against the plain conv computed in float64 (strides, dilations,
groups, odd sizes, both memory formats), the ReLU fusion rule inside nn.Sequential, and what is
left alone."""

from __future__ import annotations

import copy
import platform

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segzoo.inference.optimize import native_bf16
from segzoo.inference.prepack import PrepackedConv2d, packable, prepack_available, prepack_convolutions
from segzoo.models.score import ScoreConv2d

pytestmark = pytest.mark.skipif(not prepack_available(), reason="this PyTorch build has no oneDNN")

# (in, out, kernel, stride, padding, dilation, groups, bias)
CONVS = [
    (3, 8, 7, 1, 3, 1, 1, True),
    (16, 16, 3, 1, 1, 1, 1, True),
    (16, 24, 3, 2, 1, 1, 1, False),
    (16, 16, 3, 1, 12, 12, 1, True),  # DeepLab's dilated fc6
    (16, 16, 7, 1, 3, 1, 16, True),  # one filter per map (SegNet-Basic's single-channel decoder)
    (16, 5, 1, 1, 0, 1, 1, True),  # a classifier
]


def _conv(i, o, k, s, p, d, g, bias, dtype) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(i, o, k, stride=s, padding=p, dilation=d, groups=g, bias=bias).to(dtype).eval().requires_grad_(False)


@pytest.mark.parametrize("post_op", ["none", "relu", "clamp"])
@pytest.mark.parametrize("spec", CONVS)
@pytest.mark.parametrize("size", [(1, 37, 53), (2, 5, 7), (1, 360, 48)])
def test_float32_matches_the_conv_in_float64(spec, size, post_op):
    conv = _conv(*spec, torch.float32)
    low, high = -0.3, 0.2
    packed = PrepackedConv2d(conv, relu=post_op == "relu", clamp=(low, high) if post_op == "clamp" else None)
    n, h, w = size
    x = torch.randn(n, spec[0], h, w, generator=torch.Generator().manual_seed(1))
    expected = F.conv2d(x.double(), conv.weight.double(), None if conv.bias is None else conv.bias.double(),
                        conv.stride, conv.padding, conv.dilation, conv.groups)  # fmt: skip
    expected = {"none": expected, "relu": expected.clamp_min(0), "clamp": expected.clamp(low, high)}[post_op]
    for memory_format in (torch.contiguous_format, torch.channels_last):
        got = packed(x.contiguous(memory_format=memory_format))
        assert got.dtype == torch.float32 and got.shape == expected.shape
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    if post_op == "relu":
        assert (got >= 0).all() and (got == 0).any()
    if post_op == "clamp":
        assert (got == low).any() and (got == high).any()


@pytest.mark.isolated  # bf16 kernels have crashed natively on some CPUs (issue 17): this test fails, not the run
@pytest.mark.skipif(not native_bf16("cpu"), reason="bf16 is only prepacked where it is native")
def test_bfloat16_matches_the_conv_and_casts_float32_input():
    """bf16 weights: the output is bf16 and within bf16 rounding of the float64 conv of the same
    bf16 values; float32 input is cast to bf16 first, as autocast does. (One test for every conv:
    each isolated test costs a process.)"""
    for spec in CONVS:
        conv = _conv(*spec, torch.bfloat16)
        packed = PrepackedConv2d(conv, relu=True)
        x = torch.randn(2, spec[0], 29, 41, generator=torch.Generator().manual_seed(2))
        bias = None if conv.bias is None else conv.bias.double()
        expected = F.relu(F.conv2d(x.bfloat16().double(), conv.weight.double(), bias, conv.stride, conv.padding, conv.dilation, conv.groups))
        for given in (x, x.bfloat16().contiguous(memory_format=torch.channels_last)):
            got = packed(given)
            assert got.dtype == torch.bfloat16, spec
            torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2 * expected.abs().max().item(), msg=str(spec))


def test_the_relu_after_a_conv_is_fused_across_identities_and_nothing_else():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0: fused with 2 across the Identity a folded BN leaves
        nn.Identity(),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),  # 3: followed by a BN, not a ReLU: packed, no ReLU
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),  # 6: not zero padding: left alone
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 4, 1)),  # 8.0: last in its Sequential: packed, no ReLU
        nn.LeakyReLU(),
    ).eval()
    x = torch.randn(2, 3, 19, 23)
    with torch.no_grad():
        expected = model(x)
        assert prepack_convolutions(model) == 3
        got = model(x)
    assert isinstance(model[0], PrepackedConv2d) and model[0].relu and isinstance(model[2], nn.Identity)
    assert isinstance(model[3], PrepackedConv2d) and not model[3].relu and isinstance(model[5], nn.ReLU)
    assert type(model[6]) is nn.Conv2d and isinstance(model[7], nn.ReLU)
    assert isinstance(model[8][0], PrepackedConv2d) and not model[8][0].relu and isinstance(model[9], nn.LeakyReLU)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_no_relu_is_fused_where_a_sequential_runs_its_own_forward():
    """A Sequential subclass may do something between the conv and the ReLU: its convs are packed,
    its ReLUs stay where they are, and the output is unchanged."""

    class Residual(nn.Sequential):
        def forward(self, x):
            return self[1](self[0](x) - 1.0)

    torch.manual_seed(0)
    model = Residual(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    x = torch.randn(1, 3, 9, 11)
    with torch.no_grad():
        expected = model(x)
        assert prepack_convolutions(model) == 1
        got = model(x)
    assert isinstance(model[0], PrepackedConv2d) and not model[0].relu and isinstance(model[1], nn.ReLU)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_what_cannot_be_prepacked_is_left_alone_or_refused():
    score = ScoreConv2d(16, 5)
    assert not packable(score) and not packable(nn.ConvTranspose2d(4, 4, 3)) and not packable(nn.Conv2d(4, 4, 3, padding="same"))
    assert not packable(nn.Conv2d(4, 4, 3).double()) and not packable(nn.Linear(4, 4))
    model = nn.Sequential(score, nn.ReLU())
    assert prepack_convolutions(model) == 0 and model[0] is score
    with pytest.raises(ValueError, match="only a zero-padded CPU nn.Conv2d"):
        PrepackedConv2d(nn.Conv2d(4, 4, 3, padding="same"))
    with pytest.raises(ValueError, match="a ReLU or a clamp, not both"):
        PrepackedConv2d(nn.Conv2d(4, 4, 3), relu=True, clamp=(0.0, 1.0))


def test_a_packed_conv_keeps_the_attributes_models_read_and_stays_out_of_the_state_dict():
    conv = _conv(16, 24, 3, 2, 1, 1, 1, False, torch.float32)
    packed = PrepackedConv2d(conv)
    assert (packed.in_channels, packed.out_channels, packed.kernel_size, packed.stride, packed.padding) == (16, 24, (3, 3), (2, 2), (1, 1))
    assert list(packed.state_dict()) == ["bias"] and torch.equal(packed.bias, torch.zeros(24))
    assert "relu=False" in repr(packed)


def test_a_deep_copy_computes_the_same_and_shares_only_the_packed_weight():
    packed = PrepackedConv2d(_conv(16, 24, 3, 1, 1, 1, 1, True, torch.float32), relu=True)
    clone = copy.deepcopy(nn.Sequential(packed))[0]
    x = torch.randn(1, 16, 9, 11)
    assert torch.equal(clone(x), packed(x)) and clone.relu
    assert clone.packed_weight is packed.packed_weight and clone.bias is not packed.bias


def test_nothing_is_prepacked_off_x86(monkeypatch):
    """Prepacking was measured on x86 only: elsewhere the model is left as it was."""
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    assert not prepack_available() and prepack_convolutions(model) == 0
    assert type(model[0]) is nn.Conv2d and isinstance(model[1], nn.ReLU)
