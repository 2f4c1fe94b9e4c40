"""segzoo: encoder-decoder semantic segmentation models (SegNet, FCN) for PyTorch."""

from .blocks import ConvBNReLU, make_stages
from .fcn import FCN8s, FCN16s, FCN32s
from .losses import median_frequency_weights
from .metrics import ConfusionMatrix, SegmentationScores
from .registry import get_model, list_models
from .segnet import SegNet, SegNetBasic
from .vgg import VGG16, VGGEncoder

__version__ = "0.1.0"

__all__ = [
    "VGG16",
    "ConfusionMatrix",
    "ConvBNReLU",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "SegNet",
    "SegNetBasic",
    "SegmentationScores",
    "VGGEncoder",
    "get_model",
    "list_models",
    "make_stages",
    "median_frequency_weights",
]
