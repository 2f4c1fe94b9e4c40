"""The SegNet paper's Table 1 decoder variants: parameter counts by hand, and each decoder against an
independent computation (NumPy pooling/unpooling and bilinear interpolation, or a sibling variant)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support.graphs import assert_compiled_matches_eager, assert_onnx_matches_eager, assert_program_matches_eager
from support.reference_pooling import pool, unpool
from support.reference_upsampling import bilinear2x
from torch import nn

from segzoo import (
    BilinearInterpolation,
    FCNBasic,
    FCNBasicNoAddition,
    FCNBasicNoAdditionNoDimReduction,
    FCNBasicNoDimReduction,
    SegNetBasic,
    SegNetBasicEncoderAddition,
    SegNetBasicSingleChannelDecoder,
)
from segzoo.models.decoder_variants import learned_upsampler

TABLE_1 = [
    "bilinear_interpolation",
    "segnet_basic_single_channel_decoder",
    "segnet_basic_encoder_addition",
    "fcn_basic",
    "fcn_basic_no_addition",
    "fcn_basic_no_dim_reduction",
    "fcn_basic_no_addition_no_dim_reduction",
]


def conv(cin: int, cout: int, k: int, bias: bool = True, groups: int = 1) -> int:
    return cin // groups * cout * k * k + (cout if bias else 0)


def bn(channels: int) -> int:
    return 2 * channels


K = 11  # CamVid's classes, as in the paper
ENCODER = conv(3, 64, 7, bias=False) + 3 * conv(64, 64, 7, bias=False) + 4 * bn(64)
CLASSIFIER = conv(64, K, 1)
EXPECTED = {
    SegNetBasic: ENCODER + 4 * (conv(64, 64, 7, bias=False) + bn(64)) + CLASSIFIER,
    SegNetBasicEncoderAddition: ENCODER + 4 * (conv(64, 64, 7, bias=False) + bn(64)) + CLASSIFIER,
    SegNetBasicSingleChannelDecoder: ENCODER + 4 * (conv(64, 64, 7, bias=False, groups=64) + bn(64)) + CLASSIFIER,
    BilinearInterpolation: ENCODER + CLASSIFIER,
    FCNBasic: ENCODER + 5 * conv(64, K, 1) + 4 * conv(K, K, 8, bias=False),
    FCNBasicNoAddition: ENCODER + conv(64, K, 1) + 4 * conv(K, K, 8, bias=False),
    FCNBasicNoDimReduction: ENCODER + 4 * conv(64, 64, 8, bias=False) + CLASSIFIER,
    FCNBasicNoAdditionNoDimReduction: ENCODER + 4 * conv(64, 64, 8, bias=False) + CLASSIFIER,
}
# Table 1's "Params (M)" column
PAPER_MILLIONS = {
    SegNetBasic: 1.425,
    SegNetBasicEncoderAddition: 1.425,
    SegNetBasicSingleChannelDecoder: 0.625,
    BilinearInterpolation: 0.625,
    FCNBasic: 0.65,
    FCNBasicNoAddition: 0.65,
    FCNBasicNoDimReduction: 1.625,
    FCNBasicNoAdditionNoDimReduction: 1.625,
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_parameter_counts_by_hand_and_against_the_paper(cls):
    with torch.device("meta"):
        model = cls(K)
    assert _count(model) == EXPECTED[cls]
    # the paper's figures are rounded (docstrings and README say how each differs): within 2.5 %
    assert abs(EXPECTED[cls] / 1e6 - PAPER_MILLIONS[cls]) / PAPER_MILLIONS[cls] < 0.025


def test_documented_counts():
    """The numbers quoted in docstrings and the README."""
    assert [EXPECTED[c] for c in (BilinearInterpolation, SegNetBasicSingleChannelDecoder, FCNBasic, FCNBasicNoAddition)] == [
        612_747,
        625_803,
        646_583,
        643_723,
    ]
    assert EXPECTED[FCNBasicNoDimReduction] == 1_661_323 and EXPECTED[SegNetBasicEncoderAddition] == 1_416_075


def test_single_channel_decoder_filters_see_one_map_each():
    model = SegNetBasicSingleChannelDecoder(K)
    decoder_convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(decoder_convs) == 4
    assert all(c.groups == 64 and c.weight.shape == (64, 1, 7, 7) and c.bias is None for c in decoder_convs)
    assert not any(isinstance(m, nn.ReLU) for m in model.decoder.modules())


def test_bilinear_interpolation_learns_nothing_in_its_decoder():
    model = BilinearInterpolation(K)
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {"encoder", "classifier"}


def _encode(model, x: torch.Tensor):
    """The model's conv stages with the NumPy pooling: (stage outputs, positions, pooled)."""
    outputs, positions = [], []
    h = x
    for stage in model.encoder.stages:
        h = stage(h)
        outputs.append(h)
        values, where = pool(h.numpy(), ceil_mode=True)
        positions.append(where)
        h = torch.from_numpy(values).to(x.dtype)  # the reference computes in float64; the values are exact
    return outputs, positions, h


@pytest.mark.parametrize("size", [(45, 61), (33, 32)])
def test_bilinear_interpolation_matches_numpy(size):
    torch.manual_seed(0)
    model = BilinearInterpolation(4).double().eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        outputs, _, h = _encode(model, x)
        h = h.numpy()
        for skip in reversed(outputs):
            h = bilinear2x(h)[..., : skip.shape[-2], : skip.shape[-1]]
        expected = model.classifier(torch.from_numpy(np.ascontiguousarray(h)))
        torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [SegNetBasicEncoderAddition, SegNetBasicSingleChannelDecoder], ids=lambda c: c.__name__)
@pytest.mark.parametrize("size", [(45, 61), (33, 32)])
def test_segnet_basic_variants_match_numpy_unpooling(cls, size):
    """Unpooling with the kept positions; EncoderAddition adds each stage's encoder map before its decoder conv.
    float32 (CPU float64 depthwise convolutions are slow): pooling and unpooling are exact either way."""
    torch.manual_seed(0)
    model = cls(4).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        outputs, positions, h = _encode(model, x)
        for stage, skip, where in zip(model.decoder, reversed(outputs), reversed(positions)):
            unpooled = torch.from_numpy(unpool(h.numpy(), where, tuple(skip.shape[-2:])))
            h = stage(unpooled + skip if cls is SegNetBasicEncoderAddition else unpooled)
        torch.testing.assert_close(model(x), model.classifier(h), rtol=0, atol=1e-5)


def test_learned_upsampler_starts_as_bilinear_interpolation():
    """Inside the border (where the deconvolution sees zero padding, interpolation clamps) the 8x8
    deconvolution equals F.interpolate's 2x bilinear upsampling, and it doubles the size exactly."""
    up = learned_upsampler(3)
    assert (up.kernel_size, up.stride, up.bias) == ((8, 8), (2, 2), None)
    x = torch.randn(2, 3, 7, 10)
    with torch.no_grad():
        out = up(x)
    assert out.shape == (2, 3, 14, 20)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], rtol=0, atol=1e-6)
    assert not learned_upsampler(3, fixed=True).weight.requires_grad


def test_fcn_basic_without_its_skip_reductions_is_no_addition():
    """Zero the 1x1 reductions of the encoder maps and FCN-Basic computes FCN-Basic-NoAddition."""
    torch.manual_seed(0)
    full, plain = FCNBasic(4).eval(), FCNBasicNoAddition(4).eval()
    state = full.state_dict()
    assert set(plain.state_dict()) == {k for k in state if not k.startswith("reduce_skips.")}
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("reduce_skips.")})
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        assert (full(x) - plain(x)).abs().max() > 1e-3  # the skips matter
        for layer in full.reduce_skips:
            layer.weight.zero_()
            layer.bias.zero_()
        torch.testing.assert_close(full(x), plain(x), rtol=0, atol=1e-5)


def test_fcn_basic_no_dim_reduction_adds_the_encoder_maps():
    """Same weights; the difference of the two outputs is the classifier's map (without bias) of the
    encoder maps carried up by the (linear) deconvolutions: computed here from the pieces."""
    torch.manual_seed(0)
    added, plain = FCNBasicNoDimReduction(4).double().eval(), FCNBasicNoAdditionNoDimReduction(4).double().eval()
    plain.load_state_dict(added.state_dict())
    x = torch.randn(1, 3, 37, 45, dtype=torch.float64)
    with torch.no_grad():
        outputs, _, pooled = _encode(added, x)
        carried = torch.zeros_like(pooled)  # the decoder is linear: the final encoder output's share is plain's
        for up, skip in zip(added.upsample, reversed(outputs)):
            carried = F.conv_transpose2d(carried, up.weight, stride=2, padding=3)[..., : skip.shape[-2], : skip.shape[-1]] + skip
        expected = F.conv2d(carried, added.classifier.weight)
        torch.testing.assert_close(added(x) - plain(x), expected, rtol=1e-9, atol=1e-9)


def test_fcn_basic_decoders_are_deconvolutions_without_batch_norm():
    for cls, width in [(FCNBasic, K), (FCNBasicNoDimReduction, 64)]:
        model = cls(K)
        assert [tuple(u.weight.shape) for u in model.upsample] == [(width, width, 8, 8)] * 4
        assert not any(isinstance(m, nn.BatchNorm2d) for name, m in model.named_modules() if not name.startswith("encoder"))


def test_fixed_upsampling_freezes_only_the_deconvolutions():
    model = FCNBasic(K, fixed_upsampling=True)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"upsample.{i}.weight" for i in range(4)}
    assert model.config == {"num_classes": K, "in_channels": 3, "fixed_upsampling": True}


@pytest.mark.parametrize("cls", [SegNetBasicEncoderAddition, SegNetBasicSingleChannelDecoder], ids=lambda c: c.__name__)
def test_segnet_basic_variants_take_bayesian_dropout(cls):
    model = cls(3, dropout="central")
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 4
    assert model.config["dropout"] == "central"


# the two variants with new graph pieces (cropped deconvolutions, interpolation) in every run
EXPORT = ["fcn_basic", "bilinear_interpolation"] + [pytest.param(n, marks=pytest.mark.slow) for n in TABLE_1[1:] if n != "fcn_basic"]


@pytest.mark.parametrize("name", EXPORT)
def test_exported_program_matches_eager(model_cache, name):
    assert_program_matches_eager(model_cache(name), sizes=[(1, 75, 101), (2, 17, 160)])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_basic", "bilinear_interpolation", "segnet_basic_encoder_addition"])
def test_onnx_matches_pytorch(model_cache, tmp_path, name):
    assert_onnx_matches_eager(model_cache(name), tmp_path / f"{name}.onnx")


@pytest.mark.slow
@pytest.mark.isolated
# the graph pieces SegNet-Basic's compile test (test_optimize.py) does not cover
@pytest.mark.parametrize("name", ["fcn_basic"])
def test_compiled_model_matches_eager_at_two_sizes(model_cache, name):
    assert_compiled_matches_eager(model_cache(name))