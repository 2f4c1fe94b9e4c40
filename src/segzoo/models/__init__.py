"""Everything that defines a network, and nothing that trains one.

``blocks`` (the conv-BN-ReLU block and the stage builder), ``pooling`` (max pooling with indices and
unpooling), ``vgg`` (the VGG16 stage description, encoder and torchvision key map), ``weights``
(ImageNet weight entries and loading), ``base`` (what every model shares), ``segnet`` and ``fcn`` (the
families), ``decoder_variants`` (the SegNet paper's Table 1), ``deconvnet``, ``deeplab`` and ``unet``
(the rest of its comparison), ``upsampling`` (bilinear 2x to a skip's size), ``ports`` (other ports'
checkpoints), ``registry`` (models by name).
"""

from .base import SegmentationModel
from .blocks import ConvBNReLU, make_stages
from .decoder_variants import (
    BilinearInterpolation,
    FCNBasic,
    FCNBasicNoAddition,
    FCNBasicNoAdditionNoDimReduction,
    FCNBasicNoDimReduction,
    SegNetBasicEncoderAddition,
    SegNetBasicSingleChannelDecoder,
)
from .deconvnet import DeconvNet
from .deeplab import DeepLabLargeFOV
from .fcn import FCN8s, FCN16s, FCN32s
from .registry import get_model, list_models, register_model
from .segnet import SegNet, SegNetBasic
from .unet import UNetVGG16
from .vgg import VGG16, VGGEncoder

__all__ = [
    "VGG16",
    "BilinearInterpolation",
    "ConvBNReLU",
    "DeconvNet",
    "DeepLabLargeFOV",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "FCNBasic",
    "FCNBasicNoAddition",
    "FCNBasicNoAdditionNoDimReduction",
    "FCNBasicNoDimReduction",
    "SegNet",
    "SegNetBasic",
    "SegNetBasicEncoderAddition",
    "SegNetBasicSingleChannelDecoder",
    "SegmentationModel",
    "UNetVGG16",
    "VGGEncoder",
    "get_model",
    "list_models",
    "make_stages",
    "register_model",
]
