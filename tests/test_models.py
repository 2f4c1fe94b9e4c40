"""Every registered model: shapes at any size, train and eval, gradients, input errors."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import segzoo
from conftest import NUM_CLASSES

MODELS = segzoo.list_models()
VGG_FCNS = ["fcn16s", "fcn32s", "fcn8s"]
# each registered model, plus the FCNs' Caffe geometry and the floor-mode SegNets
VARIANTS = [(name, {}) for name in MODELS]
VARIANTS += [(name, {"geometry": "caffe"}) for name in VGG_FCNS]
VARIANTS += [(name, {"ceil_mode": False}) for name in MODELS if name.startswith("segnet")]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in VARIANTS]
ODD_SIZES = [(37, 45), (97, 131), (64, 65)]
# DeconvNet holds 252M parameters (1 GB): its CamVid-size forward and fresh builds go with the slow tests
HEAVY = {"deconvnet"}
LIGHT_FIRST = [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name for name in MODELS]


def test_registry_lists_every_model():
    assert MODELS == [
        "bilinear_interpolation",
        "deconvnet",
        "deeplab_largefov",
        "fcn16s",
        "fcn32s",
        "fcn8s",
        "fcn_basic",
        "fcn_basic_no_addition",
        "fcn_basic_no_addition_no_dim_reduction",
        "fcn_basic_no_dim_reduction",
        "segnet",
        "segnet_basic",
        "segnet_basic_encoder_addition",
        "segnet_basic_single_channel_decoder",
        "unet_vgg16",
    ]
    assert isinstance(segzoo.get_model("segnet_basic", num_classes=3), segzoo.SegNetBasic)


def test_unknown_model_lists_the_names():
    with pytest.raises(ValueError, match="segnet_basic"):
        segzoo.get_model("segnet2", num_classes=3)


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=IDS)
def test_eval_output_shape_at_odd_sizes(model_cache, name, kwargs):
    model = model_cache(name, **kwargs).eval()
    with torch.no_grad():
        for size in ODD_SIZES:
            out = model(torch.randn(1, 3, *size))
            assert out.shape == (1, NUM_CLASSES, *size)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=IDS)
def test_train_step_reaches_every_parameter(model_cache, name, kwargs):
    """One backward pass in train mode gives every learnable parameter a non-zero gradient."""
    model = model_cache(name, **kwargs).train()
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, 33, 47))
    assert out.shape == (2, NUM_CLASSES, 33, 47)
    target = torch.randint(0, NUM_CLASSES, (2, 33, 47))
    nn.functional.cross_entropy(out, target).backward()
    starved = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    model.zero_grad(set_to_none=True)  # the cached model keeps no gradients (DeconvNet's take 1 GB)
    assert starved == []


@pytest.mark.parametrize("name", LIGHT_FIRST)
def test_camvid_size(model_cache, name):
    """360x480 (CamVid) works in eval mode and gives a full-size map."""
    model = model_cache(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 360, 480)).shape == (1, NUM_CLASSES, 360, 480)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_inputs_work_with_ceil_mode_pooling(model_cache, name):
    model = model_cache(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 3)).shape == (1, NUM_CLASSES, 1, 3)


@pytest.mark.parametrize(("name", "minimum"), [("segnet", 32), ("segnet_basic", 16)])
def test_floor_mode_rejects_inputs_below_the_minimum(model_cache, name, minimum):
    model = model_cache(name, ceil_mode=False).eval()
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        model(torch.randn(1, 3, minimum - 1, 64))
    assert model(torch.randn(1, 3, minimum, minimum)).shape[-2:] == (minimum, minimum)


@pytest.mark.parametrize("name", MODELS)
def test_bad_inputs_raise_early_with_the_expectation(model_cache, name):
    model = model_cache(name).eval()
    with pytest.raises(ValueError, match="expects 3 input channels, got 1"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])


@pytest.mark.parametrize("name", LIGHT_FIRST)
def test_in_channels_and_num_classes(name):
    model = segzoo.get_model(name, num_classes=7, in_channels=1).eval()
    assert (model.in_channels, model.num_classes) == (1, 7)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 40, 50)).shape == (2, 7, 40, 50)


@pytest.mark.parametrize("name", ["segnet", "fcn32s", "fcn16s", "fcn8s", "deconvnet", "deeplab_largefov", "unet_vgg16"])
def test_encoder_convs_are_conv1_1_to_conv5_3(model_cache, name):
    convs = [m for m in model_cache(name).encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert isinstance(model_cache(name).encoder, segzoo.VGGEncoder)


def _count(model, learnable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not learnable_only)


def test_parameter_counts():
    """Counts worked out by hand from the layer definitions (see README table)."""
    assert _count(segzoo.SegNet(11)) == 29_449_355  # paper: 29.5M
    assert _count(segzoo.SegNetBasic(11)) == 1_416_075  # ~1.4M
    fcn8s = segzoo.FCN8s(21, batch_norm=False, fixed_upsampling=True)
    assert _count(fcn8s, learnable_only=True) == 134_362_751
    # + three bilinear upsamplers: 2 x (21*21*4*4) + 21*21*16*16
    assert _count(fcn8s) == 134_362_751 + 2 * 21 * 21 * 16 + 21 * 21 * 256


def test_import_and_build_without_torchvision():
    """torchvision is imported lazily: segzoo works where it cannot be imported."""
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "import torch, segzoo\n"
        "for name in segzoo.list_models():\n"
        "    m = segzoo.get_model(name, num_classes=3).eval()\n"
        "    assert m(torch.randn(1, 3, 33, 35)).shape == (1, 3, 33, 35)\n"
        "assert 'torchvision' not in {k for k, v in sys.modules.items() if v is not None}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
