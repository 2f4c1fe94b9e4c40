"""Every registered model: shapes at any size, train and eval, gradients, input errors; and, as
property tests (hypothesis), forward, prepare and predict under hostile input."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from support.models import NUM_CLASSES
from support.properties import CASES, DEVICES, assert_accepted, assert_rejected, assert_works_or_clear_error, one_thread
from torch import nn

import segzoo
from segzoo.models import registry
from segzoo.models._inputs import check_images
from segzoo.models.registry import get_model, list_models, register_model

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


def test_register_model_refuses_a_taken_name_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # whatever happens, the real registry stays

    class Impostor(segzoo.SegNetBasic):
        """A model that would shadow SegNet-Basic."""

    with pytest.raises(ValueError, match="a model named 'segnet_basic' is already registered \\(SegNetBasic\\)"):
        register_model("segnet_basic")(Impostor)
    assert list_models() == MODELS
    assert type(get_model("segnet_basic", num_classes=2)) is segzoo.SegNetBasic
    assert register_model("impostor")(Impostor) is Impostor  # the same class under a free name is fine
    assert type(get_model("impostor", num_classes=2)) is Impostor and list_models() == sorted([*MODELS, "impostor"])


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


# ---- property tests: forward, prepare and predict under hostile input ----

BASIC_CLASSES = 3
MEAN, STD = np.array((0.485, 0.456, 0.406)), np.array((0.229, 0.224, 0.225))  # ImageNet's, as every RGB model normalises


def normalised(pixels: np.ndarray) -> torch.Tensor:
    """NHWC uint8 pixels as the model input (N, 3, H, W), computed in float64 with numpy."""
    return torch.from_numpy(((pixels / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


@pytest.fixture(scope="module")
def basic():
    """SegNet-Basic instances with the same weights, one per (device, dtype), built on first use."""
    torch.manual_seed(0)
    reference = segzoo.SegNetBasic(BASIC_CLASSES).eval()
    cache = {}

    def get(device: str = "cpu", dtype: torch.dtype = torch.float32) -> segzoo.SegNetBasic:
        if (device, dtype) not in cache:
            model = segzoo.SegNetBasic(BASIC_CLASSES).eval()
            model.load_state_dict(reference.state_dict())
            cache[device, dtype] = model.to(device, dtype)
        return cache[device, dtype]

    return get


@st.composite
def image_batches(draw, max_side: int = 70):
    """Float batches (N, C, H, W), N = 0 included, C mostly right, in one of four memory layouts."""
    n = draw(st.integers(0, 2))
    c = draw(st.sampled_from([3, 3, 3, 1, 4]))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "transposed", "sliced"]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    if layout == "transposed":
        x = torch.randn(n, c, w, h, generator=generator).transpose(2, 3)
    elif layout == "sliced":
        x = torch.randn(n, c, 2 * h, w + 1, generator=generator)[:, :, ::2, 1:]
    else:
        x = torch.randn(n, c, h, w, generator=generator)
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
    return x


def check_forward(model, x: torch.Tensor) -> None:
    """Right channels: logits (N, classes, H, W) in the input's dtype, finite, equal to the contiguous
    input's whatever the layout. Wrong channels: a ValueError saying how many were expected."""
    with torch.no_grad():
        out = assert_works_or_clear_error(lambda: model(x))
        if x.shape[1] != model.in_channels:
            assert_rejected(out, ValueError, f"expects {model.in_channels} input channels, got {x.shape[1]}")
            return
        assert_accepted(out)
        n, _, h, w = x.shape
        assert out.shape == (n, model.num_classes, h, w)
        assert (out.dtype, out.device) == (x.dtype, x.device)
        assert torch.isfinite(out).all()
        if not x.is_contiguous():
            # channels_last convolutions sum in another order: equal up to rounding
            torch.testing.assert_close(out, model(x.contiguous()), rtol=1e-4, atol=1e-5)


@one_thread
@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=20, **CASES)
@given(x=image_batches(), dtype=st.sampled_from([torch.float32, torch.float32, torch.float64]))
def test_segnet_basic_forward_any_batch_size_side_and_layout(basic, device, x, dtype):
    check_forward(basic(device, dtype), x.to(device, dtype))


@one_thread
@pytest.mark.slow
@pytest.mark.parametrize("name", ["segnet", "fcn8s"])
@settings(max_examples=10, **CASES)
@given(x=image_batches())
def test_vgg_model_forward_any_batch_size_side_and_layout(model_cache, name, x):
    check_forward(model_cache(name).eval(), x)


# SegNet-Basic in every run, the VGG16 models (big) only in the slow ones
VGG_SLOW = ["segnet_basic", pytest.param("segnet", marks=pytest.mark.slow), pytest.param("fcn8s", marks=pytest.mark.slow)]


@st.composite
def hostile_inputs(draw):
    """Mostly not a float (N, 3, H, W) tensor with H, W >= 1: other ranks, dtypes, empty sides, non-tensors."""
    kind = draw(st.sampled_from(["tensor", "tensor", "tensor", "array", "list", "none"]))
    rank = draw(st.sampled_from([4, 4, 4, 3, 5, 0, 1, 2, 6]))
    shape = [draw(st.integers(0 if i >= 2 else 1, 4)) for i in range(rank)]
    if rank >= 2:
        shape[1] = 3
    dtype = draw(st.sampled_from([torch.float32, torch.uint8, torch.int64, torch.bool, torch.complex64]))
    x = torch.zeros(shape, dtype=dtype)
    return {"tensor": x, "array": x.numpy(), "list": x.tolist(), "none": None}[kind]


@one_thread
@pytest.mark.parametrize("name", VGG_SLOW)
@settings(max_examples=40, **CASES)
@given(x=hostile_inputs())
@example(x=torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
@example(x=torch.zeros(3, 8, 8))
def test_forward_rejects_what_is_not_a_float_image_batch(model_cache, name, x):
    model = model_cache(name).eval()
    with torch.no_grad():
        out = assert_works_or_clear_error(lambda: model(x))
    if not isinstance(x, torch.Tensor):
        assert_rejected(out, TypeError, "expects a torch.Tensor")
    elif x.dim() != 4:
        assert_rejected(out, ValueError, "expects a 4-D tensor", *(["unsqueeze(0)"] if x.dim() == 3 else []))
    elif not x.is_floating_point():
        assert_rejected(out, TypeError, "floating-point", "predict")  # points uint8 images to predict
    elif min(x.shape[-2:]) == 0:
        assert_rejected(out, ValueError, "at least 1x1")
    else:
        assert_accepted(out)
        assert out.shape == (x.shape[0], model.num_classes, *x.shape[-2:])


@one_thread
@pytest.mark.parametrize("name", ["segnet_basic", "fcn8s"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_input_dtype_other_than_the_weights_is_a_clear_type_error(model_cache, name, dtype):
    with torch.no_grad(), pytest.raises(TypeError, match="expects torch.float32 input"):
        model_cache(name).eval()(torch.randn(1, 3, 8, 8, dtype=dtype))


def test_check_images_wants_the_weights_dtype_and_device_autocast_aside():
    weight = torch.zeros(1)
    check_images(torch.zeros(1, 3, 4, 4), 3, 1, "M", weight)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        with pytest.raises(TypeError, match=f"expects torch.float32 input, the dtype of its weights, got {dtype}"):
            check_images(torch.zeros(1, 3, 4, 4, dtype=dtype), 3, 1, "M", weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for dtype in (torch.float32, torch.bfloat16):  # autocast casts float32 down itself
            check_images(torch.zeros(1, 3, 4, 4, dtype=dtype), 3, 1, "M", weight)
        for dtype in (torch.float16, torch.float64):  # not the autocast dtype; the layers would fail
            with pytest.raises(TypeError, match="expects torch.float32 input"):
                check_images(torch.zeros(1, 3, 4, 4, dtype=dtype), 3, 1, "M", weight)
    with pytest.raises(ValueError, match="expects its input on meta, where its weights are, got cpu"):
        check_images(torch.zeros(1, 3, 4, 4), 3, 1, "M", weight.to("meta"))


@one_thread
@pytest.mark.isolated  # low-precision CPU kernels: a native crash fails this test, not the run
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs_as_a_converted_model_or_under_autocast(basic, dtype):
    """The two supported ways to run in half precision; both stay close to float32."""
    x = torch.randn(1, 3, 5, 4, generator=torch.Generator().manual_seed(0))  # CPU half convolutions are slow
    with torch.no_grad():
        expected = basic()(x)
        converted = basic("cpu", dtype)(x.to(dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = basic()(x.to(torch.bfloat16))
    for out in (converted, autocast):
        assert out.shape == expected.shape
        torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


@one_thread
@pytest.mark.parametrize("name", VGG_SLOW)
@settings(max_examples=12, **CASES)
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
    where=st.tuples(st.integers(0, 2), st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)),
)
def test_non_finite_pixels_propagate_to_their_own_image_only(model_cache, name, h, w, value, where):
    """No isfinite check on every forward (torchvision models have none either): in eval mode a NaN or
    infinite pixel makes its image's logits non-finite and leaves the other images' alone."""
    model = model_cache(name).eval()
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    channel, row, column = where
    x[0, channel, int(row * h), int(column * w)] = value
    with torch.no_grad():
        out = model(x)
        alone = model(x[1:])
    assert not torch.isfinite(out[0]).all()
    if math.isnan(value):
        assert out[0].isnan().any()
    assert torch.isfinite(out[1]).all()
    torch.testing.assert_close(out[1:], alone, rtol=1e-4, atol=1e-5)


# ---- predict / prepare ----

FORMS = [
    "array HWC",
    "array NHWC",
    "strided array NHWC",
    "tensor CHW",
    "tensor NCHW",
    "channels_last NCHW",
    "PIL",
    "list of PIL",
    "list of arrays",
    "tuple of tensors",
]


def as_form(pixels: np.ndarray, form: str):
    """The NHWC uint8 ``pixels`` (N = 1 for the single-image forms) the way a user might pass them."""
    chw = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    return {
        "array HWC": lambda: pixels[0],
        "array NHWC": lambda: pixels,
        "strided array NHWC": lambda: np.repeat(pixels, 2, axis=2)[:, :, ::2],
        "tensor CHW": lambda: chw[0].contiguous(),
        "tensor NCHW": lambda: chw.contiguous(),
        "channels_last NCHW": lambda: chw,  # the permuted view is channels-last already
        "PIL": lambda: Image.fromarray(pixels[0]),
        "list of PIL": lambda: [Image.fromarray(p) for p in pixels],
        "list of arrays": lambda: list(pixels),
        "tuple of tensors": lambda: tuple(chw.contiguous()),
    }[form]()


@st.composite
def uint8_images(draw, max_n: int = 3, max_side: int = 12):
    form = draw(st.sampled_from(FORMS))
    n = 1 if form in ("array HWC", "tensor CHW", "PIL") else draw(st.integers(1, max_n))
    shape = (n, draw(st.integers(1, max_side)), draw(st.integers(1, max_side)), 3)
    return draw(hnp.arrays(np.uint8, shape)), form


@one_thread
@pytest.mark.filterwarnings("error")  # e.g. torch's warning on wrapping a read-only array
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@settings(max_examples=40, **CASES)
@given(case=uint8_images())
def test_prepare_normalises_uint8_in_every_form(basic, device, dtype, tolerance, case):
    pixels, form = case
    batch = basic(device, dtype).prepare(as_form(pixels, form))
    assert (batch.dtype, batch.device.type) == (dtype, device)
    torch.testing.assert_close(batch.cpu().double(), normalised(pixels), rtol=0, atol=tolerance)


@one_thread
@pytest.mark.filterwarnings("error")
@settings(max_examples=20, **CASES)
@given(
    pixels=hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(4))),
    mode=st.sampled_from(["L", "RGBA", "RGB"]),
)
def test_pil_images_of_any_mode_become_rgb(basic, pixels, mode):
    image = {"L": Image.fromarray(pixels[..., 0]), "RGBA": Image.fromarray(pixels), "RGB": Image.fromarray(pixels[..., :3])}
    rgb = {"L": np.repeat(pixels[..., :1], 3, axis=2), "RGBA": pixels[..., :3], "RGB": pixels[..., :3]}
    torch.testing.assert_close(basic().prepare(image[mode]).double(), normalised(rgb[mode][None]), rtol=0, atol=1e-6)


@one_thread
@settings(max_examples=20, **CASES)
@given(
    values=hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=6),
        elements=st.floats(-1e4, 1e4, width=16),
    ),
    as_tensor=st.booleans(),
    model_dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_float_input_is_taken_as_normalised_and_only_converted(basic, values, as_tensor, model_dtype):
    """Floats are converted to the model's dtype, nothing else: tensors stay CHW, arrays are HWC."""
    batch = basic("cpu", model_dtype).prepare(torch.from_numpy(values) if as_tensor else values)
    nchw = values if as_tensor else np.moveaxis(values, -1, -3)
    expected = torch.from_numpy(nchw.astype(np.float64)).to(model_dtype)
    torch.testing.assert_close(batch, expected if expected.dim() == 4 else expected[None], rtol=0, atol=0)


@one_thread
@settings(max_examples=10, **CASES)
@given(case=uint8_images(max_n=2, max_side=8))
def test_predict_is_the_argmax_of_the_independently_normalised_batch(basic, case):
    pixels, form = case
    model = basic()
    with torch.no_grad():
        logits = model(normalised(pixels).float())
    torch.testing.assert_close(model.predict(as_form(pixels, form), return_probabilities=True), logits.softmax(1))
    labels = model.predict(as_form(pixels, form))
    assert labels.shape == (len(pixels), *pixels.shape[1:3])
    # the argmax up to rounding: compared where the top two logits are further apart than that
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert torch.equal(labels[clear], logits.argmax(1)[clear])


@st.composite
def hostile_images(draw):
    """(images, error type, phrase in the message) for inputs predict must refuse."""
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pixels = np.zeros((h, w, 3), np.uint8)
    cases = {
        "empty list": ([], ValueError, "at least one image"),
        "sizes differ": ([pixels, np.zeros((h + 1, w, 3), np.uint8)], ValueError, "share a size"),
        "dtypes differ": ([pixels, pixels.astype(np.float32)], ValueError, "share a size and dtype"),
        "RGBA array": (np.zeros((h, w, 4), np.uint8), ValueError, "3 channels"),
        "HWC tensor": (torch.zeros(h, w + 3, 3, dtype=torch.uint8), ValueError, "3 channels"),
        "NCHW array": (np.zeros((1, 3, h, w + 3), np.uint8), ValueError, "3 channels"),
        "grey array": (np.zeros((h, w), np.uint8), ValueError, "expected an HWC image"),
        "5-D array": (np.zeros((1, 1, h, w, 3), np.uint8), ValueError, "expected an HWC image"),
        "batches in a list": ([torch.zeros(1, 3, h, w, dtype=torch.uint8)], ValueError, "single images"),
        "int32 tensor": (torch.zeros(3, h, w, dtype=torch.int32), TypeError, "uint8"),
        "bool array": (np.zeros((h, w, 3), bool), TypeError, "uint8"),
        "path": ("image.png", TypeError, "expected a PIL image"),
        "None": (None, TypeError, "expected a PIL image"),
        "empty PIL": (Image.new("RGB", (0, h)), ValueError, "at least 1x1"),
    }
    return cases[draw(st.sampled_from(sorted(cases)))]


@one_thread
@settings(max_examples=40, **CASES)
@given(case=hostile_images())
def test_predict_refuses_clearly_what_it_cannot_read(basic, case):
    images, error, phrase = case
    assert_rejected(assert_works_or_clear_error(lambda: basic().predict(images)), error, phrase)
