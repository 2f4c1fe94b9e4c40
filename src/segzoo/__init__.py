"""segzoo: encoder-decoder semantic segmentation models (SegNet, FCN) for PyTorch."""

__version__ = "0.1.0"

from .base import SegmentationModel
from .blocks import ConvBNReLU, make_stages
from .boundary import BoundaryF1, boundary_f1
from .checkpoint import load, load_weights, save_checkpoint
from .export import export_onnx, export_program, save_program
from .fcn import FCN8s, FCN16s, FCN32s
from .fuse import fuse_for_inference
from .losses import median_frequency_weights
from .metrics import CalibrationError, ConfusionMatrix, SegmentationScores, expected_calibration_error
from .registry import get_model, list_models
from .segnet import SegNet, SegNetBasic
from .train import TrainConfig, Trainer
from .uncertainty import MCPrediction, mc_predict
from .vgg import VGG16, VGGEncoder

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
    "SegNet",
    "SegNetBasic",
    "SegmentationModel",
    "SegmentationScores",
    "TrainConfig",
    "Trainer",
    "VGGEncoder",
    "boundary_f1",
    "expected_calibration_error",
    "export_onnx",
    "export_program",
    "fuse_for_inference",
    "get_model",
    "list_models",
    "load",
    "load_weights",
    "make_stages",
    "mc_predict",
    "median_frequency_weights",
    "save_checkpoint",
    "save_program",
]
