"""The shared conv-BN-ReLU block and stage builder."""

import pytest
import torch
from torch import nn

from segzoo import VGG16, ConvBNReLU, make_stages
from segzoo.models.segnet import SEGNET_BASIC, mirror


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_vgg16_description_is_the_paper_configuration_d():
    assert VGG16 == ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def test_stages_chain_widths_from_in_channels():
    stages = make_stages(VGG16, in_channels=4)
    widths = [(c.in_channels, c.out_channels) for c in _convs(stages)]
    assert widths[0] == (4, 64)
    assert [o for _, o in widths] == [w for stage in VGG16 for w in stage]
    assert all(i == prev_o for (i, _), (_, prev_o) in zip(widths[1:], widths[:-1]))
    assert [len(stage) for stage in stages] == [2, 2, 3, 3, 3]


def test_block_keys_are_frozen():
    """Checkpoint compatibility depends on these names."""
    keys = list(make_stages(((8,), (8, 4)), 3, batch_norm=True).state_dict())
    assert keys[:7] == [
        "0.0.conv.weight",
        "0.0.conv.bias",
        "0.0.bn.weight",
        "0.0.bn.bias",
        "0.0.bn.running_mean",
        "0.0.bn.running_var",
        "0.0.bn.num_batches_tracked",
    ]
    assert keys[-2:] == ["1.1.bn.running_var", "1.1.bn.num_batches_tracked"]
    assert list(make_stages(((8,),), 3, batch_norm=False).state_dict()) == ["0.0.conv.weight", "0.0.conv.bias"]


def test_block_options():
    """batch_norm, bias and relu flags remove exactly their part; padding keeps the size."""
    plain = ConvBNReLU(3, 8, kernel_size=7, batch_norm=False, bias=False, relu=False)
    assert [name for name, _ in plain.named_children()] == ["conv"]
    assert plain.conv.bias is None and plain.conv.padding == (3, 3)
    full = ConvBNReLU(3, 8)
    assert [name for name, _ in full.named_children()] == ["conv", "bn", "relu"]
    assert full(torch.randn(2, 3, 9, 11)).shape == (2, 8, 9, 11)


def test_relu_flag_means_outputs_can_be_negative():
    block = ConvBNReLU(3, 8, relu=False).eval()
    assert (block(torch.randn(1, 3, 8, 8)) < 0).any()
    assert (ConvBNReLU(3, 8).eval()(torch.randn(1, 3, 8, 8)) >= 0).all()


@pytest.mark.parametrize("stages", [(), ((64,), ())])
def test_empty_descriptions_are_rejected(stages):
    with pytest.raises(ValueError, match="non-empty"):
        make_stages(stages, 3)


def test_segnet_decoder_mirrors_the_encoder():
    assert mirror(VGG16) == ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64))
    assert mirror(SEGNET_BASIC) == ((64,), (64,), (64,), (64,))


def test_depthwise_stages_have_one_filter_per_map():
    (stage,) = make_stages(((8, 8),), 8, kernel_size=7, bias=False, depthwise=True)
    assert all(block.conv.groups == 8 and block.conv.weight.shape == (8, 1, 7, 7) for block in stage)
    with pytest.raises(ValueError, match="depthwise stages keep their width"):
        make_stages(((16,),), 8, depthwise=True)


def test_transposed_block_keeps_the_size_and_caffes_weight_layout():
    block = ConvBNReLU(4, 6, kernel_size=7, transposed=True)
    assert isinstance(block.conv, nn.ConvTranspose2d) and block.conv.weight.shape == (4, 6, 7, 7)
    assert block(torch.randn(2, 4, 5, 9)).shape == (2, 6, 5, 9)
