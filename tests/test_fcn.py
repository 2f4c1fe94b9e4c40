"""FCN specifics: bilinear upsampling, the default geometry against a step-by-step reference, FLOPs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segzoo import FCN8s, FCN16s, FCN32s
from segzoo.models.fcn import bilinear_kernel


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_default_upsampler_is_bilinear_interpolation(factor):
    """Away from the border, each default-geometry upsampler equals F.interpolate(bilinear):
    exactly factor x the size and aligned with the input grid (so a top-left cut is the right crop)."""
    model = {2: FCN8s, 8: FCN8s, 16: FCN16s, 32: FCN32s}[factor](3, batch_norm=False)
    up = model.upscore2 if factor == 2 else model.upscore
    x = torch.randn(1, 3, 6, 7)
    with torch.no_grad():
        out = up(x)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert out.shape == expected.shape
    torch.testing.assert_close(out[..., factor:-factor, factor:-factor], expected[..., factor:-factor, factor:-factor])


def test_bilinear_kernel_is_per_channel_and_matches_caffe_filler():
    """Caffe's bilinear filler for k=4: the outer product of [1/4, 3/4, 3/4, 1/4]; no channel mixing."""
    weight = bilinear_kernel(3, 4)
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(weight[1, 1], torch.outer(ramp, ramp))
    assert weight[0, 1].abs().sum() == 0 and weight[2, 0].abs().sum() == 0


def _reference_default_fcn(model, x):
    """FCN's default geometry written out step by step from its definition."""
    taps = []
    h = x
    for stage in model.encoder.stages:
        h = F.max_pool2d(stage(h), 2, 2, ceil_mode=True)
        taps.append(h)
    h = F.relu(F.conv2d(taps[4], model.fc6.weight, model.fc6.bias, padding=3))
    h = F.relu(F.conv2d(h, model.fc7.weight, model.fc7.bias))
    h = F.conv2d(h, model.score_fr.weight, model.score_fr.bias)

    def up(h, module, factor):  # transposed conv, then drop factor/2 rows and columns at each border
        full = F.conv_transpose2d(h, module.weight, stride=factor)
        return full[..., factor // 2 : factor // 2 + factor * h.shape[-2], factor // 2 : factor // 2 + factor * h.shape[-1]]

    if model.stride <= 16:
        skip = F.conv2d(taps[3], model.score_pool4.weight, model.score_pool4.bias)
        h = up(h, model.upscore2, 2)[..., : skip.shape[-2], : skip.shape[-1]] + skip
    if model.stride == 8:
        skip = F.conv2d(taps[2], model.score_pool3.weight, model.score_pool3.bias)
        h = up(h, model.upscore_pool4, 2)[..., : skip.shape[-2], : skip.shape[-1]] + skip
    return up(h, model.upscore, model.stride)[..., : x.shape[-2], : x.shape[-1]]


@pytest.mark.parametrize("cls", [FCN32s, FCN16s, FCN8s])
def test_default_geometry_matches_reference(cls):
    torch.manual_seed(0)
    model = cls(4).eval()
    for name, p in model.named_parameters():  # random upsamplers, so a wrong crop cannot hide
        if "upscore" in name:
            p.data.normal_()
    with torch.no_grad():
        for size in [(45, 61), (97, 131), (33, 32)]:
            x = torch.randn(1, 3, *size)
            torch.testing.assert_close(model(x), _reference_default_fcn(model, x), rtol=1e-4, atol=1e-4)


def test_fixed_upsampling_freezes_only_the_upsamplers():
    fixed = FCN8s(3, fixed_upsampling=True)
    frozen = {n for n, p in fixed.named_parameters() if not p.requires_grad}
    assert frozen == {"upscore2.weight", "upscore_pool4.weight", "upscore.weight"}
    assert all(p.requires_grad for p in FCN8s(3).parameters())


def test_skip_layers_per_variant():
    has = lambda m, name: hasattr(m, name)  # noqa: E731
    assert not has(FCN32s(2), "score_pool4")
    assert has(FCN16s(2), "score_pool4") and not has(FCN16s(2), "score_pool3")
    assert has(FCN8s(2), "score_pool3") and has(FCN8s(2), "upscore_pool4")


def test_fc6_fc7_and_no_bn_after_the_encoder():
    model = FCN8s(21, geometry="caffe")
    assert model.fc6.kernel_size == (7, 7) and model.fc6.padding == (0, 0) and model.fc6.out_channels == 4096
    assert model.encoder.stages[0][0].conv.padding == (100, 100)
    assert FCN8s(21).fc6.padding == (3, 3)
    assert not any(isinstance(m, nn.BatchNorm2d) for name, m in model.named_modules() if not name.startswith("encoder"))


def test_unknown_geometry_is_rejected():
    with pytest.raises(ValueError, match="'default', 'caffe'"):
        FCN8s(3, geometry="same")


@pytest.mark.slow
def test_default_geometry_costs_about_half_the_caffe_flops():
    """At 360x480: 149.6 vs 279.6 GFLOPs (FLOPs = 2 x multiply-adds)."""
    gflops = {}
    for geometry in ("default", "caffe"):
        model = FCN8s(21, batch_norm=False, geometry=geometry).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.randn(1, 3, 360, 480))
        gflops[geometry] = round(counter.get_total_flops() / 1e9, 1)
    assert gflops == {"default": 149.6, "caffe": 279.6}
