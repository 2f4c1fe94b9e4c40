"""torch.hub entry points, one per registered segzoo model.

    model = torch.hub.load("<owner>/segzoo", "segnet", num_classes=11, weights_backbone="DEFAULT")
    torch.hub.list("<owner>/segzoo")   # segnet, segnet_basic, fcn32s, fcn16s, fcn8s, deconvnet, ...

Keyword arguments go to the model's constructor (see ``help(segzoo.SegNet)`` etc.).
"""

import os
import sys

dependencies = ["torch", "numpy"]

# torch.hub imports this file from a plain checkout, where the src-layout package is not installed
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from segzoo import get_model as _get_model  # noqa: E402  (private: torch.hub.list lists public callables)


def segnet(**kwargs):
    """SegNet (arXiv 1511.00561): VGG16-BN encoder, decoder upsampling with pooling indices."""
    return _get_model("segnet", **kwargs)


def segnet_basic(**kwargs):
    """SegNet-Basic (arXiv 1511.00561, Section 4.1): 4 stages of 7x7 convs, 64 channels."""
    return _get_model("segnet_basic", **kwargs)


def fcn32s(**kwargs):
    """FCN-32s (arXiv 1411.4038) on the VGG16(-BN) encoder."""
    return _get_model("fcn32s", **kwargs)


def fcn16s(**kwargs):
    """FCN-16s (arXiv 1411.4038): fc7 scores fused with pool4 scores."""
    return _get_model("fcn16s", **kwargs)


def fcn8s(**kwargs):
    """FCN-8s (arXiv 1411.4038): fc7 scores fused with pool4 and pool3 scores."""
    return _get_model("fcn8s", **kwargs)


def deconvnet(**kwargs):
    """DeconvNet (arXiv 1505.04366): VGG16-BN encoder, fc6/fc7, unpooling + deconvolution decoder."""
    return _get_model("deconvnet", **kwargs)


def deeplab_largefov(**kwargs):
    """DeepLab-LargeFOV (arXiv 1412.7062): VGG16 with dilated conv5 and fc6, output stride 8."""
    return _get_model("deeplab_largefov", **kwargs)


def unet_vgg16(**kwargs):
    """U-Net (arXiv 1505.04597) on the VGG16 encoder, TernausNet's UNet16 layout."""
    return _get_model("unet_vgg16", **kwargs)


def segnet_basic_single_channel_decoder(**kwargs):
    """SegNet-Basic with single-channel (depthwise) decoder filters (arXiv 1511.00561, Table 1)."""
    return _get_model("segnet_basic_single_channel_decoder", **kwargs)


def segnet_basic_encoder_addition(**kwargs):
    """SegNet-Basic adding the encoder feature maps in its decoder (arXiv 1511.00561, Table 1)."""
    return _get_model("segnet_basic_encoder_addition", **kwargs)


def bilinear_interpolation(**kwargs):
    """SegNet-Basic's encoder, fixed bilinear upsampling, 1x1 classifier (arXiv 1511.00561, Table 1)."""
    return _get_model("bilinear_interpolation", **kwargs)


def fcn_basic(**kwargs):
    """SegNet-Basic's encoder with FCN's decoding (arXiv 1511.00561, Table 1)."""
    return _get_model("fcn_basic", **kwargs)


def fcn_basic_no_addition(**kwargs):
    """FCN-Basic without adding the encoder maps (arXiv 1511.00561, Table 1)."""
    return _get_model("fcn_basic_no_addition", **kwargs)


def fcn_basic_no_dim_reduction(**kwargs):
    """FCN-Basic with a 64-channel decoder (arXiv 1511.00561, Table 1)."""
    return _get_model("fcn_basic_no_dim_reduction", **kwargs)


def fcn_basic_no_addition_no_dim_reduction(**kwargs):
    """FCN-Basic with a 64-channel decoder and no encoder maps added (arXiv 1511.00561, Table 1)."""
    return _get_model("fcn_basic_no_addition_no_dim_reduction", **kwargs)
