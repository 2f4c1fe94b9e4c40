"""segzoo: encoder-decoder semantic segmentation models (SegNet, FCN) for PyTorch."""

__version__ = "0.2.0"

from .export import export_onnx, export_program, save_program
from .inference import MCPrediction, fuse_for_inference, mc_predict
from .io.checkpoint import load, load_run, load_weights, save_checkpoint
from .io.pretrained import from_pretrained, push_to_hub
from .io.run_description import RunDescription
from .metrics import (
    BoundaryF1,
    CalibrationError,
    ConfusionMatrix,
    SegmentationMetrics,
    SegmentationScores,
    boundary_f1,
    expected_calibration_error,
    median_frequency_weights,
)
from .models import (
    VGG16,
    ConvBNReLU,
    FCN8s,
    FCN16s,
    FCN32s,
    SegmentationModel,
    SegNet,
    SegNetBasic,
    VGGEncoder,
    get_model,
    list_models,
    make_stages,
)
from .training import TrainConfig, Trainer

__all__ = [
    "VGG16",
    "BoundaryF1",
    "CalibrationError",
    "ConfusionMatrix",
    "ConvBNReLU",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "MCPrediction",
    "RunDescription",
    "SegNet",
    "SegNetBasic",
    "SegmentationMetrics",
    "SegmentationModel",
    "SegmentationScores",
    "TrainConfig",
    "Trainer",
    "VGGEncoder",
    "boundary_f1",
    "expected_calibration_error",
    "export_onnx",
    "export_program",
    "from_pretrained",
    "fuse_for_inference",
    "get_model",
    "list_models",
    "load",
    "load_run",
    "load_weights",
    "make_stages",
    "mc_predict",
    "median_frequency_weights",
    "push_to_hub",
    "save_checkpoint",
    "save_program",
]
