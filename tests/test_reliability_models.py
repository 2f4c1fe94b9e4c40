"""Every public constructor checks its arguments up front: a wrong type is a TypeError, a value out
of range a ValueError, each raised by segzoo itself and naming the argument, before any layer is
built; never a failure deep inside torch, nor a silently different model (``batch_norm="no"``)."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

import pytest
import torch

import segzoo
from segzoo.models.registry import _MODELS
from segzoo.training import TrainConfig

SEGZOO = Path(segzoo.__file__).resolve().parent
NOT_INTS = [2.5, True, None, "11"]


def raised(build):
    """The exception ``build()`` raised (built on the meta device: no memory, no time), or fail."""
    try:
        with torch.device("meta"):
            build()
    except Exception as error:  # noqa: BLE001 - the type is what the tests check
        return error
    pytest.fail("accepted")


def assert_refused(build, error_type, argument):
    error = raised(build)
    assert type(error) is error_type, f"{type(error).__name__}: {error}"
    origin = Path(traceback.extract_tb(error.__traceback__)[-1].filename).resolve()
    assert origin.is_relative_to(SEGZOO), f"raised in {origin}, not by segzoo: {error}"
    assert argument in str(error) and "\n" not in str(error), str(error)


MODELS = segzoo.list_models()


def taking(argument: str) -> list[str]:
    """The registered models whose constructor takes ``argument``."""
    return [name for name in MODELS if argument in inspect.signature(_MODELS[name]).parameters]


SEGNETS = taking("dropout_rate")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("argument", ["num_classes", "in_channels"])
@pytest.mark.parametrize("value", [0, -1])
def test_model_sizes_below_one_are_value_errors(name, argument, value):
    kwargs = {"num_classes": 3, argument: value}
    assert_refused(lambda: segzoo.get_model(name, **kwargs), ValueError, argument)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("argument", ["num_classes", "in_channels"])
@pytest.mark.parametrize("value", NOT_INTS)
def test_model_sizes_that_are_not_ints_are_type_errors(name, argument, value):
    kwargs = {"num_classes": 3, argument: value}
    assert_refused(lambda: segzoo.get_model(name, **kwargs), TypeError, argument)


BOOLEANS = [(name, argument) for argument in ("batch_norm", "ceil_mode", "fixed_upsampling", "progress") for name in taking(argument)]


@pytest.mark.parametrize(("name", "argument"), BOOLEANS)
@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_boolean_options_must_be_booleans(name, argument, value):
    """``FCN8s(11, batch_norm="no")`` used to build the BN model: a non-empty string is truthy."""
    assert_refused(lambda: segzoo.get_model(name, num_classes=3, **{argument: value}), TypeError, argument)


@pytest.mark.parametrize(
    ("name", "argument", "value", "error"),
    [
        *[(name, "dropout_rate", value, ValueError) for name in SEGNETS for value in (-0.1, 1.0, float("nan"))],
        *[(name, "dropout_rate", "0.5", TypeError) for name in SEGNETS],
        *[(name, "dropout", "centre", ValueError) for name in SEGNETS],
        *[(name, "unpooling", "fast", ValueError) for name in taking("unpooling")],
        *[(name, "geometry", "Caffe", ValueError) for name in taking("geometry")],
    ],
)
def test_model_options_out_of_their_choices(name, argument, value, error):
    assert_refused(lambda: segzoo.get_model(name, num_classes=3, **{argument: value}), error, argument)


@pytest.mark.parametrize("name", MODELS)
def test_valid_arguments_still_build_and_numpy_ints_are_plain_ints_in_the_config(name):
    import numpy as np

    with torch.device("meta"):
        model = segzoo.get_model(name, num_classes=np.int64(4), in_channels=np.int32(2))
    assert model.num_classes == 4 and model.in_channels == 2
    assert type(model.config["num_classes"]) is int and type(model.config["in_channels"]) is int


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: segzoo.VGGEncoder(0), ValueError, "in_channels"),
        (lambda: segzoo.VGGEncoder(3, batch_norm="yes"), TypeError, "batch_norm"),
        (lambda: segzoo.VGGEncoder(3, kernel_size=2.0), TypeError, "kernel_size"),
        (lambda: segzoo.VGGEncoder(3, stages=((64, 0),)), ValueError, "stages"),
        (lambda: segzoo.VGGEncoder(3, stages=((64, 2.5),)), TypeError, "stages"),
        (lambda: segzoo.ConvBNReLU(3, 0), ValueError, "out_channels"),
        (lambda: segzoo.ConvBNReLU("3", 8), TypeError, "in_channels"),
        (lambda: segzoo.ConvBNReLU(3, 8, relu="no"), TypeError, "relu"),
        (lambda: segzoo.make_stages(((8,),), in_channels=None), TypeError, "in_channels"),
    ],
)
def test_building_blocks_check_their_arguments(build, error, argument):
    assert_refused(build, error, argument)


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        *[(lambda v=v: segzoo.ConfusionMatrix(v), ValueError, "num_classes") for v in (0, -1)],
        *[(lambda v=v: segzoo.ConfusionMatrix(v), TypeError, "num_classes") for v in NOT_INTS],
        (lambda: segzoo.ConfusionMatrix(3, ignore_index=2.5), TypeError, "ignore_index"),
        (lambda: segzoo.ConfusionMatrix(3, ignore_index="255"), TypeError, "ignore_index"),
        (lambda: segzoo.ConfusionMatrix(3, device="gpu"), ValueError, "device"),
        (lambda: segzoo.ConfusionMatrix(3, device=0.5), TypeError, "device"),
        (lambda: segzoo.BoundaryF1(0), ValueError, "num_classes"),
        (lambda: segzoo.BoundaryF1("3"), TypeError, "num_classes"),
        (lambda: segzoo.BoundaryF1(3, tolerance="0.1"), TypeError, "tolerance"),
        (lambda: segzoo.BoundaryF1(3, tolerance=-0.1), ValueError, "tolerance"),
        (lambda: segzoo.BoundaryF1(3, ignore_index=True), TypeError, "ignore_index"),
        (lambda: segzoo.CalibrationError(0), ValueError, "num_bins"),
        (lambda: segzoo.CalibrationError(2.5), TypeError, "num_bins"),
        (lambda: segzoo.CalibrationError(15, ignore_index="x"), TypeError, "ignore_index"),
        (lambda: segzoo.SegmentationMetrics(None), TypeError, "num_classes"),
        (lambda: segzoo.SegmentationMetrics(3, boundary="yes"), TypeError, "boundary"),
        (lambda: segzoo.SegmentationMetrics(3, calibration=1), TypeError, "calibration"),
        (lambda: segzoo.median_frequency_weights([], 2.5), TypeError, "num_classes"),
        (lambda: segzoo.median_frequency_weights([], 0), ValueError, "num_classes"),
        (lambda: segzoo.median_frequency_weights([], 3, ignore_index="255"), TypeError, "ignore_index"),
    ],
)
def test_metrics_check_their_arguments(build, error, argument):
    assert_refused(build, error, argument)


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"epochs": 2.5}, TypeError, "epochs"),
        ({"epochs": "3"}, TypeError, "epochs"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"lr": "0.1"}, TypeError, "lr"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"momentum": None}, TypeError, "momentum"),
        ({"encoder_lr_scale": -0.5}, ValueError, "encoder_lr_scale"),
        ({"freeze_encoder": "no"}, TypeError, "freeze_encoder"),
        ({"amp": 1}, TypeError, "amp"),
        ({"accumulate_steps": 1.0}, TypeError, "accumulate_steps"),
        ({"ignore_index": "255"}, TypeError, "ignore_index"),
        ({"seed": 0.5}, TypeError, "seed"),
        ({"sync_batchnorm": "yes"}, TypeError, "sync_batchnorm"),
        ({"deterministic": 1}, TypeError, "deterministic"),
    ],
)
def test_train_config_checks_its_fields(kwargs, error, argument):
    assert_refused(lambda: TrainConfig(**kwargs), error, argument)


@pytest.mark.parametrize(
    ("build", "error", "argument"),
    [
        (lambda: segzoo.data.SyntheticShapes(8, class_textures="yes"), TypeError, "class_textures"),
        (lambda: segzoo.training.Trainer(segzoo.SegNetBasic(3), [], device="gpu"), ValueError, "gpu"),
        (lambda: segzoo.training.Trainer(segzoo.SegNetBasic(3), [], device="cuda:99"), ValueError, "cuda:99"),
        (lambda: segzoo.training.Trainer(segzoo.SegNetBasic(3), [], progress="no"), TypeError, "progress"),
    ],
)
def test_datasets_and_the_trainer_check_their_arguments(build, error, argument):
    assert_refused(build, error, argument)
