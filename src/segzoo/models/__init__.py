"""Everything that defines a network, and nothing that trains one.

``blocks`` (the conv-BN-ReLU block and the stage builder), ``pooling`` (max pooling with indices and
unpooling), ``vgg`` (the VGG16 stage description, encoder and torchvision key map), ``weights``
(ImageNet weight entries and loading), ``base`` (what every model shares), ``segnet`` and ``fcn`` (the
families), ``ports`` (other ports' checkpoints), ``registry`` (models by name).
"""

from .base import SegmentationModel
from .blocks import ConvBNReLU, make_stages
from .fcn import FCN8s, FCN16s, FCN32s
from .registry import get_model, list_models, register_model
from .segnet import SegNet, SegNetBasic
from .vgg import VGG16, VGGEncoder

__all__ = [
    "VGG16",
    "ConvBNReLU",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "SegNet",
    "SegNetBasic",
    "SegmentationModel",
    "VGGEncoder",
    "get_model",
    "list_models",
    "make_stages",
    "register_model",
]
