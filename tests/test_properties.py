"""Property-based tests (hypothesis) of the models and public functions under hostile input.

Random shapes, channel counts, dtypes, memory layouts, empty batches, NaN/Inf and out-of-range
labels: every call either does what its contract says, checked against an independent computation,
or raises a ValueError/TypeError that segzoo itself raises, early, with a message that says what was
expected; never an error from deep inside torch or numpy.
"""

from __future__ import annotations

import math
import re
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import segzoo
from segzoo import viz
from segzoo.models._inputs import check_images
from segzoo.data import denormalize, train_transforms
from segzoo.inference.mc_dropout import predictive_uncertainty
from test_boundary import reference_bf

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SEGZOO = Path(segzoo.__file__).resolve().parent
# a clear message says what was expected of the input
CLEAR = re.compile(r"expect|must|need|at least|outside|share")
# the same examples on every run (CI never flakes on a new one) and no example database in the checkout
CASES = {"deadline": None, "derandomize": True, "database": None}
NUM_CLASSES = 3
MEAN, STD = np.array(segzoo.SegmentationModel.mean), np.array(segzoo.SegmentationModel.std)


def assert_works_or_clear_error(fn):
    """``fn()``'s result, or the ValueError/TypeError it raised. The error must come from segzoo's own
    code (its innermost frame lies in the package, so it is not torch failing deep inside) and say
    what was expected; any other exception type (RuntimeError, IndexError, ...) fails the test."""
    try:
        return fn()
    except (ValueError, TypeError) as err:
        origin = Path(traceback.extract_tb(err.__traceback__)[-1].filename).resolve()
        assert origin.is_relative_to(SEGZOO), f"{type(err).__name__} raised in {origin}, not by segzoo: {err}"
        assert CLEAR.search(str(err)), f"the message does not say what was expected: {err}"
        return err


def assert_rejected(result, error: type[Exception], *mentions: object) -> None:
    assert isinstance(result, error), f"expected a {error.__name__}, got {result!r}"
    for mention in mentions:
        assert str(mention) in str(result), f"{mention!r} not in {result}"


def assert_accepted(result) -> None:
    assert not isinstance(result, Exception), f"valid input rejected: {result}"


def assert_names_labels(result, labels: set[int]) -> None:
    """A ValueError that lists the offending labels (the first ten, sorted), not a silent clamp."""
    assert isinstance(result, ValueError), f"labels {sorted(labels)} were not reported: got {result!r}"
    for label in sorted(labels)[:10]:
        assert re.search(rf"(?<![\d-]){label}(?!\d)", str(result)), f"label {label} not named in: {result}"


def normalised(pixels: np.ndarray) -> torch.Tensor:
    """NHWC uint8 pixels as the model input (N, 3, H, W), computed in float64 with numpy."""
    return torch.from_numpy(((pixels / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny inputs gain nothing from intra-op threads, and on a busy machine their spinning costs
    several times the work (10 small SegNet-Basic forwards: 3 s with two threads, 0.2 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def basic():
    """SegNet-Basic instances with the same weights, one per (device, dtype), built on first use."""
    torch.manual_seed(0)
    reference = segzoo.SegNetBasic(NUM_CLASSES).eval()
    cache = {}

    def get(device: str = "cpu", dtype: torch.dtype = torch.float32) -> segzoo.SegNetBasic:
        if (device, dtype) not in cache:
            model = segzoo.SegNetBasic(NUM_CLASSES).eval()
            model.load_state_dict(reference.state_dict())
            cache[device, dtype] = model.to(device, dtype)
        return cache[device, dtype]

    return get


# ---- model forward ----


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


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=20, **CASES)
@given(x=image_batches(), dtype=st.sampled_from([torch.float32, torch.float32, torch.float64]))
def test_segnet_basic_forward_any_batch_size_side_and_layout(basic, device, x, dtype):
    check_forward(basic(device, dtype), x.to(device, dtype))


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


@settings(max_examples=40, **CASES)
@given(case=hostile_images())
def test_predict_refuses_clearly_what_it_cannot_read(basic, case):
    images, error, phrase = case
    assert_rejected(assert_works_or_clear_error(lambda: basic().predict(images)), error, phrase)


# ---- label maps: confusion matrix, boundary F1, calibration, class weights ----

IGNORES = [None, 255, -1]
LABEL_DTYPES = [torch.int64, torch.int32, torch.int16, torch.uint8]


@st.composite
def label_maps(draw, max_side: int = 7, scores: bool = True):
    """(prediction, target, num_classes, ignore_index): (N, H, W) labels, N and sides 0 included.

    Half the cases hold labels outside [0, num_classes) other than ignore_index (negative ones too);
    labels are stored in a random integer dtype, where -1 becomes 255 for uint8 (and is then out
    of range, unless 255 is the ignore label). The prediction is sometimes float scores (N, C, H, W).
    """
    num_classes = draw(st.integers(1, 6))
    ignore = draw(st.sampled_from(IGNORES))
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, max_side)), draw(st.integers(0, max_side)))
    valid = st.integers(0, num_classes - 1)
    if draw(st.booleans()):
        valid = st.one_of(valid, st.integers(-2, num_classes + 2))
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    voids = [st.just(ignore)] if ignore is not None else []
    target = draw(hnp.arrays(np.int64, shape, elements=st.one_of(valid, *voids)))
    target = torch.from_numpy(target).to(dtype)
    if scores and draw(st.booleans()):
        floats = st.floats(-5, 5, width=32) | st.sampled_from([math.nan, math.inf, -math.inf])
        prediction = torch.from_numpy(draw(hnp.arrays(np.float32, (shape[0], num_classes, *shape[1:]), elements=floats)))
    else:
        prediction = torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=valid))).to(dtype)
    return prediction, target, num_classes, ignore


def label_problems(prediction: torch.Tensor, target: torch.Tensor, num_classes: int, ignore) -> tuple[set, set]:
    """Out-of-range target labels other than ``ignore``, and out-of-range predicted labels where the
    target is not ``ignore``, from the stored values."""
    t = target.long().numpy()
    p = prediction.numpy().argmax(1) if prediction.is_floating_point() else prediction.long().numpy()
    counted = t != ignore if ignore is not None else np.ones(t.shape, bool)
    outside = lambda labels: set((labels[counted & ((labels < 0) | (labels >= num_classes))]).tolist())  # noqa: E731
    return outside(t), outside(p)


# uint8 255 must not pass for ignore_index -1: labels are compared as integers, not wrapped to the dtype
WRAPPING = (torch.zeros(1, 1, 2, dtype=torch.uint8), torch.tensor([[[255, 0]]], dtype=torch.uint8), 1, -1)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=60, **CASES)
@given(case=label_maps())
@example(case=WRAPPING)
def test_confusion_matrix_counts_every_non_ignored_pixel_and_reports_bad_labels(device, case):
    prediction, target, num_classes, ignore = case
    matrix = segzoo.ConfusionMatrix(num_classes, ignore, device=device)
    result = assert_works_or_clear_error(lambda: matrix.update(prediction.to(device), target.to(device)))
    if prediction.is_floating_point() and not torch.isfinite(prediction).all():  # argmax would count NaN as a class
        assert_rejected(result, ValueError, "non-finite")
        assert matrix.matrix.sum() == 0
        return
    bad_target, bad_prediction = label_problems(prediction, target, num_classes, ignore)
    if bad_target or bad_prediction:
        assert_names_labels(result, bad_target or bad_prediction)
        assert matrix.matrix.sum() == 0
        return
    assert_accepted(result)
    t = target.long().numpy()
    p = prediction.numpy().argmax(1) if prediction.is_floating_point() else prediction.long().numpy()
    counted = t != ignore if ignore is not None else np.ones(t.shape, bool)
    expected = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(expected, (t[counted], p[counted]), 1)
    assert matrix.matrix.device.type == device
    assert np.array_equal(matrix.matrix.cpu().numpy(), expected)
    assert int(matrix.matrix.sum()) == int(counted.sum())


@st.composite
def mismatched_pairs(draw):
    """(prediction, target, error type) that no metric may accept."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    labels = torch.zeros(shape, dtype=torch.int64)
    other = (shape[0], shape[1] + 1, shape[2])
    cases = [
        (labels, torch.zeros(other, dtype=torch.int64), ValueError),
        (labels, labels.float(), TypeError),
        (labels.float(), labels, TypeError),
        (labels.numpy(), labels.numpy(), TypeError),
        (torch.zeros(shape[0], NUM_CLASSES + 1, *shape[1:]), labels, ValueError),
    ]
    return cases[draw(st.integers(0, len(cases) - 1))]


@settings(max_examples=20, **CASES)
@given(case=mismatched_pairs())
def test_label_metrics_refuse_mismatched_shapes_float_labels_and_non_tensors(case):
    prediction, target, error = case
    for update in (
        segzoo.ConfusionMatrix(NUM_CLASSES).update,
        segzoo.BoundaryF1(NUM_CLASSES).update,
        lambda p, t: segzoo.boundary_f1(p, t, NUM_CLASSES),
    ):
        assert_rejected(assert_works_or_clear_error(lambda: update(prediction, target)), error)  # noqa: B023


@settings(max_examples=60, **CASES)
@given(case=label_maps(), tolerance=st.sampled_from([0.0, 0.0075, 0.1, 0.5]))
def test_boundary_f1_matches_the_brute_force_reference_and_reports_bad_labels(case, tolerance):
    prediction, target, num_classes, ignore = case
    result = assert_works_or_clear_error(lambda: segzoo.boundary_f1(prediction, target, num_classes, ignore, tolerance))
    if prediction.is_floating_point() and not torch.isfinite(prediction).all():
        assert_rejected(result, ValueError, "non-finite")
        return
    bad_target, bad_prediction = label_problems(prediction, target, num_classes, ignore)
    if bad_target or bad_prediction:
        assert_names_labels(result, bad_target or bad_prediction)
        return
    assert_accepted(result)
    image_bf, class_f1 = result
    labels = prediction.argmax(1) if prediction.is_floating_point() else prediction
    expected_image, expected_class = reference_bf(labels.long(), target.long(), num_classes, ignore, tolerance)
    assert np.allclose(class_f1.numpy(), expected_class, rtol=0, atol=1e-12, equal_nan=True)
    assert np.allclose(image_bf.numpy(), expected_image, rtol=0, atol=1e-12, equal_nan=True)
    assert ((image_bf >= 0) & (image_bf <= 1) | image_bf.isnan()).all()
    # a perfect prediction scores 1 on every image that has a labelled pixel
    perfect, _ = segzoo.boundary_f1(target, target, num_classes, ignore, tolerance)
    assert torch.equal(perfect.isnan(), image_bf.isnan()) and (perfect[~perfect.isnan()] == 1).all()
    accumulator = segzoo.BoundaryF1(num_classes, ignore, tolerance)
    accumulator.update(prediction, target)
    scores = accumulator.compute()
    assert scores.images == int((~image_bf.isnan()).sum())
    assert scores.bf_score == pytest.approx(float(image_bf.nanmean()), nan_ok=True, abs=1e-12)


@st.composite
def probability_maps(draw):
    """(probabilities (N, C, H, W) from a softmax, target, ignore_index) with bad labels half the time."""
    _, target, num_classes, ignore = draw(label_maps(max_side=6, scores=False))
    temperature = draw(st.sampled_from([0.0, 0.3, 1.0, 5.0, 50.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    logits = torch.randn(target.shape[0], num_classes, *target.shape[1:], generator=generator, dtype=torch.float64)
    dtype = draw(st.sampled_from([torch.float16, torch.float32, torch.float64]))
    return (temperature * logits).softmax(1).to(dtype), target, ignore


def independent_ece(probabilities: torch.Tensor, target: torch.Tensor, ignore, bins: int) -> float:
    """sum over bins b = (k/B, (k+1)/B] of |correct - confidence| summed in the bin, over the pixel count."""
    p = probabilities.double().numpy()
    confidence, predicted = p.max(1), p.argmax(1)
    t = target.long().numpy()
    keep = t != ignore if ignore is not None else np.ones(t.shape, bool)
    confidence, correct = confidence[keep], (predicted == t)[keep]
    if confidence.size == 0:
        return math.nan
    index = np.clip(np.ceil(confidence * bins) - 1, 0, bins - 1)
    return sum(abs(correct[index == b].sum() - confidence[index == b].sum()) for b in range(bins)) / confidence.size


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=50, **CASES)
@given(case=probability_maps(), bins=st.integers(1, 20))
@example(case=(torch.full((1, 1, 1, 2), 1.0), WRAPPING[1], -1), bins=15)
def test_calibration_error_is_in_0_1_matches_its_definition_and_reports_bad_labels(device, case, bins):
    probabilities, target, ignore = case
    calibration = segzoo.CalibrationError(bins, ignore, device=device)
    result = assert_works_or_clear_error(lambda: calibration.update(probabilities.to(device), target.to(device)))
    bad_target, _ = label_problems(probabilities.float(), target, probabilities.shape[1], ignore)
    if bad_target:
        assert_names_labels(result, bad_target)
        return
    assert_accepted(result)
    ece, expected = calibration.compute(), independent_ece(probabilities, target, ignore, bins)
    if math.isnan(expected):
        assert math.isnan(ece)
    else:
        assert 0 <= ece <= 1
        assert ece == pytest.approx(expected, abs=1e-12)


@settings(max_examples=20, **CASES)
@given(
    shape=st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3)),
    fill=st.sampled_from([math.nan, -0.5, 1.5, math.inf]),
)
def test_calibration_error_refuses_what_is_not_probabilities(shape, fill):
    target = torch.zeros(shape[0], *shape[2:], dtype=torch.int64)
    result = assert_works_or_clear_error(lambda: segzoo.CalibrationError().update(torch.full(shape, fill), target))
    if shape[1] == 0:
        assert_rejected(result, ValueError, "C >= 1")
    elif shape[0] > 0:
        assert_rejected(result, ValueError, "must lie in [0, 1]")
    else:
        assert_accepted(result)  # no pixel to check


@st.composite
def mask_collections(draw):
    """(masks, num_classes, ignore_index): single masks (H, W) and batches (N, H, W), as tensors,
    arrays or (image, mask) pairs, with out-of-range labels half the time."""
    items = []
    num_classes = draw(st.integers(1, 5))
    ignore = draw(st.sampled_from(IGNORES))
    for _ in range(draw(st.integers(1, 4))):
        _, target, _, _ = draw(label_maps(max_side=5, scores=False))
        mask = target[0] if draw(st.booleans()) and len(target) else target
        form = draw(st.sampled_from(["tensor", "array", "pair"]))
        items.append({"tensor": mask, "array": mask.numpy(), "pair": (None, mask)}[form])
    return items, num_classes, ignore


def singles(items) -> list[np.ndarray]:
    masks = [np.asarray(item[-1] if isinstance(item, tuple) else item).astype(np.int64) for item in items]
    return [m for mask in masks for m in (mask if mask.ndim == 3 else mask[None])]


@settings(max_examples=60, **CASES)
@given(case=mask_collections())
def test_median_frequency_weights_follow_the_definition_and_report_bad_labels(case):
    items, num_classes, ignore = case
    result = assert_works_or_clear_error(lambda: segzoo.median_frequency_weights(items, num_classes, ignore))
    masks = singles(items)
    counted = [m[m != ignore] if ignore is not None else m.ravel() for m in masks]
    for labels in counted:  # masks are read in order: the first bad one is reported
        bad = set(labels[(labels < 0) | (labels >= num_classes)].tolist())
        if bad:
            assert_names_labels(result, bad)
            return
    if sum(labels.size for labels in counted) == 0:
        assert_rejected(result, ValueError, "no labelled pixels")
        return
    assert_accepted(result)
    # freq(c): pixels of c over the labelled pixels of the images holding c; weight = median(freq) / freq
    frequency = {}
    for c in range(num_classes):
        holding = [labels for labels in counted if (labels == c).any()]
        if holding:
            frequency[c] = sum((labels == c).sum() for labels in holding) / sum(labels.size for labels in holding)
    median = np.median(list(frequency.values()))
    expected = [median / frequency[c] if c in frequency else 0.0 for c in range(num_classes)]
    assert result.dtype == torch.float32
    assert result.tolist() == pytest.approx(expected, rel=1e-6)


# ---- pictures ----


@st.composite
def masks_and_colours(draw):
    """An integer mask (H, W) (sides 0 included) and a colour table of K rows, labels sometimes >= K or < 0."""
    k = draw(st.integers(1, 6))
    ignore = draw(st.sampled_from(IGNORES))
    shape = (draw(st.integers(0, 6)), draw(st.integers(0, 6)))
    labels = st.integers(0, k - 1) | st.sampled_from([ignore] if ignore is not None else [0])
    if draw(st.booleans()):
        labels = labels | st.integers(-3, k + 3)
    mask = torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=labels))).to(draw(st.sampled_from(LABEL_DTYPES[:3])))
    colours = torch.from_numpy(draw(hnp.arrays(np.uint8, (k, 3))))
    return mask, colours, ignore


@settings(max_examples=50, **CASES)
@given(case=masks_and_colours(), image_seed=st.integers(0, 2**31), alpha=st.floats(0, 1))
@example(case=(torch.tensor([[3]], dtype=torch.int8), viz.palette(4), 259), image_seed=0, alpha=1.0)  # 259 wraps to 3
def test_colorize_and_overlay_are_lookups_and_blends_and_name_missing_colours(case, image_seed, alpha):
    mask, colours, ignore = case
    labels = mask.long().numpy()
    ignored = labels == ignore if ignore is not None else np.zeros(labels.shape, bool)
    bad = set(labels[~ignored & ((labels < 0) | (labels >= len(colours)))].tolist())
    painted = assert_works_or_clear_error(lambda: viz.colorize(mask, colours, ignore, ignore_colour=(1, 2, 3)))
    image = torch.randint(0, 256, (3, *mask.shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(image_seed))
    blended = assert_works_or_clear_error(lambda: viz.overlay(image, mask, colours, alpha, ignore))
    if bad:
        assert_names_labels(painted, bad)
        assert_names_labels(blended, bad)
        return
    table = colours.numpy()
    expected = np.where(ignored[..., None], np.array([1, 2, 3], np.uint8), table[np.where(ignored, 0, labels)])
    assert np.array_equal(painted.numpy(), expected.transpose(2, 0, 1))
    mixed = np.round(alpha * table[np.where(ignored, 0, labels)].transpose(2, 0, 1) + (1 - alpha) * image.numpy())
    expected = np.where(ignored[None], image.numpy(), mixed)
    assert np.array_equal(blended.numpy(), expected.astype(np.uint8))


INFERNO_ANCHORS = np.array(
    [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ]
)


@settings(max_examples=40, **CASES)
@given(
    values=hnp.arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=6),
        elements=st.floats(-10, 10, width=16) | st.sampled_from([math.nan, math.inf]),
    ),
    vmax=st.floats(0.01, 100),
)
def test_heatmap_interpolates_inferno_and_refuses_non_finite_values(values, vmax):
    result = assert_works_or_clear_error(lambda: viz.heatmap(torch.from_numpy(values), vmax))
    if not np.isfinite(values).all():
        assert_rejected(result, ValueError, "finite")
        return
    position = np.clip(values.astype(np.float64) / vmax, 0, 1) * (len(INFERNO_ANCHORS) - 1)
    expected = [np.interp(position, np.arange(len(INFERNO_ANCHORS)), INFERNO_ANCHORS[:, c]) for c in range(3)]
    assert result.dtype == torch.uint8 and result.shape == (3, *values.shape)
    # rounding of the two interpolations may differ at exact halves
    assert np.abs(result.numpy().astype(int) - np.round(expected)).max(initial=0) <= 1


# ---- Monte Carlo uncertainty ----


@st.composite
def softmax_samples(draw):
    """Dirichlet-like samples (T, N, C, H, W): softmax of random logits at a random temperature, one-hot
    at the extreme, uniform at temperature 0."""
    t, n, c = draw(st.integers(1, 4)), draw(st.integers(0, 2)), draw(st.integers(1, 5))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    temperature = draw(st.sampled_from([0.0, 0.5, 2.0, 20.0, 1e4]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    logits = torch.randn(t, n, c, h, w, generator=generator, dtype=torch.float64)
    return (temperature * logits).softmax(2).to(draw(st.sampled_from([torch.float32, torch.float64])))


@settings(max_examples=50, **CASES)
@given(samples=softmax_samples())
def test_predictive_uncertainty_is_a_distribution_with_0_le_mi_le_entropy_le_log_c(samples):
    result = predictive_uncertainty(samples)
    c = samples.shape[2]
    slack = 1e-5 if samples.dtype == torch.float32 else 1e-12
    mean = samples.double().mean(0)
    torch.testing.assert_close(result.probabilities.double(), mean, rtol=0, atol=slack)
    torch.testing.assert_close(result.probabilities.double().sum(1), torch.ones_like(mean[:, 0]), rtol=0, atol=slack)
    entropy = -(mean * torch.where(mean > 0, mean, 1.0).log()).sum(1)  # 0 log 0 = 0
    torch.testing.assert_close(result.entropy.double(), entropy, rtol=0, atol=slack)
    mi, h = result.mutual_information.double(), result.entropy.double()
    assert (mi >= 0).all() and (mi <= h + slack).all() and (h <= math.log(c) + slack).all()
    assert (result.variance >= 0).all() and result.samples == samples.shape[0]
    assert torch.equal(result.labels, result.probabilities.argmax(1))


@settings(max_examples=30, **CASES)
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=6, min_side=0, max_side=3),
    fill=st.sampled_from([-0.5, 0.7, math.nan, 2.0]),
    kind=st.sampled_from(["float", "int", "array"]),
)
def test_predictive_uncertainty_refuses_what_is_not_softmax_samples(shape, fill, kind):
    values = torch.full(shape, fill)
    samples = {"float": values, "int": values.to(torch.int64) if math.isfinite(fill) else values, "array": values.numpy()}[kind]
    result = assert_works_or_clear_error(lambda: predictive_uncertainty(samples))
    if kind == "array":
        assert_rejected(result, TypeError, "torch.Tensor")
    elif len(shape) != 5 or not samples.is_floating_point():
        assert_rejected(result, ValueError, "(T, N, C, H, W)")
    elif shape[0] == 0:
        assert_rejected(result, ValueError, "at least one sample")
    elif math.prod(shape[:2]) * math.prod(shape[3:]) > 0:
        assert_rejected(result, ValueError, "must be probabilities")  # no fill sums to 1 over C, nor do 0 classes
    else:
        assert_accepted(result)  # no pixel to check


# ---- data transforms ----


@settings(max_examples=15, **CASES)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    crop=st.tuples(st.integers(1, 14), st.integers(1, 14)),
    ignore=st.sampled_from([None, 255]),
    seed=st.integers(0, 2**31),
)
def test_train_transforms_move_image_and_mask_together_and_invent_nothing(h, w, crop, ignore, seed):
    """Without rescaling, every output (pixel, label) pair is an input pair or padding: the crop and
    flip move both alike, no label is invented, and denormalize undoes the normalisation exactly."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)
    mask = torch.randint(0, 4, (h, w), generator=generator)
    torch.manual_seed(seed)  # the transforms draw from the global generator
    out_image, out_mask = train_transforms(crop, tuple(MEAN), tuple(STD), ignore_index=ignore, scale=(1.0, 1.0))(image, mask)
    assert out_image.shape == (3, *crop) and out_mask.shape == crop
    assert (out_image.dtype, out_mask.dtype) == (torch.float32, torch.int64)
    pixels = denormalize(out_image, MEAN, STD)
    pairs = lambda img, labels: set(zip(map(tuple, img.flatten(1).T.tolist()), labels.flatten().tolist()))  # noqa: E731
    padding = {((0, 0, 0), 0 if ignore is None else ignore)}
    assert pairs(pixels, out_mask) <= pairs(image, mask) | padding


@settings(max_examples=15, **CASES)
@given(
    image=st.sampled_from(["float", "5-channel", "grey", "array"]),
    mask=st.sampled_from(["ok", "float", "wrong size"]),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
)
def test_transforms_refuse_what_is_not_a_uint8_image_and_integer_mask(image, mask, h, w):
    images = {
        "float": torch.zeros(3, h, w),
        "5-channel": torch.zeros(5, h, w, dtype=torch.uint8),
        "grey": torch.zeros(h, w, dtype=torch.uint8),
        "array": np.zeros((3, h, w), np.uint8),
    }
    masks = {
        "ok": torch.zeros(h, w, dtype=torch.int64),
        "float": torch.zeros(h, w),
        "wrong size": torch.zeros(h + 1, w, dtype=torch.int64),
    }
    transform = train_transforms((2, 2), tuple(MEAN), tuple(STD))
    result = assert_works_or_clear_error(lambda: transform(images[image], masks[mask]))
    assert isinstance(result, (TypeError, ValueError)), "no hostile pair may pass"
    denormalized = assert_works_or_clear_error(lambda: denormalize(torch.as_tensor(images[image]), MEAN, STD))
    if image == "float":
        assert_accepted(denormalized)
    else:
        assert_rejected(denormalized, TypeError, "float")
